//! Pull mode: the config comes from a commit of a git repository ([`crate::source`]). A
//! fetched commit becomes a [`Candidate`]; it is accepted (checked out as the last good
//! commit) only when it is signed as required, its config file is a plain file that
//! validates, and this host is one of its servers. Otherwise it is a [`Refusal`], and the
//! commit checked out before stays the one in force.

use std::path::PathBuf;

use crate::config::{self, ConfigError, Fleet, Identity, SelectError, Valid};
use crate::host::Host;
use crate::source::{Repo, Settings, SourceError};
use crate::state::SourceRecord;

/// Which local ref a fetch lands in: `pull` for what may be applied, `plan` for a preview, so
/// a plan of a branch never moves what the next pull sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `pinetboot pull` / `apply --pull`.
    Pull,
    /// `pinetboot plan --pull`.
    Plan,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::Pull => "pull",
            Slot::Plan => "plan",
        }
    }
}

/// A commit whose config has been read and checked, for this host's server.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The commit, as the state will record it.
    pub record: SourceRecord,
    /// This host's part of the config, with `origin` set to `record`.
    pub valid: Valid,
}

/// Why a commit is not applied.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Signatures are required and this commit's is missing or not from an allowed key.
    #[error("{0}")]
    Signature(SourceError),
    /// The config file is missing at that commit, or not a plain file.
    #[error("{0}")]
    File(SourceError),
    /// The config does not validate.
    #[error("its config does not validate:\n{0}")]
    Config(ConfigError),
    /// The config is valid, and this host is none (or several) of its servers.
    #[error("{0}")]
    NotHere(SelectError),
}

impl Refusal {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            Refusal::Signature(e) | Refusal::File(e) => e.hint(),
            Refusal::Config(_) => {
                "fix the config in the repository and push; `pinetboot validate -c FILE` checks a fleet file anywhere (CI)".into()
            }
            Refusal::NotHere(e) => e.hint().into(),
        }
    }
}

/// What can go wrong in pull mode.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// git or the settings failed (the network, a missing repository, a bad URL): nothing
    /// was judged.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The commit was fetched and judged, and refused.
    #[error("commit {} \"{}\" of {} ({}) is refused: {reason}", commit.short(), commit.subject, commit.url, commit.git_ref)]
    Refused {
        /// The refused commit.
        commit: Box<SourceRecord>,
        /// Why.
        reason: Refusal,
    },
}

/// The source settings: /etc/pinetboot/source.yaml (under the host root) with `flags` over
/// it. `None` when there is no file and no `--url`.
pub fn settings(host: &Host, flags: Flags) -> Result<Option<Settings>, SourceError> {
    let file = Settings::load(host)?;
    let settings = match (file, flags.url) {
        (None, None) => return Ok(None),
        (Some(mut s), url) => {
            if let Some(url) = url {
                s.url = url;
            }
            s
        }
        (None, Some(url)) => Settings {
            url,
            git_ref: "main".into(),
            path: "pinetboot.yaml".into(),
            server: None,
            allowed_signers: None,
        },
    };
    let settings = Settings {
        git_ref: flags.git_ref.unwrap_or(settings.git_ref),
        path: flags.path.unwrap_or(settings.path),
        allowed_signers: flags.allowed_signers.or(settings.allowed_signers),
        ..settings
    };
    settings.check()?;
    Ok(Some(settings))
}

/// Settings given on the command line, each replacing the file's.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--url`.
    pub url: Option<String>,
    /// `--ref`.
    pub git_ref: Option<String>,
    /// `--path`.
    pub path: Option<String>,
    /// `--allowed-signers`.
    pub allowed_signers: Option<PathBuf>,
}

