//! `/etc/pinetboot/source.yaml`: which repository, branch or tag, and file pull mode applies.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{SETTINGS_FILE, SourceError};
use crate::config::locate::Locator;

/// The most pinetboot reads of the settings file: it holds a handful of short lines.
const MAX_SETTINGS_BYTES: usize = 64 << 10;

/// The pull-mode settings: where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The repository: `https://…`, `ssh://…`, scp-like `user@host:path`, or `file:///…`.
    pub url: String,
    /// The branch or tag to follow (YAML key `ref`; default `main`).
    #[serde(rename = "ref", default = "default_ref")]
    pub git_ref: String,
    /// The config file inside the repository (default `pinetboot.yaml`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Which fleet server this host is (default: found from the hostname or addresses).
    #[serde(default)]
    pub server: Option<String>,
    /// A host path to an allowed signers file (git's SSH format); when set, only commits
    /// signed by a key listed there are accepted.
    #[serde(default)]
    pub allowed_signers: Option<PathBuf>,
}

fn default_ref() -> String {
    "main".to_owned()
}

fn default_path() -> String {
    "pinetboot.yaml".to_owned()
}

const URL_HINT: &str = "write https://HOST/PATH, ssh://[USER@]HOST/PATH, scp-like USER@HOST:PATH, or file:///PATH (plain http://, git:// and ext:: are refused: they are unauthenticated or run commands)";
const REF_HINT: &str =
    "give a branch or tag name such as main or v1.2 (refs/heads/NAME and refs/tags/NAME work too)";
const PATH_HINT: &str = "give the config file's path relative to the top of the repository, such as pinetboot.yaml or sites/lab.yaml";
const SIGNERS_HINT: &str = "give an absolute host path such as /etc/pinetboot/allowed_signers";
const SERVER_HINT: &str =
    "give the name of a server in the fleet's `servers:`, or leave `server` out";

impl Settings {
    /// Settings for `url` with the defaults: ref `main`, path `pinetboot.yaml`, no server
    /// named, no signatures required.
    pub fn new(url: impl Into<String>) -> Settings {
        Settings {
            url: url.into(),
            git_ref: default_ref(),
            path: default_path(),
            server: None,
            allowed_signers: None,
        }
    }

    /// The allowed signers file resolved under `host`'s root (`None`: signatures are not
    /// required), as [`crate::source::Repo::verify`] takes it.
    pub fn allowed_signers_path(&self, host: &crate::host::Host) -> Option<PathBuf> {
        self.allowed_signers.as_ref().map(|p| host.path(p))
    }

    /// Reads and checks [`SETTINGS_FILE`] on `host`: `None` when it does not exist. A parse
    /// error or a refused value names the file, line and column, with a hint.
    pub fn load(host: &crate::host::Host) -> Result<Option<Settings>, SourceError> {
        let file = host.path(SETTINGS_FILE);
        let whole = |message: String, hint: &str| SourceError::Settings {
            file: file.clone(),
            line: 0,
            column: 0,
            message,
            hint: hint.to_owned(),
        };
        let bytes = match host.read_max(SETTINGS_FILE, MAX_SETTINGS_BYTES as u64) {
            Ok(None) => return Ok(None),
            Ok(Some(bytes)) => bytes,
            Err(e) => {
                return Err(whole(
                    format!("cannot read the pull-mode settings: {e}"),
                    "the settings file is a short YAML file readable by root: url, and optionally ref, path, server, allowed_signers",
                ));
            }
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| whole("the file is not UTF-8".to_owned(), "save the file as UTF-8"))?;
        let settings = parse(&file, &text)?;
        settings.check().map_err(|e| match e {
            SourceError::Invalid {
                field,
                message,
                hint,
            } => {
                let at = Locator::new(&text).value(field);
                SourceError::Settings {
                    file: file.clone(),
                    line: at.line,
                    column: at.column,
                    message: format!("{field}: {message}"),
                    hint: hint.to_owned(),
                }
            }
            other => other,
        })?;
        Ok(Some(settings))
    }

    /// Checks every value (also for settings made from flags): the URL's form (https, ssh,
    /// scp-like or file://; never http://, git://, a remote helper such as `ext::`, or
    /// anything starting with `-`), the ref (a branch or tag name), the path (relative, inside
    /// the repository) and that `allowed_signers` is absolute.
    pub fn check(&self) -> Result<(), SourceError> {
        let invalid = |field, message: String, hint| SourceError::Invalid {
            field,
            message,
            hint,
        };
        check_url(&self.url).map_err(|m| invalid("url", m, URL_HINT))?;
        check_ref(&self.git_ref).map_err(|m| invalid("ref", m, REF_HINT))?;
        check_path(&self.path).map_err(|m| invalid("path", m, PATH_HINT))?;
        if let Some(server) = &self.server
            && (server.is_empty() || server.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(
                "server",
                format!("`{server}` is not a server name"),
                SERVER_HINT,
            ));
        }
        if let Some(signers) = &self.allowed_signers
            && !signers.is_absolute()
        {
            return Err(invalid(
                "allowed_signers",
                format!("`{}` is not an absolute path", signers.display()),
                SIGNERS_HINT,
            ));
        }
        Ok(())
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_events: 1_000,
            max_aliases: 0,
            max_anchors: 0,
            max_depth: 4,
            max_nodes: 1_000,
            max_total_scalar_bytes: MAX_SETTINGS_BYTES,
            max_documents: 1,
            max_merge_keys: 0,
        },
    }
}

