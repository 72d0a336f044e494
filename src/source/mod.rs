//! Where the config comes from in pull mode: a git repository.
//!
//! [`Settings`] (`/etc/pinetboot/source.yaml`, or flags) name the repository, the branch or tag
//! and the config file inside it; [`Repo`] is the local repository at [`CHECKOUT_DIR`] that
//! fetches, verifies signatures, reads the config file at a commit and checks out the last good
//! commit. Git itself is the `git` CLI: the one maintained implementation that verifies
//! SSH-signed commits, and it uses the host's ssh config, known_hosts and credential helpers.

mod error;
mod repo;
mod settings;

pub use error::SourceError;
pub use repo::{CommitInfo, Repo};
pub use settings::Settings;

/// The pull-mode settings file (a host path, under `--root`).
pub const SETTINGS_FILE: &str = "/etc/pinetboot/source.yaml";

/// The local repository pull mode fetches into (a host path, under `--root`); its work tree
/// holds the last good commit.
pub const CHECKOUT_DIR: &str = "/var/lib/pinetboot/config";

#[cfg(test)]
mod tests;
