//! What dnsmasq's log says about the declared clients (`pinetboot status`) and about Pis
//! that asked for files without being declared (`pinetboot discover`).
//!
//! # Where the log comes from
//!
//! The generated drop-in sets `log-facility=` to `paths.dnsmasq_log`
//! (`/var/log/pinetboot/dnsmasq.log`): dnsmasq then writes its own lines, with their
//! `Mmm dd HH:MM:SS` time stamps, to a plain file pinetboot reads under `--root` like every
//! other host path (`read.rs`, [`read_log`]). `port=0` in the same drop-in already makes the dnsmasq
//! instance pinetboot's, so a global option in it is ours to set. When the file does not
//! exist (dnsmasq not restarted since, or the log sent elsewhere) and `--root` is `/`, the
//! journal is read instead: `journalctl -u dnsmasq.service -o short --no-pager` under
//! `LC_ALL=C` (the `short` form is the syslog form [`crate::bootlog`] parses; the C locale
//! keeps the month names English).
//!
//! dnsmasq translates its TFTP messages into the locale it runs in: it must run under
//! `LC_ALL=C` (see README). Lines from a translated dnsmasq are not understood; [`Status`]
//! says so in `log.note`.
//!
//! Three steps: `read.rs` gets the log text ([`read_log`]), `fold.rs` folds it with
//! [`crate::bootlog`] into a [`Status`] ([`status`], no I/O), `render.rs` writes the table,
//! the JSON and `discover`'s YAML stanzas.

mod fold;
mod read;
mod render;
#[cfg(test)]
mod tests;

pub use fold::*;
pub use read::*;
pub use render::*;
