//! Names, references and addresses as callers give them.

use super::Invalid;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A subcloud or group name: 1–255 characters from `[A-Za-z0-9._-]`, not all digits, so a
/// reference can always be told apart from an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, value: &str) -> Result<Name, Invalid> {
        if value.is_empty() || value.len() > 255 {
            return Err(Invalid::field(field, "must be 1 to 255 characters long"));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(Invalid::field(
                field,
                format!("'{bad}' is not allowed; use letters, digits, '.', '_' and '-'"),
            ));
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::field(field, "a name cannot be only digits"));
        }
        Ok(Name(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a caller names a subcloud or a group: by id (all digits) or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    Id(u64),
    Name(Name),
}

impl Ref {
    pub fn parse(field: &str, value: &str) -> Result<Ref, Invalid> {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return value
                .parse()
                .map(Ref::Id)
                .map_err(|_| Invalid::field(field, "id is out of range"));
        }
        Name::parse(field, value).map(Ref::Name)
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Id(id) => write!(f, "{id}"),
            Ref::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// Where a subcloud's agent listens: an `http` or `https` URL with a host and a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentUrl(String);

impl AgentUrl {
    pub fn parse(field: &str, value: &str) -> Result<AgentUrl, Invalid> {
        let expected = "expected a URL like https://10.10.10.2:8443";
        let uri: http::Uri = value
            .parse()
            .map_err(|_| Invalid::field(field, format!("'{value}' is not a URL; {expected}")))?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        let authority = uri.authority().filter(|a| !a.host().is_empty());
        match authority {
            Some(a) if scheme_ok && a.port_u16().is_some() => Ok(AgentUrl(format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("https"),
                a
            ))),
            _ => Err(Invalid::field(field, expected)),
        }
    }

    /// The same agent reached at another address on its registered port and scheme
    /// (a restore's `bootstrap_address`, or a PATCH of `bootstrap-address`).
    pub fn with_host(&self, ip: std::net::IpAddr) -> Result<AgentUrl, Invalid> {
        // Re-parsed rather than trusted: the stored value is only as good as the table.
        let parsed = AgentUrl::parse("agent-url", &self.0)?;
        let uri: http::Uri = parsed
            .0
            .parse()
            .map_err(|_| Invalid::field("agent-url", "is not a URL"))?;
        let (Some(port), Some(scheme)) = (uri.port_u16(), uri.scheme_str()) else {
            return Err(Invalid::field("agent-url", "has no port"));
        };
        let host = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        Ok(AgentUrl(format!("{scheme}://{host}:{port}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_digits_only_and_odd_characters() {
        assert!(Name::parse("name", "subcloud1").is_ok());
        assert!(Name::parse("name", "sub.cloud_1-a").is_ok());
        for bad in ["", "123", "sub cloud", "sub/cloud", &"a".repeat(256)] {
            assert!(Name::parse("name", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refs_tell_ids_from_names() {
        assert_eq!(Ref::parse("subcloud", "12").unwrap(), Ref::Id(12));
        assert!(matches!(
            Ref::parse("subcloud", "dc-12").unwrap(),
            Ref::Name(_)
        ));
        assert!(Ref::parse("subcloud", "99999999999999999999999").is_err());
    }

    #[test]
    fn agent_urls_need_scheme_host_and_port() {
        let url = AgentUrl::parse("agent-url", "https://10.0.0.5:8443/").unwrap();
        assert_eq!(url.as_str(), "https://10.0.0.5:8443");
        for bad in ["10.0.0.5:8443", "ftp://h:1", "https://h", "not a url"] {
            assert!(AgentUrl::parse("agent-url", bad).is_err(), "{bad}");
        }
        let moved = url.with_host("fd00::7".parse().unwrap()).unwrap();
        assert_eq!(moved.as_str(), "https://[fd00::7]:8443");
    }
}
