//! The command line, defined once: clap types here; the man pages and completions are
//! generated from them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod generate;

/// Declarative network-boot server for Raspberry Pi 4 boards.
///
/// pinetboot reads one YAML file describing images, clients and the boot network, compares it
/// with the host, and makes dnsmasq (proxy-DHCP + TFTP) and the kernel NFS server serve every
/// declared Pi its own root.
#[derive(Debug, Parser)]
#[command(
    name = "pinetboot",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The desired-state file [default: /etc/pinetboot/pinetboot.yaml; in pull mode, when
    /// /etc/pinetboot/source.yaml exists, the config of the commit last pulled]
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "PINETBOOT_CONFIG"
    )]
    pub config: Option<PathBuf>,
    /// Which server of a fleet (`servers:`) this host is [default: `server:` in
    /// /etc/pinetboot/source.yaml, else the server named by this host's hostname, else the one
    /// whose address is on this host]
    #[arg(long, global = true, value_name = "NAME", env = "PINETBOOT_SERVER")]
    pub server: Option<String>,
    /// Treat DIR as the host's root folder (as `systemctl --root` does): every host path is
    /// resolved under it, and generated files still name paths as the host sees them.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// More log output (repeat for more).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config file and report every problem with its line, column and field. A
    /// fleet file is checked whole (every server and client); needs no root and no host.
    Validate,
    /// Print the JSON schema of the config file (draft-07), for editors.
    Schema,
    /// Show what `apply` would change on the host, without changing anything.
    Plan(PlanArgs),
    /// Make the host match the config: idempotent, locked, crash-safe.
    Apply(ApplyArgs),
    /// Fetch the config repository (/etc/pinetboot/source.yaml, or flags) and apply its config
    /// file at the fetched commit; the same as `apply --pull`.
    ///
    /// The fetched commit is applied only if its config validates, this host is one of its
    /// servers and, when `allowed_signers` is set, the commit is signed by an allowed key.
    /// Otherwise it is refused: the host is converged on the last good commit (the one
    /// checked out in /var/lib/pinetboot/config) and the exit status is 1, with the commit and
    /// the reasons on stderr (the journal, under systemd).
    Pull(PullArgs),
    /// The bootloader (EEPROM): inspect images, render a client's config, write a one-time
    /// SD card that switches a factory Pi to network boot.
    #[command(subcommand)]
    Eeprom(EepromCommand),
    /// Bind-mount every recorded client's boot folder onto its TFTP folder, as the last apply
    /// made them (run at server boot by pinetboot-mount.service, before dnsmasq and the NFS
    /// server). Each folder is opened inside its client root without following a symlink, and
    /// only a real folder is mounted (read-only, nosuid, nodev, noexec, nosymfollow); what is
    /// not is named and left unmounted (exit status 1). Mounts already right are kept.
    Mount,
    /// Delete the root folder of a client that is no longer declared (client data: only on
    /// request, by name).
    Purge(PurgeArgs),
    /// List what no declared client uses: image store entries no client's image names, and
    /// client roots `reprovision` moved aside, with their sizes; with `--yes`, delete them.
    ///
    /// An entry in use is never listed. Deletion is by descriptor: a symlink inside is never
    /// followed, and a tree with a mount inside is refused (named, and kept) before anything
    /// of it is deleted. `plan` lists the same things under "Removable"; `apply` never
    /// deletes them.
    Gc(GcArgs),
    /// Provision a declared client's root anew from its image (e.g. after the image changed):
    /// the old root is moved aside to NFS/.NAME.pinetboot-old-TIME (never deleted), then
    /// `apply` runs and clones a new root from the image store.
    Reprovision(ReprovisionArgs),
    /// Check the live host for what keeps a Pi from booting, with a fix for each finding.
    ///
    /// Checks, in order: the config is valid, the state file readable and `plan` empty (no
    /// drift); dnsmasq installed and running in this network namespace, holding UDP 67 (DHCP)
    /// and 69 (TFTP) on the boot interface, with no DNS clash on 53; no other dnsmasq config
    /// (/etc/dnsmasq.conf, /etc/dnsmasq.d/*) serving the boot network, an unscoped BIOS
    /// `pxe-service` or a `port=`; the server address on an interface that is up and in the
    /// boot network; per client, the bind mount of its boot folder on /tftpboot/SERIAL, every
    /// folder down to it enterable by the user dnsmasq serves as, and start4.elf readable;
    /// the kernel NFS server running (/proc/fs/nfsd) and `exportfs -v` listing each client root
    /// to its scope.
    ///
    /// Each finding is ok, a warning or a problem. Exit status: 0 when nothing is a problem
    /// (warnings alone: 0), 1 when anything is. Files are read under --root; processes,
    /// sockets and interfaces are those of the namespaces doctor runs in.
    Doctor(DoctorArgs),
    /// What dnsmasq's log says about each declared client: last DHCP exchange, last file
    /// served, when and to which address; clients never seen.
    Status(StatusArgs),
    /// Print Pis that asked for files but are not declared, as YAML stanzas to paste under
    /// `clients:`.
    Discover,
    /// Write the man pages or shell completions (for packaging).
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCommand),
}

