//! The dnsmasq drop-in: proxy-DHCP beside the existing router, plus TFTP from the TFTP root,
//! offering a boot only to declared clients (by MAC where known) or to Raspberry Pi MAC
//! prefixes — never to every PXE client on the LAN (x86 PXE sends the same option 93 = 0).

use crate::config::Valid;

/// Raspberry Pi Ltd's Ethernet MAC prefixes (OUIs).
pub const PI_OUIS: &[&str] = &[
    "28:cd:c1", "2c:cf:67", "88:a2:9e", "b8:27:eb", "d8:3a:dd", "dc:a6:32", "e4:5f:01",
];

/// The dnsmasq tag that marks a client pinetboot boots.
pub const TAG: &str = "pinetboot";

/// Renders `/etc/dnsmasq.d/pinetboot.conf`.
pub fn render(valid: &Valid) -> String {
    let mut out = String::from(super::HEADER);
    out.push_str(&format!(
        "# Proxy-DHCP and TFTP for Raspberry Pi 4 network boot on {}.\n",
        valid.network
    ));
    out.push_str(
        "# No DNS from this instance (avoids clashing with a resolver on port 53).\nport=0\n",
    );
    if let Some(ifname) = &valid.interface {
        out.push_str(&format!("interface={ifname}\nbind-interfaces\n"));
    }
    out.push_str(&format!(
        "dhcp-range={},proxy,{}\n",
        valid.network.addr(),
        valid.network.netmask()
    ));
    out.push_str(&format!(
        "# The boot log `pinetboot status` reads (dnsmasq must run under LC_ALL=C).\nlog-facility={}\n",
        valid.paths.dnsmasq_log
    ));
    out.push_str("log-dhcp\nenable-tftp\n");
    out.push_str(&format!("tftp-root={}\n", valid.paths.tftp));
    out.push_str("# Who is offered a boot:\n");
    let mut any_without_mac = false;
    for (name, client) in &valid.clients {
        match &client.mac {
            Some(mac) => out.push_str(&format!("dhcp-host={mac},set:{TAG}  # {name}\n")),
            None => any_without_mac = true,
        }
    }
    if any_without_mac {
        out.push_str("# Clients declared without a MAC: any Raspberry Pi.\n");
        for oui in PI_OUIS {
            out.push_str(&format!("dhcp-mac=set:{TAG},{oui}:*:*:*\n"));
        }
    }
    out.push_str(&format!("pxe-service=tag:{TAG},0,\"Raspberry Pi Boot\"\n"));
    out
}
