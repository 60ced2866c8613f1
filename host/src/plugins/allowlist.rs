//! Which hosts a plugin may reach: parsing and matching in plain code, no wasmtime here.
//!
//! An entry is `host`, `host:port`, `*.domain` or `*.domain:port`; IPv6 literals go in
//! brackets (`[::1]:8080`). Without a port an entry matches the scheme's default port only
//! (443 for https, 80 for http). Matching is case-insensitive; `*.domain` matches every
//! subdomain but not `domain` itself. Entries name hosts, not schemes: both `http` and
//! `https` are allowed, since a sandbox proxy or a test mock is often plain HTTP.

use std::fmt;

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    host: HostMatch,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Exact(String),
    Subdomains(String),
}

/// Why an entry could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host pattern {entry:?}: {reason}")]
pub struct PatternError {
    entry: String,
    reason: &'static str,
}

impl HostPattern {
    /// Parses one entry.
    pub(crate) fn parse(entry: &str) -> Result<Self, PatternError> {
        let err = |reason| PatternError {
            entry: entry.to_owned(),
            reason,
        };
        let trimmed = entry.trim().to_ascii_lowercase();
        if trimmed.is_empty() || trimmed.len() > 260 {
            return Err(err("empty or too long"));
        }
        if trimmed.contains("://") || trimmed.contains('/') {
            return Err(err("name a host (and port), not a URL"));
        }
        let (host, port) =
            split_host_port(&trimmed).ok_or_else(|| err("malformed host or port"))?;
        let host = if let Some(domain) = host.strip_prefix("*.") {
            if !is_hostname(domain) {
                return Err(err("malformed domain after '*.'"));
            }
            HostMatch::Subdomains(domain.to_owned())
        } else if is_hostname(host) || is_ip_literal(host) {
            HostMatch::Exact(host.to_owned())
        } else {
            return Err(err("malformed host"));
        };
        Ok(HostPattern { host, port })
    }

    /// Whether this entry allows `host:port` (host already lower-case, IPv6 in brackets).
    fn allows(&self, host: &str, port: u16, default_port: u16) -> bool {
        let port_ok = match self.port {
            Some(p) => p == port,
            None => port == default_port,
        };
        port_ok
            && match &self.host {
                HostMatch::Exact(h) => h == host,
                HostMatch::Subdomains(domain) => host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1),
            }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostMatch::Exact(h) => write!(f, "{h}")?,
            HostMatch::Subdomains(d) => write!(f, "*.{d}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// A plugin's effective allowlist: its declared hosts plus the operator's approvals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AllowList {
    patterns: Vec<HostPattern>,
}

impl AllowList {
    /// Parses every entry; the first bad one is the error.
    pub(crate) fn parse<'a>(
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, PatternError> {
        Ok(AllowList {
            patterns: entries
                .into_iter()
                .map(HostPattern::parse)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Checks a URL. Returns the `host:port` it names, or why it is refused.
    pub(crate) fn check(&self, url: &str) -> Result<String, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let default_port = match parsed.scheme() {
            "https" => 443,
            "http" => 80,
            other => {
                return Err(format!(
                    "scheme {other:?} is not allowed; use http or https"
                ))
            }
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("credentials in URLs are not allowed; send them in headers".into());
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(format!("URL {url:?} has no host")),
        };
        let port = parsed.port().unwrap_or(default_port);
        let destination = format!("{host}:{port}");
        if self
            .patterns
            .iter()
            .any(|p| p.allows(&host, port, default_port))
        {
            Ok(destination)
        } else {
            Err(format!(
                "{destination} is not in this plugin's allowed hosts"
            ))
        }
    }

    /// The entries, for listings.
    pub(crate) fn entries(&self) -> Vec<String> {
        self.patterns.iter().map(ToString::to_string).collect()
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &s[..end + 2];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((s, None)),
    }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_ip_literal(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
        || s.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries.iter().copied()).unwrap()
    }

    #[test]
    fn exact_hosts_use_default_ports() {
        let l = list(&["connect.squareup.com"]);
        assert!(l.check("https://connect.squareup.com/v2/payments").is_ok());
        assert!(l.check("https://CONNECT.squareup.com/").is_ok());
        assert!(l.check("https://connect.squareup.com:8443/").is_err());
        assert!(l.check("https://evil.com/").is_err());
        assert!(l.check("https://connect.squareup.com.evil.com/").is_err());
        assert!(l.check("ftp://connect.squareup.com/").is_err());
        assert!(l.check("https://user:pw@connect.squareup.com/").is_err());
    }

    #[test]
    fn ports_wildcards_and_ip_literals() {
        let l = list(&["127.0.0.1:8081", "*.toasttab.com", "[::1]:9000"]);
        assert_eq!(
            l.check("http://127.0.0.1:8081/x").unwrap(),
            "127.0.0.1:8081"
        );
        assert!(l.check("http://127.0.0.1:8082/x").is_err());
        assert!(l.check("http://127.0.0.1/x").is_err());
        assert!(l.check("https://ws-api.toasttab.com/orders").is_ok());
        assert!(l.check("https://toasttab.com/").is_err());
        assert!(l.check("https://eviltoasttab.com/").is_err());
        assert!(l.check("http://[::1]:9000/").is_ok());
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "",
            "https://x.com",
            "x.com/path",
            "x.com:99999",
            "*.",
            "a..b",
            "-a.com",
            "[::1",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert_eq!(
            HostPattern::parse("API.Example.com:8080")
                .unwrap()
                .to_string(),
            "api.example.com:8080"
        );
    }
}
