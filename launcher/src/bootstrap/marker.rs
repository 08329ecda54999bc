//! The wrapper script's first line, which says on the node whether the program exists and how
//! the node sees the connection (`SSH_CONNECTION`), before any output of the program itself.

use std::net::{IpAddr, SocketAddr};

/// The first stdout line the wrapper script prints on the node, before anything of the command.
/// It starts with a control character so no program's own output is mistaken for it.
pub(crate) const MARKER: &str = "\u{1e}gangway-bootstrap";

/// What the first line of the wrapper said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MarkerLine {
    /// The program exists and is being exec'd; `SSH_CONNECTION` as the node saw it.
    Running { ssh_connection: String },
    /// `command -v` did not find the program.
    Missing,
}

pub(crate) fn parse_marker(line: &str) -> Option<MarkerLine> {
    let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(MARKER)?;
    let rest = rest.strip_prefix(' ')?;
    if rest == "missing" {
        return Some(MarkerLine::Missing);
    }
    let conn = rest.strip_prefix("ok")?;
    Some(MarkerLine::Running { ssh_connection: conn.trim().to_string() })
}

/// Parses `SSH_CONNECTION` (`client_ip client_port server_ip server_port`) into
/// (our address as the node sees it, the node's address).
pub fn parse_ssh_connection(value: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut it = value.split_whitespace();
    let cip: IpAddr = it.next()?.parse().ok()?;
    let cport: u16 = it.next()?.parse().ok()?;
    let sip: IpAddr = it.next()?.parse().ok()?;
    let sport: u16 = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((SocketAddr::new(cip, cport), SocketAddr::new(sip, sport)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines() {
        assert_eq!(
            parse_marker("\u{1e}gangway-bootstrap ok 10.0.0.254 4711 10.0.0.2 22\n"),
            Some(MarkerLine::Running { ssh_connection: "10.0.0.254 4711 10.0.0.2 22".into() })
        );
        assert_eq!(parse_marker("\u{1e}gangway-bootstrap missing"), Some(MarkerLine::Missing));
        assert_eq!(parse_marker("gangway-bootstrap ok"), None);
        assert_eq!(parse_marker("hello"), None);
    }

    #[test]
    fn ssh_connection_variable() {
        let (l, p) = parse_ssh_connection("10.77.0.254 51234 10.77.0.2 22").expect("parses");
        assert_eq!(l.to_string(), "10.77.0.254:51234");
        assert_eq!(p.to_string(), "10.77.0.2:22");
        let (l, _) = parse_ssh_connection("fe80::1 1 fe80::2 22").expect("v6");
        assert_eq!(l.to_string(), "[fe80::1]:1");
        assert!(parse_ssh_connection("").is_none());
        assert!(parse_ssh_connection("1.2.3.4 x 1.2.3.5 22").is_none());
        assert!(parse_ssh_connection("1.2.3.4 1 1.2.3.5 22 9").is_none());
    }
}
