//! Matrix server names (`hostname[:port]`), as the spec's appendix
//! defines them: an IPv4 literal, a bracketed IPv6 literal, or a DNS name,
//! with an optional port, and never a scheme or a path.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    Dns(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerName {
    pub host: Host,
    pub port: Option<u16>,
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Parses `text` as a server name; the error says what is wrong with it.
pub(crate) fn parse(text: &str) -> Result<ServerName, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.contains("://") {
        return Err("it has a scheme: a server name is `host[:port]`, without `https://`".into());
    }
    if text.contains('/') {
        return Err("it has a path: a server name is `host[:port]` and nothing after it".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("an IPv6 literal needs its closing `]`")?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("`{inside}` is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("only `:port` may follow an IPv6 literal")?,
            ),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if host.contains(':') {
            return Err("an IPv6 address must be in brackets, like `[2001:db8::1]:8448`".into());
        }
        let is_dotted_quad = host.split('.').count() == 4
            && host
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        if is_dotted_quad {
            let ip: Ipv4Addr = host
                .parse()
                .map_err(|_| format!("`{host}` is not an IPv4 address"))?;
            (Host::Ip(IpAddr::V4(ip)), port)
        } else {
            if host.is_empty() || host.len() > 255 {
                return Err("the host name must be 1 to 255 characters".into());
            }
            if let Some(bad) = host
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '-'))
            {
                return Err(format!(
                    "`{bad}` is not allowed in a host name (letters, digits, `.` and `-`)"
                ));
            }
            (Host::Dns(host.to_string()), port)
        }
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!("`{digits}` is not a port (1 to 5 digits)"));
            }
            match digits.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => return Err(format!("`{digits}` is not a port (1 to 65535)")),
            }
        }
    };
    Ok(ServerName { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_follow_the_grammar_of_the_spec() {
        let parsed = |text| parse(text).map(|name| name.to_string());
        assert_eq!(parsed("example.com"), Ok("example.com".into()));
        assert_eq!(
            parsed("matrix.example.com:443"),
            Ok("matrix.example.com:443".into())
        );
        assert_eq!(parsed("1.2.3.4:8448"), Ok("1.2.3.4:8448".into()));
        assert_eq!(
            parsed("[2001:db8::1]:8448"),
            Ok("[2001:db8::1]:8448".into())
        );
        assert!(parse("https://example.com").unwrap_err().contains("scheme"));
        assert!(parse("example.com/matrix").unwrap_err().contains("path"));
        assert!(parse("example.com:0").is_err());
        assert!(parse("example.com:70000").is_err());
        assert!(parse("exa_mple.com").unwrap_err().contains('_'));
        assert!(parse("2001:db8::1").unwrap_err().contains("brackets"));
        assert!(parse("").is_err());
        assert_eq!(
            parse("1.2.3.4").unwrap().host,
            Host::Ip("1.2.3.4".parse().unwrap())
        );
    }
}
