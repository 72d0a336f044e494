//! The process's own settings: its umask and whether it runs as root.

/// Sets the process umask to `mask` (e.g. `0o022`), so folders and files get exactly the
/// modes pinetboot asks for.
pub fn set_umask(mask: u32) {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
}

/// Whether the process runs as root (effective user id 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