/// `pinetboot plan` options.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print the plan as JSON (format: docs/plan-json.md).
    #[arg(long)]
    pub json: bool,
    /// Plan the config of the repository's newest commit (fetched, checked like `pull` does,
    /// not applied and not checked out): e.g. a branch's plan before it is merged.
    #[arg(long)]
    pub pull: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Exit 0 when there are no changes, 2 when changes are pending, 1 on an error or a
    /// conflict (also when changes are pending too).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// `pinetboot apply` options.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Fail at once if another apply holds the lock, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Pull first (as `pinetboot pull`). `--pull=auto` pulls only when
    /// /etc/pinetboot/source.yaml exists, else applies the config file (the timer's form).
    #[arg(long, value_enum, value_name = "WHEN", num_args = 0..=1, require_equals = true, default_missing_value = "always")]
    pub pull: Option<PullWhen>,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// When `apply` pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullWhen {
    /// Always (an error without a source).
    Always,
    /// When /etc/pinetboot/source.yaml exists.
    Auto,
}

/// `pinetboot pull` options.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Fail at once if another apply holds the lock, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Where pull mode fetches from; each flag replaces that field of /etc/pinetboot/source.yaml
/// (with `--url`, the file is not needed).
#[derive(Debug, Args, Default)]
pub struct SourceArgs {
    /// The repository: https://…, ssh://…, user@host:path or file:///….
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The branch or tag to fetch [default: main].
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// The config file inside the repository [default: pinetboot.yaml].
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Accept only commits signed by a key in this file (git's SSH `allowed_signers`
    /// format).
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
}

impl SourceArgs {
    /// Whether no source flag was given.
    pub fn is_empty(&self) -> bool {
        self.url.is_none()
            && self.git_ref.is_none()
            && self.path.is_none()
            && self.allowed_signers.is_none()
    }
}

/// `pinetboot doctor` options.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON: `{"format_version": 1, "summary": {...}, "findings":
    /// [{"id", "severity", "check", "detail", "fix"}]}`.
    #[arg(long)]
    pub json: bool,
}

/// `pinetboot reprovision` options.
#[derive(Debug, Args)]
pub struct ReprovisionArgs {
    /// The declared client whose root to provision anew.
    pub client: String,
    /// Confirm that the client's root is to be moved aside and replaced.
    #[arg(long)]
    pub yes: bool,
}

/// `pinetboot status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON (stable; versioned by `format_version`).
    #[arg(long)]
    pub json: bool,
}

/// `pinetboot gc` options.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Delete what is listed (without it, gc only lists).
    #[arg(long)]
    pub yes: bool,
    /// Print the list (and what was deleted) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pinetboot purge` options.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The client whose root to delete; it must no longer be declared in the config.
    pub client: String,
    /// Confirm that the client's data is to be deleted.
    #[arg(long)]
    pub yes: bool,
}

/// `pinetboot eeprom …`.
#[derive(Debug, Subcommand)]
pub enum EepromCommand {
    /// Print the config embedded in a bootloader image (as `rpi-eeprom-config FILE` does).
    Show {
        /// A `pieeprom-*.bin` or `pieeprom.upd` file.
        file: PathBuf,
    },
    /// Print the config pinetboot embeds for a client (its settings over the base image's).
    Render {
        /// A declared client.
        client: String,
    },
    /// Write the files of a one-time SD card (recovery.bin, pieeprom.upd, pieeprom.sig) that
    /// flashes the declared bootloader config when a Pi boots from it once.
    SdCard {
        /// The folder to write into: the mounted FAT partition of an SD card.
        dir: PathBuf,
        /// Use this client's settings (default: `defaults.eeprom`).
        #[arg(long)]
        client: Option<String>,
    },
}
