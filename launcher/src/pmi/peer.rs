//! Who is on the other end of a loopback TCP connection: the uid that owns the connecting
//! socket, from the kernel's socket tables (`/proc/net/tcp`, `/proc/net/tcp6`).
//!
//! TCP has no `SO_PEERCRED`, but for a connection within one network namespace both ends are
//! in the table, each with the uid of the process that created it. The `PMI_PORT` listener
//! uses this to let in only the job's own ranks: any user on the node can see the port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid owning the socket at `peer` that is connected to `local`, or `None` when no live,
/// owned socket matches (the peer already closed: a rank never does that before its replies).
pub fn owner(peer: SocketAddr, local: SocketAddr) -> std::io::Result<Option<u32>> {
    let table = match peer.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table)?;
    Ok(find_owner(&text, peer, local))
}

/// Looks `peer` → `local` up in the text of a socket table.
pub fn find_owner(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (from, to, uid, inode) = (f.get(1)?, f.get(2)?, f.get(7)?, f.get(9)?);
        if parse_addr(from)? != peer || parse_addr(to)? != local {
            return None;
        }
        // Inode 0: a socket no process owns any more (orphaned, or in TIME_WAIT, where the
        // table shows uid 0 whoever made it). Its uid proves nothing.
        if *inode == "0" {
            return None;
        }
        uid.parse().ok()
    })
}

/// `0100007F:1F90` (IPv4: the address as the kernel's native-order u32) or 32 hex digits of
/// four such words (IPv6), then the port in hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(8 * i..8 * i + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[4 * i..4 * i + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex4(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    #[test]
    fn the_connecting_socket_is_found_and_orphans_prove_nothing() {
        let a = hex4([127, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {a}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 111 1\n\
             1: {a}:C000 {a}:1F90 01 00000000:00000000 00:00000000 00000000  65534 0 222 1\n\
             2: {a}:1F90 {a}:C000 01 00000000:00000000 00:00000000 00000000  1000 0 333 1\n\
             3: {a}:C001 {a}:1F90 06 00000000:00000000 03:00000135 00000000     0 0 0 3\n"
        );
        let port = |p| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(find_owner(&table, port(0xC000), port(0x1F90)), Some(65534));
        assert_eq!(find_owner(&table, port(0xC001), port(0x1F90)), None, "time-wait");
        assert_eq!(find_owner(&table, port(0xC002), port(0x1F90)), None, "absent");
        assert_eq!(find_owner("garbage\nmore garbage here", port(1), port(2)), None);
    }

    #[test]
    fn ipv6_addresses_parse() {
        let words: String = Ipv6Addr::LOCALHOST
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        assert_eq!(
            parse_addr(&format!("{words}:0050")),
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 80))
        );
        assert_eq!(parse_addr("12:34"), None);
        assert_eq!(parse_addr("0100007F"), None);
    }

    #[test]
    fn a_real_loopback_connection_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(owner(peer, server.local_addr().unwrap()).unwrap(), Some(me));
        drop(client);
    }
}