/// Parses the settings file's text; errors carry serde-saphyr's location.
fn parse(file: &Path, text: &str) -> Result<Settings, SourceError> {
    serde_saphyr::from_str_with_options::<Settings>(text, options()).map_err(|err| {
        let (line, column) = err
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        let (message, hint) = describe(&err);
        SourceError::Settings {
            file: file.to_owned(),
            line,
            column,
            message,
            hint: hint.to_owned(),
        }
    })
}

/// serde-saphyr's message without its own location suffix, and a hint.
fn describe(err: &serde_saphyr::Error) -> (String, &'static str) {
    if matches!(err.without_snippet(), serde_saphyr::Error::Eof { .. }) {
        return (
            "the settings file is empty".to_owned(),
            "write at least `url: https://HOST/PATH` (and `ref:`, `path:` if not main and pinetboot.yaml)",
        );
    }
    let text = err.without_snippet().to_string();
    let first = text.lines().next().unwrap_or_default();
    let message = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let lower = message.to_ascii_lowercase();
    let hint = if lower.contains("unknown field") {
        "the settings file knows url, ref, path, server and allowed_signers"
    } else if lower.contains("missing field") {
        "`url` is required: the repository to pull the config from"
    } else if lower.contains("bool") {
        "write true or false (yes/no/on/off are not booleans here)"
    } else {
        "the settings file is a YAML mapping of url, ref, path, server and allowed_signers"
    };
    (message.to_owned(), hint)
}

fn bad_char(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// The URL forms git may fetch from here (see [`Settings::check`]).
fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("the URL is empty".to_owned());
    }
    if url.starts_with('-') {
        return Err(format!(
            "`{url}` starts with `-` (it would be read as an option)"
        ));
    }
    if url.chars().any(bad_char) {
        return Err(format!("`{url}` holds a space or control character"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "https" | "ssh" => check_authority(url, rest),
            "file" if rest.starts_with('/') && rest.len() > 1 => Ok(()),
            "file" => Err(format!(
                "`{url}` is not a local path (write three slashes: file:///PATH)"
            )),
            "http" => Err(format!(
                "`{url}`: plain http is neither encrypted nor authenticated"
            )),
            "git" => Err(format!(
                "`{url}`: the git:// protocol is neither encrypted nor authenticated"
            )),
            other => Err(format!("`{url}`: the `{other}://` scheme is not supported")),
        };
    }
    let before_colon = url.split(':').next().unwrap_or_default();
    if url.contains("::") && !before_colon.contains('/') {
        return Err(format!(
            "`{url}` names a remote helper (such as ext::), which may run commands"
        ));
    }
    match url.split_once(':') {
        Some((host, path)) if !host.contains('/') => {
            let name = host.rsplit_once('@').map_or(host, |(_, h)| h);
            if name.is_empty() || name.starts_with('-') || name.starts_with('[') {
                Err(format!("`{url}`: `{name}` is not a host name"))
            } else if path.is_empty() {
                Err(format!("`{url}` names no repository after the `:`"))
            } else {
                Ok(())
            }
        }
        _ => Err(format!(
            "`{url}` is not a URL (for a local repository write file://{}{url})",
            if url.starts_with('/') { "" } else { "/" }
        )),
    }
}

/// The host part of an https:// or ssh:// URL: present, not an option.
fn check_authority(url: &str, rest: &str) -> Result<(), String> {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with('-') {
        return Err(format!("`{url}` names no host"));
    }
    if rest.len() <= authority.len() + 1 {
        return Err(format!("`{url}` names no repository on the host"));
    }
    Ok(())
}

/// A branch or tag name git accepts, that cannot be read as an option or a refspec.
fn check_ref(r: &str) -> Result<(), String> {
    let problem = if r.is_empty() {
        "the ref is empty"
    } else if r.starts_with(['-', '+']) {
        "it starts with `-` or `+`"
    } else if r.contains("..") {
        "it holds `..`"
    } else if r.chars().any(bad_char) {
        "it holds a space or control character"
    } else if r.contains([':', '~', '^', '?', '*', '[', '\\']) {
        "it holds one of : ~ ^ ? * [ \\"
    } else if r.contains("@{") || r == "@" {
        "it holds `@{` or is `@`"
    } else if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        "it has an empty path component"
    } else if r.ends_with('.') || r.ends_with(".lock") || r.split('/').any(|c| c.starts_with('.')) {
        "a component starts with `.` or it ends with `.` or `.lock`"
    } else {
        return Ok(());
    };
    Err(format!("`{r}` is not a branch or tag name: {problem}"))
}

/// A relative path inside the repository, in its plain form (`a/b.yaml`).
fn check_path(p: &str) -> Result<(), String> {
    let problem = if p.is_empty() {
        "the path is empty"
    } else if p.starts_with('/') {
        "it is absolute"
    } else if p.chars().any(char::is_control) {
        "it holds a control character"
    } else if p.split('/').any(|c| c == "..") {
        "it leaves the repository (`..`)"
    } else if p.split('/').any(|c| c.is_empty() || c == ".") {
        "it has an empty or `.` component"
    } else {
        return Ok(());
    };
    Err(format!(
        "`{p}` is not a path inside the repository: {problem}"
    ))
}