/// Fetches the settings' ref into `slot` and judges its newest commit for this host.
/// `wanted` is the server asked for (`--server`, else the settings' `server`).
pub fn fetch(
    host: &Host,
    settings: &Settings,
    slot: Slot,
    wanted: Option<&str>,
    identity: impl FnOnce() -> Identity,
) -> Result<Candidate, PullError> {
    let repo = Repo::open(host);
    let commit = repo.fetch(&settings.url, &settings.git_ref, slot.name())?;
    judge(host, &repo, settings, &commit, wanted, identity)
}

/// The commit in force (checked out by the last accepted pull), read again for this host;
/// `None` before the first accepted pull.
pub fn current(
    host: &Host,
    settings: &Settings,
    wanted: Option<&str>,
    identity: impl FnOnce() -> Identity,
) -> Result<Option<Candidate>, PullError> {
    let repo = Repo::open(host);
    let Some(commit) = repo.head()? else {
        return Ok(None);
    };
    judge(host, &repo, settings, &commit, wanted, identity).map(Some)
}

/// Makes `candidate` the commit in force: the work tree of /var/lib/pinetboot/config.
pub fn accept(host: &Host, candidate: &Candidate) -> Result<(), SourceError> {
    Repo::open(host).checkout(&candidate.record.commit)
}

/// The commit the last fetch into `slot` brought, if it is not the one in force: a commit
/// refused (or not yet applied), for `doctor` and `status`.
pub fn pending(host: &Host, slot: Slot) -> Result<Option<String>, SourceError> {
    let repo = Repo::open(host);
    let fetched = repo.fetched(slot.name())?;
    Ok(fetched.filter(|f| repo.head().ok().flatten().as_ref() != Some(f)))
}

fn judge(
    host: &Host,
    repo: &Repo,
    settings: &Settings,
    commit: &str,
    wanted: Option<&str>,
    identity: impl FnOnce() -> Identity,
) -> Result<Candidate, PullError> {
    let info = repo.describe(commit)?;
    let mut record = SourceRecord {
        url: settings.url.clone(),
        git_ref: settings.git_ref.clone(),
        path: settings.path.clone(),
        commit: info.id.clone(),
        subject: info.subject.clone(),
        committed: info.time,
        signed_by: None,
    };
    let refuse = |record: &SourceRecord, reason| PullError::Refused {
        commit: Box::new(record.clone()),
        reason,
    };
    if let Some(signers) = settings.allowed_signers_path(host) {
        match repo.verify(commit, &signers) {
            Ok(by) => record.signed_by = Some(by),
            Err(e) if e.is_refusal() => return Err(refuse(&record, Refusal::Signature(e))),
            Err(e) => return Err(e.into()),
        }
    }
    let bytes = match repo.read_file(commit, &settings.path) {
        Ok(b) => b,
        Err(e) if e.is_refusal() => return Err(refuse(&record, Refusal::File(e))),
        Err(e) => return Err(e.into()),
    };
    let name = display_name(&settings.path, record.short());
    let Ok(text) = String::from_utf8(bytes) else {
        let e = ConfigError {
            diagnostics: vec![config::Diagnostic {
                file: name,
                position: Default::default(),
                path: String::new(),
                message: "the file is not UTF-8 text".into(),
                hint: Some("save the config as UTF-8".into()),
            }],
        };
        return Err(refuse(&record, Refusal::Config(e)));
    };
    let fleet: Fleet = match config::load_fleet_str(&name, &text) {
        Ok(f) => f,
        Err(e) => return Err(refuse(&record, Refusal::Config(e))),
    };
    let wanted = wanted.or(settings.server.as_deref());
    let mut valid = match fleet.select(wanted, identity) {
        Ok(v) => v,
        Err(e) => return Err(refuse(&record, Refusal::NotHere(e))),
    };
    valid.origin = Some(record.clone());
    Ok(Candidate { record, valid })
}

/// How a config file at a commit is named in messages: `fleet/pinetboot.yaml@1a2b3c4d5e6f`.
pub fn display_name(path: &str, short: &str) -> PathBuf {
    PathBuf::from(format!("{path}@{short}"))
}
