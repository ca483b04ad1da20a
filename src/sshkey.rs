//! SSH keys derived from a secret: an ed25519 key whose seed is a hash of
//! the secret's value, so the master key is enough to make it again on a
//! new server, and the public half can be written on another host without
//! any value travelling between them.
//!
//! Templates write the private key with `secrets.NAME | ssh_private_key`
//! (a file that does is sensitive, as any file that reads a secret) and
//! the public key with `ssh_public_keys.NAME`, which reads no secret.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The seed of the key derived from `secret`: separate from every other
/// use of the value by its label.
fn seed(secret: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"matrixctl-ssh-ed25519-v1\0");
    hasher.update(secret.as_bytes());
    hasher.finalize().into()
}

/// SSH's `string`: a big-endian length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn public_blob(public: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, public);
    blob
}

/// The public key derived from `secret`, as `authorized_keys` and
/// `ssh-keygen -y` write it: `ssh-ed25519 BASE64`.
pub(crate) fn public_key(secret: &str) -> String {
    let public = ed25519_dalek::SigningKey::from_bytes(&seed(secret))
        .verifying_key()
        .to_bytes();
    format!(
        "ssh-ed25519 {}",
        base64::engine::general_purpose::STANDARD.encode(public_blob(&public))
    )
}

/// The private key derived from `secret`, in OpenSSH's own format
/// (unencrypted, as `ssh-keygen -N ''` writes it), with `comment`.
pub(crate) fn private_key(secret: &str, comment: &str) -> String {
    let seed = seed(secret);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    // The check number only has to repeat itself; derived too, so the
    // same secret always gives the same file.
    let check = &Sha256::digest(seed)[..4];
    let mut private = Vec::new();
    private.extend_from_slice(check);
    private.extend_from_slice(check);
    put_string(&mut private, b"ssh-ed25519");
    put_string(&mut private, &public);
    put_string(&mut private, &[seed.as_slice(), public.as_slice()].concat());
    put_string(&mut private, comment.as_bytes());
    // Padded to the cipher's block size ("none": 8) with 1, 2, 3, ...
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }
    let mut key = b"openssh-key-v1\0".to_vec();
    put_string(&mut key, b"none");
    put_string(&mut key, b"none");
    put_string(&mut key, b"");
    key.extend_from_slice(&1u32.to_be_bytes());
    put_string(&mut key, &public_blob(&public));
    put_string(&mut key, &private);
    let body = base64::engine::general_purpose::STANDARD.encode(key);
    let mut text = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(70) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// OpenSSH reads the key as its own and derives the same public key;
    /// the same secret gives the same bytes, another secret another key.
    #[test]
    fn openssh_reads_the_derived_key_and_finds_its_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let private = private_key("a derived secret", "backup@example.org");
        fs_err::write(&path, &private).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let derived = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen runs (apt-get install openssh-client)");
        assert!(
            derived.status.success(),
            "{}",
            String::from_utf8_lossy(&derived.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&derived.stdout).trim(),
            format!("{} backup@example.org", public_key("a derived secret"))
        );
        assert_eq!(
            private,
            private_key("a derived secret", "backup@example.org")
        );
        assert_ne!(public_key("a derived secret"), public_key("another secret"));
    }
}
