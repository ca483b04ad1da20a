//! Content hashes as matrixctl writes them (the on-host record, the
//! observation's matches, saved plans' fingerprints): SHA-256 in lower-case
//! hex.

use sha2::{Digest, Sha256};

/// SHA-256 of `bytes`, as 64 lower-case hex digits.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
