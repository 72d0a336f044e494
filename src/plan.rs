//! The plan: what observing the desired resources against the host said, folded into changes
//! and conflicts (pure), and its rendering as Terraform-like text (with unified diffs) or as
//! versioned JSON (docs/plan-json.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::expand::{Conflict, Desired, Kept};
use crate::output::{Printer, Style};
use crate::resource::{Action, Change, Handler};
use crate::state::SourceRecord;

/// The JSON format's version; bumped on any incompatible change.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// What `apply` would do.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The `--root` the plan is for.
    pub root: PathBuf,
    /// Pending changes, in apply order.
    pub changes: Vec<Change>,
    /// Clients that will not be touched, and why.
    pub conflicts: Vec<Conflict>,
    /// Client data kept on purpose.
    pub kept: Vec<Kept>,
    /// Things that work but deserve a look (e.g. a cloned identity).
    pub warnings: Vec<String>,
    /// Handlers the changes fire.
    pub handlers: BTreeSet<Handler>,
    /// The fleet server planned for (`servers:`), if the config is a fleet.
    pub server: Option<String>,
    /// The commit whose config is planned (pull mode).
    pub source: Option<SourceRecord>,
    /// The commit the host's last apply applied (from the state), if any.
    pub applied: Option<SourceRecord>,
    /// What `pinetboot gc` may delete: not a change apply makes.
    pub removable: Vec<crate::gc::Removable>,
}

/// Counts of a plan, as Terraform prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Creates.
    pub add: usize,
    /// Updates.
    pub change: usize,
    /// Removals.
    pub remove: usize,
}

impl Plan {
    /// Whether nothing would change (conflicts are not changes).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The counts.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Remove => s.remove += 1,
            }
        }
        s
    }
}

/// What observing one desired resource against the host said: the change it needs (`None`
/// when the host matches), or why it could not be observed. `None` for a resource that was
/// not observed: its client was in conflict already.
pub type Observed = Option<anyhow::Result<Option<Change>>>;

/// The plan, from the desired resources and what observing each said (in the same order;
/// see `engine::observe`). Pure. A client whose observation hit a violation in its tree
/// becomes a conflict and its other changes are dropped; other errors abort.
pub fn plan(desired: &Desired, observed: Vec<Observed>, root: &Path) -> anyhow::Result<Plan> {
    let mut conflicts = desired.conflicts.clone();
    let mut changes = Vec::new();
    for (r, seen) in desired.resources.iter().zip(observed) {
        match seen {
            None | Some(Ok(None)) => {}
            Some(Ok(Some(c))) => changes.push(c),
            Some(Err(e)) => match r.client().and_then(|client| {
                Conflict::of_violation(client, &e, |_| {
                    "inspect that path in the client root and fix or remove it (pinetboot never follows or overwrites it), then apply again".into()
                })
            }) {
                Some(conflict) => conflicts.push(conflict),
                None => return Err(e),
            },
        }
    }
    changes.retain(|c| {
        !c.client
            .as_ref()
            .is_some_and(|n| conflicts.iter().any(|k| &k.client == n))
    });
    let handlers = changes.iter().filter_map(|c| c.handler).collect();
    Ok(Plan {
        root: root.to_owned(),
        changes,
        conflicts,
        kept: desired.kept.clone(),
        warnings: desired.warnings.clone(),
        handlers,
        server: desired.state.server.clone(),
        source: desired.state.source.clone(),
        applied: desired.previous.source.clone(),
        removable: desired.removable.clone(),
    })
}

/// The lines that say which server and which commit a plan or an apply is for (none for a
/// single-server config from a file with no commit applied before).
pub fn origin_lines(
    server: Option<&str>,
    source: Option<&SourceRecord>,
    applied: Option<&SourceRecord>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = server {
        out.push(format!("Server: {s}"));
    }
    match (source, applied) {
        (Some(s), Some(a)) if s.commit == a.commit => {
            out.push(format!("Config: {} (applied last)", s.describe()));
        }
        (source, applied) => {
            if let Some(s) = source {
                out.push(format!("Config: {}", s.describe()));
            }
            if let Some(a) = applied {
                out.push(format!("Applied last: {}", a.describe()));
            }
        }
    }
    if !out.is_empty() {
        out.push(String::new());
    }
    out
}

fn symbol(a: Action) -> (&'static str, Style) {
    match a {
        Action::Create => ("+", Style::Add),
        Action::Update => ("~", Style::Change),
        Action::Remove => ("-", Style::Remove),
    }
}

