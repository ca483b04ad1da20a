//! Certificates for a name, obtained and renewed by a role's command (an
//! ACME client) once the services started, since the web server answers
//! the challenges.

use super::{Difference, Item, SystemChange};
use crate::transport::functions::HostFn;
use crate::transport::program::Program;

/// A certificate this close to its end is renewed (certbot's own margin).
pub(crate) const RENEW_WITHIN_SECONDS: u64 = 30 * 24 * 3600;

/// The file's first certificate, read by [`state`] (`pem BASE64`), or
/// `absent`.
pub(super) fn observe(program: &mut Program, name: &str, path: &str) {
    program.call(HostFn::ObserveCertificate, &[name, path]);
}

/// A certificate file's first certificate as `present ISSUED EXPIRY
/// NAME,NAME,` (see [`difference`]): ISSUED is `self` when its issuer is its
/// subject (a placeholder), EXPIRY `expiring` when it ends within
/// RENEW_WITHIN_SECONDS of `now`, NAMES its DNS names, sorted. A file
/// that is no certificate reads as an expiring placeholder: it is
/// replaced.
pub(crate) fn state(pem: &[u8], now: std::time::SystemTime) -> String {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let unreadable = "present self expiring ,".to_string();
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem) else {
        return unreadable;
    };
    let Ok((_, certificate)) = X509Certificate::from_der(&block.contents) else {
        return unreadable;
    };
    let issued = if certificate.issuer() == certificate.subject() {
        "self"
    } else {
        "ca"
    };
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);
    let ends = certificate.validity().not_after.timestamp();
    let expiry = if ends - now <= RENEW_WITHIN_SECONDS as i64 {
        "expiring"
    } else {
        "fresh"
    };
    let mut names: Vec<String> = match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(name) => Some(name.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    names.sort();
    let mut listed: String = names.iter().map(|name| format!("{name},")).collect();
    if listed.is_empty() {
        listed.push(',');
    }
    format!("present {issued} {expiry} {listed}")
}

/// `present ISSUED EXPIRY NAME,NAME,`: ISSUED is `ca` or `self` (a
/// placeholder), EXPIRY `fresh` or `expiring`.
pub(super) fn difference(name: &str, words: &[&str]) -> Option<Difference> {
    match words {
        ["present", "ca", "fresh", names] => {
            let names: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
            (names != [name])
                .then(|| Difference::update(format!("for {} → {name}", names.join(", "))))
        }
        ["present", "ca", _, _] => Some(Difference::update(
            "ends within 30 days: renewed".to_string(),
        )),
        ["present", "self", ..] => Some(Difference::create(
            "ACME, replacing the placeholder".to_string(),
        )),
        _ => Some(Difference::create("ACME".to_string())),
    }
}

/// Last of all: the web server now serves the challenges (on a
/// placeholder certificate, if it has no other yet).
pub(crate) fn apply(program: &mut Program, changes: &[SystemChange]) {
    for change in changes {
        if let Item::Certificate { name, command, .. } = &change.item {
            program.call(HostFn::Certificate, &[name, command]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// Signed by a CA of its own for b.example and a.example, valid until
    /// 2036-11-29 14:02:19 UTC (2111580139).
    const LEAF: &str = "-----BEGIN CERTIFICATE-----\nMIIBjzCCATSgAwIBAgIUGGgmCAwJ2tY/fRPMfukkMe5abVYwCgYIKoZIzj0EAwIw\nFTETMBEGA1UEAwwKZml4dHVyZSBDQTAeFw0yNjEyMDIxNDAyMTlaFw0zNjExMjkx\nNDAyMTlaMBQxEjAQBgNVBAMMCWIuZXhhbXBsZTBZMBMGByqGSM49AgEGCCqGSM49\nAwEHA0IABNnAZu0VGvHFVk0IXfBtAILZ21GnmZ3P6rOy+pIGtFU4PQwI7O97ugs7\n6EXVFx/qPGXvdkv5KEnPhAsm/GMKjWGjYzBhMB8GA1UdEQQYMBaCCWIuZXhhbXBs\nZYIJYS5leGFtcGxlMB0GA1UdDgQWBBQZ1jy+/0J47r43YjQ6pVE3dmurgTAfBgNV\nHSMEGDAWgBSvz87LKHjXO6Ts8sGDOarNEfSP6DAKBggqhkjOPQQDAgNJADBGAiEA\n5A5Lk2Lg4VTBHxsHcRnjgoBttPnlEs1DK2R7FjkjFjoCIQC7tiYpQ6fbWzza1TUg\nr71WZPnlJi2O/D9pwgHXTVT+Vw==\n-----END CERTIFICATE-----\n";
    /// The CA's own certificate: issuer and subject are the same.
    const SELF_SIGNED: &str = "-----BEGIN CERTIFICATE-----\nMIIBfzCCASWgAwIBAgIUagZqLmEgLLKTw4Z+TzbYIdR660IwCgYIKoZIzj0EAwIw\nFTETMBEGA1UEAwwKZml4dHVyZSBDQTAeFw0yNjEyMDIxNDAyMTlaFw0zNjExMjkx\nNDAyMTlaMBUxEzARBgNVBAMMCmZpeHR1cmUgQ0EwWTATBgcqhkjOPQIBBggqhkjO\nPQMBBwNCAAQD4/hvoEXCVKAf30pXgzilnLy4bSRGTdN9pxTS+ykHQIuWoJKtMEMD\nX5e5BF5REy8yLcYzHRwBU/2iZ2XRMA6Mo1MwUTAdBgNVHQ4EFgQUr8/Oyyh41zuk\n7PLBgzmqzRH0j+gwHwYDVR0jBBgwFoAUr8/Oyyh41zuk7PLBgzmqzRH0j+gwDwYD\nVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiAzi4MQ+xGLjoQNJS3gOkYP\n6D0oaQKI1cAC5PCudPrD4QIhAOTH+ivTU2B8FiJUwoXk8+q3lZLxTh8qyNr4EOAG\nKFeC\n-----END CERTIFICATE-----\n";
    const ENDS: u64 = 2_111_580_139;

    fn at(seconds: u64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn reads_issuer_names_and_expiry() {
        assert_eq!(
            state(LEAF.as_bytes(), at(ENDS - RENEW_WITHIN_SECONDS - 60)),
            "present ca fresh a.example,b.example,"
        );
        assert_eq!(
            state(LEAF.as_bytes(), at(ENDS - RENEW_WITHIN_SECONDS + 60)),
            "present ca expiring a.example,b.example,"
        );
        assert_eq!(state(SELF_SIGNED.as_bytes(), at(0)), "present self fresh ,");
    }

    #[test]
    fn anything_else_is_an_expiring_placeholder() {
        for junk in [
            "",
            "not a certificate",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert_eq!(state(junk.as_bytes(), at(0)), "present self expiring ,");
        }
    }
}
