//! IPv4 networks in CIDR form, as the config names them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with its host bits clear and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not `ADDRESS/PREFIX` with a valid address and a prefix of 0 to 32.
    Malformed,
    /// Host bits are set; carries the network the user probably meant.
    HostBits(Ipv4Net),
}

impl Ipv4Net {
    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The netmask in dotted form.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Whether `ip` is a usable host address here (not the network or broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix >= 31 || (ip != self.addr && ip != self.broadcast()))
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s.split_once('/').ok_or(CidrError::Malformed)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Malformed)?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Malformed);
        }
        let prefix: u8 = p.parse().map_err(|_| CidrError::Malformed)?;
        if prefix > 32 {
            return Err(CidrError::Malformed);
        }
        let net = Ipv4Net { addr, prefix };
        let clean = Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & net.mask()),
            prefix,
        };
        if clean.addr != addr {
            return Err(CidrError::HostBits(clean));
        }
        Ok(clean)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_answers() {
        let n: Ipv4Net = "192.168.2.0/24".parse().unwrap();
        assert!(n.contains("192.168.2.209".parse().unwrap()));
        assert!(!n.contains("192.168.3.1".parse().unwrap()));
        assert_eq!(n.broadcast(), Ipv4Addr::new(192, 168, 2, 255));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(!n.is_host(n.broadcast()));
        assert_eq!("0.0.0.0/0".parse::<Ipv4Net>().unwrap().prefix(), 0);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "192.168.2.0",
            "192.168.2.0/33",
            "192.168.2.0/",
            "x/24",
            "1.2.3.4/+8",
        ] {
            assert_eq!(bad.parse::<Ipv4Net>(), Err(CidrError::Malformed), "{bad}");
        }
        assert!(matches!(
            "192.168.2.9/24".parse::<Ipv4Net>(),
            Err(CidrError::HostBits(n)) if n.to_string() == "192.168.2.0/24"
        ));
    }
}
