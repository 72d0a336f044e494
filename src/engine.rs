//! The shell around the functional core: observe the host, plan, and apply (lock, ordered
//! execution, handlers, state, and a final observation that must find nothing left to do).

use std::collections::{BTreeSet, HashSet};

use anyhow::Context as _;

use crate::config::Valid;
use crate::expand::{Conflict, Desired, expand};
use crate::handlers::{self, Outcome};
use crate::host::Host;
use crate::host::lock::{self, Mode};
use crate::plan::{Plan, plan};
use crate::resource::{Change, ChangeKind, Ctx, Handler, as_violation};

/// Host path of the lock file.
pub const LOCK_PATH: &str = "/run/pinetboot.lock";

/// Observes the host (its facts, read once) and computes the plan.
pub fn observe_and_plan(valid: &Valid, host: &Host) -> anyhow::Result<(Desired, Ctx, Plan)> {
    let facts = crate::facts::collect(valid, host)?;
    let desired = expand(valid, &facts)?;
    let ctx = Ctx {
        host: host.clone(),
        mounts: facts.mounts,
        clients: desired.clients.clone(),
        scratch: host.path(crate::host::scratch::host_path(&valid.paths.state)),
        views: Default::default(),
    };
    let observed = ctx.observing(|| observe(&desired, &ctx));
    let p = plan(&desired, observed, host.root())?;
    Ok((desired, ctx, p))
}

