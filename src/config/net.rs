//! IPv4 networks in CIDR form, as the config names them.

use std::net::Ipv4Addr;

/// An IPv4 network: `ipnet`'s type, built here only with its host bits clear.
pub use ipnet::Ipv4Net;

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `ADDRESS/PREFIX` with a valid address and a prefix of 0 to 32.
    Malformed,
    /// Host bits are set; carries the network the user probably meant.
    HostBits(Ipv4Net),
}

/// Parses `ADDRESS/PREFIX` strictly: the address as `std` reads it (no leading zeros, unlike
/// `ipnet`'s own parser), a prefix of one or two decimal digits up to 32, no host bits set.
pub fn parse(s: &str) -> Result<Ipv4Net, CidrError> {
    let (a, p) = s.split_once('/').ok_or(CidrError::Malformed)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Malformed)?;
    if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CidrError::Malformed);
    }
    let prefix: u8 = p.parse().map_err(|_| CidrError::Malformed)?;
    let net = Ipv4Net::new(addr, prefix)
        .map_err(|_| CidrError::Malformed)?
        .trunc();
    if net.addr() != addr {
        return Err(CidrError::HostBits(net));
    }
    Ok(net)
}

/// Whether `ip` is a usable host address in `net` (not its network or broadcast address; on
/// a /31 or /32 every address is).
pub fn is_host(net: &Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_answers() {
        let n = parse("192.168.2.0/24").unwrap();
        assert!(n.contains(&"192.168.2.209".parse::<Ipv4Addr>().unwrap()));
        assert!(!n.contains(&"192.168.3.1".parse::<Ipv4Addr>().unwrap()));
        assert_eq!(n.broadcast(), Ipv4Addr::new(192, 168, 2, 255));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(!is_host(&n, n.broadcast()));
        assert!(is_host(&n, "192.168.2.1".parse().unwrap()));
        assert!(is_host(
            &parse("10.0.0.8/31").unwrap(),
            "10.0.0.8".parse().unwrap()
        ));
        assert_eq!(parse("0.0.0.0/0").unwrap().prefix_len(), 0);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "192.168.2.0",
            "192.168.2.0/33",
            "192.168.2.0/",
            "x/24",
            "1.2.3.4/+8",
            "010.0.0.0/8",
            "10.0.0.0/008",
        ] {
            assert_eq!(parse(bad), Err(CidrError::Malformed), "{bad}");
        }
        assert!(matches!(
            parse("192.168.2.9/24"),
            Err(CidrError::HostBits(n)) if n.to_string() == "192.168.2.0/24"
        ));
    }
}
