//! Parse dnsmasq's log file into Raspberry Pi boot events.
//!
//! # Log format relied on
//!
//! dnsmasq started with `--log-facility=/path/file` (not syslog, not `-`)
//! under `LC_ALL=C` writes one line per message:
//!
//! ```text
//! Nov 26 18:13:02 dnsmasq-dhcp[123]: 3735928559 PXE(eth0) dc:a6:32:01:02:03 proxy
//! Nov 26 18:13:02 dnsmasq-tftp[123]: sent /srv/tftpboot/0c4c21e5/start4.elf to 10.99.0.101
//! ^^^^^^^^^^^^^^^ ^^^^^^^^^^^^^^^^^^ message
//! timestamp       ident[pid]:
//! ```
//!
//! * The timestamp is `ctime()` characters 4..19 in the server's local time
//!   zone, i.e. `strftime("%b %e %H:%M:%S")`: English month abbreviation,
//!   day padded with a space (`Aug  2`), no year. It is parsed into
//!   [`LogTime`]; the raw text is kept. Lines without it (e.g. syslog-less
//!   `--log-facility=-` in the foreground) still parse, with `time: None`.
//!   A syslog/journal prefix with a host name (`Aug  2 12:21:02 host
//!   dnsmasq-tftp[548]: …`) is accepted too: the ident is searched for.
//! * The ident is `dnsmasq`, `dnsmasq-dhcp` or `dnsmasq-tftp`, then `[pid]: `.
//! * With `log-dhcp`, DHCP lines start with the transaction id in decimal
//!   (`3735928559 PXE(eth0) …`); without it they do not. Both are accepted.
//! * DHCP packet lines: `TYPE(iface) [ip ]mac[ detail]`, e.g.
//!   `DHCPOFFER(br0) 10.99.0.123 dc:a6:32:01:02:03`, `PXE(eth0) MAC proxy`.
//! * TFTP lines (dnsmasq 2.90, `src/tftp.c`, C locale, they are translated
//!   in other locales): `sent PATH to IP`, `file PATH not found for IP`
//!   (older releases: `file PATH not found`), `failed sending PATH to IP`,
//!   `error CODE MESSAGE received from IP`, `cannot access PATH: REASON`.
//!   `PATH` is absolute (tftp-root joined with the request).
//!
//! The serial of a TFTP path is the directory component right below the
//! TFTP root when one is given ([`Parser::with_tftp_root`]), else the
//! nearest directory component, walking up from the file, that is exactly
//! eight lowercase hex digits (the Pi 4's `TFTP_PREFIX=0` folder). Folders a
//! client's `eeprom.tftp_prefix` names (its MAC, a string) count as its serial's
//! when the parser knows them ([`Parser::with_folders`]).
//!
//! `parse.rs` reads lines into events; `summary.rs` folds events per serial and MAC.

mod parse;
mod summary;

pub use parse::*;
pub use summary::*;

#[cfg(test)]
mod tests;