/// Renders the plan as text.
pub fn render_text(plan: &Plan, p: &Printer) -> String {
    let mut out = String::new();
    for line in origin_lines(
        plan.server.as_deref(),
        plan.source.as_ref(),
        plan.applied.as_ref(),
    ) {
        out.push_str(&line);
        out.push('\n');
    }
    if plan.changes.is_empty() && plan.conflicts.is_empty() {
        out.push_str("No changes. The host matches the configuration.\n");
    } else if !plan.changes.is_empty() {
        out.push_str("pinetboot will make these changes:\n\n");
    }
    for c in &plan.changes {
        let (sym, style) = symbol(c.action);
        let mut line = format!(
            "  {} {} {}",
            p.paint(style, sym),
            c.kind,
            p.paint(Style::Bold, &c.path)
        );
        if let Some(d) = &c.detail {
            line.push_str(&format!(" ({d})"));
        }
        out.push_str(&line);
        out.push('\n');
        if let Some(diff) = &c.diff {
            for l in diff.lines() {
                let painted = match l.chars().next() {
                    Some('+') if !l.starts_with("+++") => p.paint(Style::Add, l),
                    Some('-') if !l.starts_with("---") => p.paint(Style::Remove, l),
                    Some('@') => p.paint(Style::Dim, l),
                    _ => l.to_owned(),
                };
                out.push_str(&format!("      {painted}\n"));
            }
        }
    }
    if !plan.conflicts.is_empty() {
        out.push_str(&format!(
            "\n{}\n",
            p.paint(Style::Warn, "Conflicts (these clients are left untouched):")
        ));
        for c in &plan.conflicts {
            out.push_str(&format!(
                "  ! client {}: {}\n      hint: {}\n",
                c.client, c.message, c.hint
            ));
        }
    }
    if !plan.warnings.is_empty() {
        out.push_str(&format!("\n{}\n", p.paint(Style::Warn, "Warnings:")));
        for w in &plan.warnings {
            out.push_str(&format!("  ! {w}\n"));
        }
    }
    if !plan.kept.is_empty() {
        out.push_str("\nKept:\n");
        for k in &plan.kept {
            out.push_str(&format!(
                "  client root {} of {}: {}\n",
                k.path, k.client, k.note
            ));
        }
    }
    if !plan.removable.is_empty() {
        out.push_str("\nRemovable (apply keeps them; `pinetboot gc --yes` deletes them):\n");
        for r in &plan.removable {
            out.push_str(&format!("  {}\n", r.describe()));
        }
    }
    if !plan.handlers.is_empty() {
        out.push_str("\nHandlers:\n");
        for h in &plan.handlers {
            out.push_str(&format!("  {}\n", h.describe()));
        }
    }
    if !plan.changes.is_empty() {
        let s = plan.summary();
        out.push_str(&format!(
            "\nPlan: {} to add, {} to change, {} to remove.\n",
            s.add, s.change, s.remove
        ));
    }
    out
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: u32,
    root: &'a Path,
    summary: Summary,
    changes: &'a [Change],
    conflicts: &'a [Conflict],
    kept: &'a [Kept],
    warnings: &'a [String],
    handlers: Vec<&'a Handler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a SourceRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a SourceRecord>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    removable: &'a [crate::gc::Removable],
}

/// Renders the plan as JSON (format documented in docs/plan-json.md).
pub fn render_json(plan: &Plan) -> String {
    let j = JsonPlan {
        format_version: JSON_FORMAT_VERSION,
        root: &plan.root,
        summary: plan.summary(),
        changes: &plan.changes,
        conflicts: &plan.conflicts,
        kept: &plan.kept,
        warnings: &plan.warnings,
        handlers: plan.handlers.iter().collect(),
        server: plan.server.as_deref(),
        source: plan.source.as_ref(),
        applied: plan.applied.as_ref(),
        removable: &plan.removable,
    };
    serde_json::to_string_pretty(&j).expect("plans serialise") + "\n"
}

/// The plan, folded from observations made in memory.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::confined::Violation;
    use crate::resource::client_file::{ClientFile, Want};
    use crate::resource::{ChangeKind, Resource};

    fn file(client: &str, rel: &str) -> Resource {
        Resource::ClientFile(ClientFile {
            client: client.into(),
            root: format!("/nfs/{client}"),
            rel: rel.into(),
            want: Want::Dir,
            owner: crate::host::atomic::Owner::mode(0o755),
            enforce: false,
        })
    }

    fn change(client: &str, path: &str) -> Change {
        Change {
            action: Action::Create,
            kind: ChangeKind::Directory,
            path: path.into(),
            client: Some(client.into()),
            detail: None,
            diff: None,
            handler: None,
            bytes: None,
        }
    }

    fn desired(resources: Vec<Resource>) -> Desired {
        Desired {
            resources,
            conflicts: vec![],
            kept: vec![],
            warnings: vec![],
            refused: vec![],
            clients: Default::default(),
            state: Default::default(),
            previous: Default::default(),
            removable: vec![],
        }
    }

    #[test]
    fn a_violation_makes_its_client_a_conflict_and_drops_its_changes() {
        let d = desired(vec![file("a", "x"), file("a", "y"), file("b", "x")]);
        let refused = anyhow::Error::new(Violation::Symlink("/nfs/a/y".into())).context("checking");
        let p = plan(
            &d,
            vec![
                Some(Ok(Some(change("a", "/nfs/a/x")))),
                Some(Err(refused)),
                Some(Ok(Some(change("b", "/nfs/b/x")))),
            ],
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].path, "/nfs/b/x");
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!(
            p.conflicts[0].message,
            "checking: /nfs/a/y is or passes through a symlink"
        );
        assert!(
            p.conflicts[0]
                .hint
                .starts_with("inspect that path in the client root")
        );
        assert_eq!(
            p.summary(),
            Summary {
                add: 1,
                change: 0,
                remove: 0
            }
        );
    }

    #[test]
    fn a_broken_fence_gives_its_own_hint_and_other_errors_abort() {
        let d = desired(vec![file("a", "etc/hosts")]);
        let broken = crate::render::fence::Broken::Unterminated { line: 2 };
        let hint = broken.hint();
        let e = anyhow::Error::new(Violation::Fence("/nfs/a/etc/hosts".into(), broken));
        let p = plan(&d, vec![Some(Err(e))], Path::new("/")).unwrap();
        assert_eq!(p.conflicts[0].hint, hint);
        let e = anyhow::anyhow!("reading /etc/exports: permission denied");
        assert!(plan(&d, vec![Some(Err(e))], Path::new("/")).is_err());
        // Not observed (its client was in conflict already): nothing.
        assert!(plan(&d, vec![None], Path::new("/")).unwrap().is_empty());
    }
}
