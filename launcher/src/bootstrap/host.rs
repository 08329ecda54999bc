//! Where to start a command: [`HostSpec`], `[user@]host[:port]` as users write it.

use std::fmt;
use std::str::FromStr;

use super::error::BootstrapError;

/// Where to start a command: `[user@]host[:port]`, with `[v6addr]:port` for IPv6 literals.
///
/// `user` and `port` given here win over an ssh config; unset, the config (or the defaults:
/// the local user name, port 22) decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostSpec {
    /// Host name, alias from an ssh config, or address.
    pub host: String,
    /// Remote user name.
    pub user: Option<String>,
    /// TCP port of the node's sshd.
    pub port: Option<u16>,
}

impl HostSpec {
    /// A spec for `host` with no user or port.
    pub fn new(host: impl Into<String>) -> HostSpec {
        HostSpec { host: host.into(), user: None, port: None }
    }
}

impl FromStr for HostSpec {
    type Err = BootstrapError;

    fn from_str(spec: &str) -> Result<HostSpec, BootstrapError> {
        let bad = |reason: &str| BootstrapError::InvalidHostSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec.is_empty() {
            return Err(bad("it is empty"));
        }
        if spec.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains white space or control characters"));
        }
        let (user, rest) = match spec.rsplit_once('@') {
            Some(("", _)) => return Err(bad("the user name before '@' is empty")),
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) =
                inner.split_once(']').ok_or_else(|| bad("'[' without a closing ']'"))?;
            match after {
                "" => (addr, None),
                p => (
                    addr,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("expected ':port' after ']'"))?),
                ),
            }
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 literal: its colons are not a port separator.
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host name is empty"));
        }
        // A leading '-' would be read as an option by the ssh binary.
        if host.starts_with('-') || user.as_deref().is_some_and(|u| u.starts_with('-')) {
            return Err(bad("a host or user name may not start with '-'"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
                Ok(n) => Some(n),
            },
        };
        Ok(HostSpec { host: host.to_string(), user, port })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        let v6 = self.host.contains(':');
        match (self.port, v6) {
            (Some(p), true) => write!(f, "[{}]:{p}", self.host),
            (Some(p), false) => write!(f, "{}:{p}", self.host),
            (None, _) => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> HostSpec {
        s.parse().expect("valid spec")
    }

    #[test]
    fn host_spec_forms() {
        assert_eq!(spec("node1"), HostSpec::new("node1"));
        let s = spec("alice@node2:2222");
        assert_eq!(
            (s.host.as_str(), s.user.as_deref(), s.port),
            ("node2", Some("alice"), Some(2222))
        );
        assert_eq!(spec("[fe80::1]:22").host, "fe80::1");
        assert_eq!(spec("[fe80::1]:22").port, Some(22));
        assert_eq!(spec("bob@[::1]").host, "::1");
        assert_eq!(spec("::1").host, "::1");
        assert_eq!(spec("::1").port, None);
        assert_eq!(spec("a@b@c").user.as_deref(), Some("a@b"));
        for s in ["alice@node2:2222", "[::1]:22", "node1", "u@[fe80::1]:8"] {
            assert_eq!(spec(s).to_string(), s);
        }
    }

    #[test]
    fn host_spec_rejects() {
        for bad in [
            "",
            "@h",
            "u@",
            "h:",
            "h:0",
            "h:70000",
            "h:x",
            "-oProxyCommand=x",
            "-x@h",
            "a b",
            "[::1",
            "[::1]x",
            ":22",
        ] {
            let err = bad.parse::<HostSpec>().expect_err(bad);
            assert!(err.to_string().contains("host"), "{bad}: {err}");
        }
    }
}
