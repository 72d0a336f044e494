//! Pure renderers of the files pinetboot owns on the host: the dnsmasq drop-in, the exports
//! drop-in, and fenced blocks inside files others own.

pub mod dnsmasq;
pub mod exports;
pub mod fence;

/// The first line of every whole file pinetboot writes.
pub const HEADER: &str =
    "# Managed by pinetboot: edits here are overwritten by `pinetboot apply`.\n";