/// Observes each desired resource against the host (see [`crate::plan::Observed`]). A
/// client's tree is not looked at again once it is in conflict: declared so by expansion, or
/// one of its resources was refused (a violation).
pub fn observe(desired: &Desired, ctx: &Ctx) -> Vec<crate::plan::Observed> {
    let mut refused: HashSet<&str> = desired
        .conflicts
        .iter()
        .map(|c| c.client.as_str())
        .collect();
    desired
        .resources
        .iter()
        .map(|r| {
            let client = r.client();
            if client.is_some_and(|c| refused.contains(c)) {
                return None;
            }
            let seen = r.check(ctx);
            if let (Some(c), Err(e)) = (client, &seen)
                && as_violation(e).is_some()
            {
                refused.insert(c);
            }
            Some(seen)
        })
        .collect()
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another apply holds it and waiting was not asked for.
    #[error("another pinetboot apply is running")]
    Busy,
    /// The lock file could not be made or locked.
    #[error("taking the lock {}", path.display())]
    Io {
        /// The lock file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Takes the lock for a plan (shared) or an apply (exclusive). When another process holds it
/// and `wait` is true, calls `on_wait` with the lock's path once, then blocks.
pub fn lock(
    host: &Host,
    mode: Mode,
    wait: bool,
    on_wait: impl FnOnce(&std::path::Path),
) -> Result<lock::Lock, LockError> {
    let path = host.path(LOCK_PATH);
    lock::acquire(&path, mode, wait, || on_wait(&path)).map_err(|source| {
        if source.kind() == std::io::ErrorKind::WouldBlock {
            LockError::Busy
        } else {
            LockError::Io { path, source }
        }
    })
}

/// What an apply did.
#[derive(Debug, Default)]
pub struct Report {
    /// Changes made.
    pub applied: Vec<Change>,
    /// Handlers and their outcomes.
    pub handlers: Vec<(Handler, Outcome)>,
    /// The plan's conflicts (clients left untouched).
    pub conflicts: Vec<crate::expand::Conflict>,
    /// Client data kept.
    pub kept: Vec<crate::expand::Kept>,
    /// Leftovers of killed applies not removed, and why (a mount inside).
    pub refused: Vec<String>,
}

/// What applying the disk images did.
struct ImagesDone {
    applied: Vec<Change>,
    /// One per client of an image that could not be fetched or unpacked.
    conflicts: Vec<crate::expand::Conflict>,
    /// Names of those images.
    failed: HashSet<String>,
}

/// Fetches and unpacks every image not in the store yet. A failure makes the image's clients
/// conflicts (nothing of the image is kept but a partial download); other clients go on.
fn apply_images(desired: &Desired, ctx: &Ctx, on_change: &mut impl FnMut(&Change)) -> ImagesDone {
    let mut done = ImagesDone {
        applied: Vec::new(),
        conflicts: Vec::new(),
        failed: HashSet::new(),
    };
    for r in &desired.resources {
        let crate::resource::Resource::Image(image) = r else {
            continue;
        };
        let result = r.check(ctx).and_then(|change| match change {
            Some(change) => r.apply(ctx).map(|()| Some(change)),
            None => Ok(None),
        });
        match result {
            Ok(Some(change)) => {
                on_change(&change);
                done.applied.push(change);
                if crate::host::atomic::crash_point("after-change") {
                    std::process::abort();
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(image = %image.name, "{e:#}");
                done.failed.insert(image.name.clone());
                for client in &image.clients {
                    done.conflicts.push(crate::expand::Conflict {
                        client: client.clone(),
                        message: format!("{e:#}"),
                        hint: "check the image's source and sha256 in the config; nothing of the image was kept (a partial download is resumed by the next apply)".into(),
                    });
                }
            }
        }
    }
    done
}

/// Removes the leftovers of killed applies (staging folders, unused downloads). The caller
/// holds the exclusive lock, so none belongs to a running apply. An error stops the apply
/// before anything else changed.
fn apply_leftovers(
    desired: &Desired,
    ctx: &Ctx,
    on_change: &mut impl FnMut(&Change),
) -> anyhow::Result<Vec<Change>> {
    for why in &desired.refused {
        tracing::warn!("{why}");
    }
    let mut applied = Vec::new();
    for r in &desired.resources {
        if !matches!(r, crate::resource::Resource::Leftover(_)) {
            continue;
        }
        if let Some(change) = r.check(ctx)? {
            r.apply(ctx)?;
            on_change(&change);
            applied.push(change);
        }
    }
    Ok(applied)
}

/// Apply's final observation still found changes (a pinetboot bug, or the host changed
/// during apply).
#[derive(Debug, thiserror::Error)]
#[error("apply did not converge: still pending after applying: {}", pending.join(", "))]
pub struct NotConverged {
    /// `KIND PATH` of each change still pending.
    pub pending: Vec<String>,
}

/// Applies the config to the host (the caller holds the exclusive lock).
pub fn apply(
    valid: &Valid,
    host: &Host,
    mut on_change: impl FnMut(&Change),
) -> anyhow::Result<Report> {
    // Scratch folders of tool checks a killed apply left: ours to remove, under the lock.
    crate::host::scratch::prepare(host, &valid.paths.state)?;
    let (desired, ctx, first) = observe_and_plan(valid, host)?;
    // What killed applies left, first: it can be tens of gigabytes the images need.
    let leftovers = apply_leftovers(&desired, &ctx, &mut on_change)?;
    // Disk images next: client roots are cloned from the image store, and what goes inside
    // a root can only be planned once its image is unpacked. So: fetch and unpack every
    // pending image, then observe and plan again, and apply the rest of that plan.
    let images = apply_images(&desired, &ctx, &mut on_change);
    let (desired, ctx, first) = if images.applied.is_empty() {
        (desired, ctx, first)
    } else {
        observe_and_plan(valid, host)?
    };
    let mut conflicted: HashSet<String> = first
        .conflicts
        .iter()
        .chain(&images.conflicts)
        .map(|c| c.client.clone())
        .collect();
    let mut report = Report {
        kept: first.kept.clone(),
        refused: desired.refused.clone(),
        applied: leftovers.into_iter().chain(images.applied).collect(),
        ..Report::default()
    };
    // Record ownership of everything we may create before creating it (crash safety).
    let old = desired.previous.clone();
    let mut union = old.clone();
    for (k, v) in &desired.state.clients {
        union.clients.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if union != old {
        union.save(host, &valid.paths.state)?;
    }
    let mut fired: BTreeSet<Handler> = BTreeSet::new();
    let mut conflicts = first.conflicts;
    conflicts.extend(images.conflicts);
    for r in &desired.resources {
        if r.client().is_some_and(|c| conflicted.contains(c))
            || matches!(r, crate::resource::Resource::Image(_))
        {
            continue;
        }
        // Re-check now: an earlier step (a new root) may have changed what is there.
        let result = r.check(&ctx).and_then(|change| {
            if let Some(change) = change {
                crate::validate_tools::before_apply(r, host, &ctx.scratch)?;
                let mut change = change;
                if let Some(note) = r.apply_noted(&ctx)? {
                    change.detail = Some(note);
                }
                Ok(Some(change))
            } else {
                Ok(None)
            }
        });
        match result {
            Ok(Some(change)) => {
                on_change(&change);
                if let Some(h) = change.handler {
                    fired.insert(h);
                }
                report.applied.push(change);
                if crate::host::atomic::crash_point("after-change") {
                    std::process::abort();
                }
            }
            Ok(None) => {}
            Err(e) => match r.client().and_then(|client| {
                Conflict::of_violation(client, &e, |_| {
                    "the client root changed under pinetboot (a symlink or special file appeared); inspect it, then apply again".into()
                })
            }) {
                Some(conflict) => {
                    conflicted.insert(conflict.client.clone());
                    conflicts.push(conflict);
                }
                None => return Err(e),
            },
        }
    }
    for h in fired {
        let outcome =
            handlers::run(host, h).with_context(|| format!("handler {}", h.describe()))?;
        report.handlers.push((h, outcome));
    }
    let mut state = desired.state;
    for name in &conflicted {
        match old.clients.get(name) {
            Some(rec) => {
                state.clients.insert(name.clone(), rec.clone());
            }
            None => {
                state.clients.remove(name);
            }
        }
    }
    if state != union {
        state.save(host, &valid.paths.state)?;
    }
    report.conflicts = conflicts;
    // Observe again: everything but the conflicted clients must now match.
    let (_, _, after) = observe_and_plan(valid, host)?;
    let left: Vec<&Change> = after
        .changes
        .iter()
        .filter(|c| !c.client.as_ref().is_some_and(|n| conflicted.contains(n)))
        .filter(|c| !(c.kind == ChangeKind::Image && images.failed.contains(&c.path)))
        .collect();
    if !left.is_empty() {
        let pending = left
            .iter()
            .map(|c| format!("{} {}", c.kind, c.path))
            .collect();
        return Err(NotConverged { pending }.into());
    }
    Ok(report)
}
