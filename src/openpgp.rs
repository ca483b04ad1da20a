//! Just enough OpenPGP to pin a repository's signing key: the fingerprint
//! of an ASCII-armored public key (version 4: SHA-1 over the primary key
//! packet, as `gpg --show-keys` prints it). A key whose fingerprint is not
//! the pinned one never reaches a host.

use base64::Engine;
use sha1::{Digest, Sha1};

/// The uppercase hex fingerprint of the primary key in `armored`.
pub(crate) fn fingerprint(armored: &str) -> Result<String, String> {
    let mut lines = armored.lines().map(str::trim);
    lines
        .by_ref()
        .find(|line| *line == "-----BEGIN PGP PUBLIC KEY BLOCK-----")
        .ok_or("no `-----BEGIN PGP PUBLIC KEY BLOCK-----` line: not an ASCII-armored public key")?;
    // Armor headers (`Comment: …`) end at the first empty line.
    let mut body = String::new();
    let mut in_headers = true;
    for line in lines {
        if line.starts_with("-----END") || line.starts_with('=') {
            break;
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
            } else if !line.contains(':') {
                in_headers = false;
                body.push_str(line);
            }
            continue;
        }
        body.push_str(line);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "the armored key is not valid base64".to_string())?;
    let (tag, packet) = first_packet(&bytes).ok_or("the key's first packet is cut short")?;
    if tag != 6 {
        return Err(format!(
            "the key starts with an OpenPGP packet of type {tag}, not a public key (6)"
        ));
    }
    match packet.first() {
        Some(4) => {}
        Some(version) => {
            return Err(format!(
                "a version {version} key; only version 4 keys are supported"
            ));
        }
        None => return Err("an empty public key packet".to_string()),
    }
    let length = u16::try_from(packet.len()).map_err(|_| "a public key packet too long")?;
    let mut hasher = Sha1::new();
    hasher.update([0x99]);
    hasher.update(length.to_be_bytes());
    hasher.update(packet);
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect())
}

/// The tag and body of the first packet (old or new packet format).
fn first_packet(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let header = *bytes.first()?;
    if header & 0x80 == 0 {
        return None;
    }
    let (tag, length, start): (u8, usize, usize) = if header & 0x40 != 0 {
        let tag = header & 0x3f;
        match *bytes.get(1)? {
            first @ 0..=191 => (tag, usize::from(first), 2),
            first @ 192..=223 => {
                let second = usize::from(*bytes.get(2)?);
                (tag, ((usize::from(first) - 192) << 8) + second + 192, 3)
            }
            255 => {
                let raw: [u8; 4] = bytes.get(2..6)?.try_into().ok()?;
                (tag, u32::from_be_bytes(raw) as usize, 6)
            }
            _ => return None,
        }
    } else {
        let tag = (header >> 2) & 0x0f;
        match header & 0x03 {
            0 => (tag, usize::from(*bytes.get(1)?), 2),
            1 => {
                let raw: [u8; 2] = bytes.get(1..3)?.try_into().ok()?;
                (tag, usize::from(u16::from_be_bytes(raw)), 3)
            }
            2 => {
                let raw: [u8; 4] = bytes.get(1..5)?.try_into().ok()?;
                (tag, u32::from_be_bytes(raw) as usize, 5)
            }
            _ => return None,
        }
    };
    Some((tag, bytes.get(start..start.checked_add(length)?)?))
}

/// A fingerprint as written by people (spaces, lowercase) as we compare it.
pub(crate) fn normalise(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_an_armored_public_key_and_never_panics() {
        assert!(fingerprint("hello").is_err());
        assert!(fingerprint("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!\n").is_err());
        assert!(fingerprint("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END").is_err());
        for cut in ["mQ", "mQGN", "xsBN", "/wA="] {
            let _ = fingerprint(&format!("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{cut}\n"));
        }
        assert_eq!(normalise("ab12 CD34"), "AB12CD34");
    }
}
