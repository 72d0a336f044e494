//! Expansion: the validated config plus what the host's facts say (client trees: boot folder,
//! the image's own cmdline.txt, users; the state; the image store) becomes the ordered list of
//! desired resources. A client whose tree cannot be read safely becomes a conflict instead;
//! the others still expand. Pure: everything it looks at was read by [`crate::facts`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::config::model::RootMode;
use crate::config::{Source, Valid, ValidClient};
use crate::facts::{Facts, TreeFacts};
use crate::host::atomic::Owner;
use crate::host::confined::{EntryKind, Violation};
use crate::host::ops::Found;
use crate::image::store::{self, Origin};
use crate::pios;
use crate::render;
use crate::resource::bind::{Bind, BindGuard, Unbind};
use crate::resource::client_file::{ClientFile, Want};
use crate::resource::client_root::ClientRoot;
use crate::resource::dir::{Dir, RemoveDir};
use crate::resource::fstab::FstabBlock;
use crate::resource::host_file::HostFile;
use crate::resource::known_hosts::KnownHosts;
use crate::resource::{ClientPaths, Handler, Resource, as_violation};
use crate::state::{ClientRecord, State};

/// A client pinetboot cannot change safely right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The client.
    pub client: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl Conflict {
    /// The conflict an error makes of `client` when it is a violation inside a client's tree
    /// (`None` for any other error): the error's whole chain, and the violation's own hint
    /// (a broken fence) or else `hint`'s.
    pub fn of_violation(
        client: &str,
        e: &anyhow::Error,
        hint: impl FnOnce(&Violation) -> String,
    ) -> Option<Conflict> {
        let v = as_violation(e)?;
        Some(Conflict {
            client: client.to_owned(),
            message: format!("{e:#}"),
            hint: v.hint().unwrap_or_else(|| hint(v)),
        })
    }
}

/// Something pinetboot keeps on purpose and says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    /// The client.
    pub client: String,
    /// Host path kept.
    pub path: String,
    /// Why, and how to remove it.
    pub note: String,
}

/// Everything the config asks of the host.
#[derive(Debug)]
pub struct Desired {
    /// In apply order.
    pub resources: Vec<Resource>,
    /// Clients that cannot be expanded safely.
    pub conflicts: Vec<Conflict>,
    /// Client data kept on purpose.
    pub kept: Vec<Kept>,
    /// Things that work but deserve a look.
    pub warnings: Vec<String>,
    /// Leftovers of killed applies that are not removed (a mount inside), and why; also in
    /// `warnings`.
    pub refused: Vec<String>,
    /// Where each client's files are.
    pub clients: HashMap<String, ClientPaths>,
    /// The state to record after a successful apply.
    pub state: State,
    /// The state as it was read (what pinetboot owned before).
    pub previous: State,
    /// What `pinetboot gc` may delete (never changed by apply).
    pub removable: Vec<crate::gc::Removable>,
}

/// The host path of a client's root.
pub fn root_of(valid: &Valid, name: &str) -> String {
    format!("{}/{name}", valid.paths.nfs.trim_end_matches('/'))
}

fn tftp_of(valid: &Valid, folder: &str) -> String {
    format!("{}/{folder}", valid.paths.tftp.trim_end_matches('/'))
}

/// The TFTP folders (host paths) a client's boot folder is served in besides its serial
/// folder (where a bootloader with the factory `TFTP_PREFIX` asks, and fetches the update
/// that sets another prefix): the folder its `eeprom.tftp_prefix` names (its MAC, or a
/// string's folder), and the prefix folders it was served in before while its serial is the
/// same, as its Pi may still run with such a prefix (a bootloader learns a new one only
/// from the update it fetches in the old folder). A folder another client is declared with
/// is that client's.
fn tftp_folders(
    valid: &Valid,
    name: &str,
    client: &ValidClient,
    old: &State,
    claimed: &HashMap<String, &str>,
) -> Vec<String> {
    let serial = tftp_of(valid, &client.serial);
    let mut out: Vec<String> = client
        .tftp_prefix_folder()
        .map(|f| tftp_of(valid, &f))
        .into_iter()
        .collect();
    if let Some(rec) = old.clients.get(name).filter(|r| r.serial == client.serial) {
        for f in &rec.prefix_folders {
            let free = claimed.get(f).is_none_or(|owner| *owner == name);
            if free && *f != serial && !out.contains(f) {
                out.push(f.clone());
            }
        }
    }
    out
}

/// Expands `valid` against the host's facts.
pub fn expand(valid: &Valid, facts: &Facts) -> anyhow::Result<Desired> {
    let old = &facts.state;
    let mut out = Desired {
        resources: vec![
            // Client roots hold what their Pis planted (setuid-root files, device nodes, the
            // Pi's secrets): no local user of the server may enter. The NFS server is not
            // hindered: the export's path is resolved by root, and nfsd checks permissions
            // from the export's root down, never above it.
            Resource::Dir(Dir {
                path: valid.paths.nfs.clone(),
                mode: 0o700,
                enforce_mode: true,
                client: None,
            }),
            Resource::Dir(Dir {
                path: valid.paths.tftp.clone(),
                mode: 0o755,
                enforce_mode: true,
                client: None,
            }),
            // The folder of dnsmasq's log (`log-facility`): dnsmasq creates the file, not folders.
            Resource::Dir(Dir {
                path: Path::new(&valid.paths.dnsmasq_log)
                    .parent()
                    .map_or_else(|| "/".to_owned(), |p| p.to_string_lossy().into_owned()),
                mode: 0o755,
                enforce_mode: false,
                client: None,
            }),
        ],
        conflicts: Vec::new(),
        kept: Vec::new(),
        warnings: Vec::new(),
        refused: Vec::new(),
        clients: HashMap::new(),
        state: State {
            version: crate::state::VERSION,
            clients: BTreeMap::new(),
            server: valid.server.clone(),
            source: valid.origin.clone(),
            shared: BTreeMap::new(),
        },
        previous: old.clone(),
        removable: facts.removable.clone(),
    };
    let mut binds = Vec::new();
    let mut served = Vec::new();
    // The folders each declared client is declared with (serial, prefix): theirs alone.
    let mut claimed: HashMap<String, &str> = HashMap::new();
    for (name, client) in &valid.clients {
        let prefix = client.tftp_prefix_folder();
        for f in std::iter::once(&client.serial).chain(prefix.as_ref()) {
            claimed.entry(tftp_of(valid, f)).or_insert(name);
        }
    }
    let images = disk_images(valid);
    // What killed applies left (staging folders, unused downloads): removed first.
    let found = facts.leftovers.clone();
    out.warnings.extend(found.refused.iter().cloned());
    out.refused = found.refused;
    out.resources
        .splice(0..0, found.leftovers.into_iter().map(Resource::Leftover));
    out.resources.extend(images);
    for (name, client) in &valid.clients {
        if client.root == RootMode::Shared {
            continue;
        }
        let root = root_of(valid, name);
        let image = valid.images.get(&client.image).context("validated image")?;
        let image_dir = match &image.source {
            Source::Directory(p) => Some(p.to_string_lossy().into_owned()),
            _ => match disk_image_dir(valid, facts, name, client, image, &root, &mut out) {
                Some(dir) => dir,
                // Pending: provisioned once the image is in the store (see `disk_image_dir`).
                None => continue,
            },
        };
        out.clients.insert(
            name.clone(),
            ClientPaths {
                root: root.clone(),
                image_dir: image_dir.clone(),
            },
        );
        let root_exists = facts.root(&root) != Found::Missing;
        let recorded_boot = old
            .clients
            .get(name)
            .filter(|r| !r.shared)
            .and_then(|r| r.boot_dir.clone());
        match expand_client(
            valid,
            facts,
            name,
            client,
            &root,
            image_dir.as_deref(),
            recorded_boot,
        ) {
            Ok(client_out) => {
                out.resources.extend(client_out.resources);
                for w in client_out.warnings {
                    // Image warnings come once per image, not once per client.
                    if !out.warnings.contains(&w) {
                        out.warnings.push(w);
                    }
                }
                let tftp = tftp_of(valid, &client.serial);
                let prefix_folders = tftp_folders(valid, name, client, old, &claimed);
                serve(
                    &mut out.resources,
                    &mut binds,
                    name,
                    &root,
                    &client_out.boot_dir,
                    std::iter::once(&tftp).chain(&prefix_folders),
                );
                out.state.clients.insert(
                    name.clone(),
                    ClientRecord {
                        serial: client.serial.clone(),
                        root: root.clone(),
                        tftp,
                        prefix_folders,
                        boot_dir: Some(crate::resource::rel_str(&client_out.boot_dir)),
                        image_sha256: provisioned_sha(old, name, image, root_exists),
                        shared: false,
                    },
                );
                served.push(name.clone());
            }
            Err(e) => {
                let root_full = facts.root_path(&root);
                let conflict = Conflict::of_violation(name, &e, |v| {
                    if v.path().is_some_and(|p| p.starts_with(&root_full)) {
                        format!(
                            "something inside {root} is not what a Raspberry Pi OS root holds (a planted symlink or special file?); inspect it, fix or remove it, then apply again"
                        )
                    } else {
                        format!(
                            "the image {} ({}) holds something pinetboot will not read; inspect the image, or choose another",
                            client.image,
                            image_dir.as_deref().unwrap_or("its store entry")
                        )
                    }
                });
                out.conflicts.push(conflict.unwrap_or_else(|| Conflict {
                    client: name.clone(),
                    message: format!("{e:#}"),
                    hint: "fix the cause above, then apply again".to_owned(),
                }));
                // Keep serving what already works: its record and mount stay as they are.
                if let Some(rec) = old.clients.get(name) {
                    out.state.clients.insert(name.clone(), rec.clone());
                }
                if root_exists {
                    served.push(name.clone());
                }
            }
        }
    }
    let shared_exports = expand_shared(valid, facts, &claimed, &mut out, &mut binds)?;
    let exports = render::exports::render_for(valid, &served, &shared_exports);
    out.resources.push(Resource::HostFile(HostFile {
        path: valid.paths.exports.clone(),
        content: exports,
        handler: Some(Handler::ReloadExports),
    }));
    out.resources.push(Resource::HostFile(HostFile {
        path: valid.paths.dnsmasq_conf.clone(),
        content: render::dnsmasq::render(valid),
        handler: Some(Handler::RestartDnsmasq),
    }));
    // Earlier versions recorded the bind mounts as fstab lines; mount(8) resolves those paths
    // inside untrusted roots at boot. The block goes; `pinetboot mount` (pinetboot-mount.service)
    // makes the mounts at boot by descriptor instead.
    out.resources.push(Resource::Fstab(FstabBlock {
        path: valid.paths.fstab.clone(),
    }));
    // A served mount whose boot folder stopped being a real folder goes, conflict or not.
    for (name, rec) in &out.state.clients {
        if let Some(boot) = &rec.boot_dir {
            for target in rec.folders() {
                out.resources.push(Resource::BindGuard(BindGuard {
                    client: name.clone(),
                    root: rec.root.clone(),
                    boot_dir: PathBuf::from(boot),
                    target: target.clone(),
                }));
            }
        }
    }
    out.resources.extend(binds);
    // The public halves of the clients' SSH host keys, after the keys are made.
    out.resources.push(Resource::KnownHosts(KnownHosts {
        path: format!("{}/known_hosts", valid.paths.state.trim_end_matches('/')),
        clients: valid
            .clients
            .iter()
            // A shared client makes new host keys at every boot: none to pin.
            .filter(|(name, c)| out.clients.contains_key(*name) && c.root == RootMode::Own)
            .map(|(name, c)| {
                let mut names = vec![c.hostname.clone()];
                names.extend(c.address.map(|a| a.to_string()));
                (name.clone(), names)
            })
            .collect(),
    }));
    // Prune what was ours and is no longer declared (or moved to another serial or prefix).
    let wanted: std::collections::HashSet<&String> = out
        .state
        .clients
        .values()
        .flat_map(|r| r.folders())
        .collect();
    let mut prune = Vec::new();
    for (name, rec) in &old.clients {
        for target in rec.folders().filter(|t| !wanted.contains(t)) {
            prune.push(Resource::Unbind(Unbind {
                client: name.clone(),
                target: target.clone(),
            }));
            prune.push(Resource::RemoveDir(RemoveDir {
                path: target.clone(),
                client: name.clone(),
            }));
        }
        if !rec.shared
            && !valid.clients.contains_key(name)
            && facts.root(&rec.root) != Found::Missing
        {
            out.kept.push(Kept {
                client: name.clone(),
                path: rec.root.clone(),
                note: format!(
                    "client data is never deleted implicitly; to delete it: pinetboot purge {name} --yes"
                ),
            });
        }
    }
    out.resources.extend(prune);
    Ok(out)
}

/// A client's TFTP folders (made, their mode left to the mount) and the bind mounts of its
/// boot folder (`boot_dir` inside `root`) onto them.
fn serve<'a>(
    resources: &mut Vec<Resource>,
    binds: &mut Vec<Resource>,
    name: &str,
    root: &str,
    boot_dir: &Path,
    targets: impl Iterator<Item = &'a String>,
) {
    for target in targets {
        resources.push(Resource::Dir(Dir {
            path: target.clone(),
            mode: 0o755,
            // Once mounted, its mode is the client's boot folder's: not ours to change.
            enforce_mode: false,
            client: Some(name.to_owned()),
        }));
        binds.push(Resource::Bind(Bind {
            client: name.to_owned(),
            root: root.to_owned(),
            boot_dir: boot_dir.to_owned(),
            target: target.clone(),
        }));
    }
}

/// Host path of the base folder of image `name`'s shared root: `<nfs>/.shared/NAME-ID`, where
/// ID is the image's sha256 (12 digits), or `tree` for a directory image. A new image version
/// gets a new shared root; the old one stays until `pinetboot gc`.
pub fn shared_base(valid: &Valid, name: &str) -> String {
    let id = valid
        .images
        .get(name)
        .and_then(|i| i.sha256.as_deref())
        .map_or_else(|| "tree".to_owned(), |s| s[..12].to_owned());
    format!(
        "{}/.shared/{name}-{id}",
        valid.paths.nfs.trim_end_matches('/')
    )
}

/// The label the resources of image `name`'s shared root carry as their "client".
fn shared_label(name: &str) -> String {
    format!("shared:{name}")
}

/// Shared clients (`root: shared`): per image, one shared root (a copy of the image with the
/// image-wide settings and the RAM-overlay init, exported read-only), and per client its own
/// boot folder of links with its own cmdline.txt, bind-mounted onto its TFTP folders. Returns
/// the shared roots' exports.
fn expand_shared(
    valid: &Valid,
    facts: &Facts,
    claimed: &HashMap<String, &str>,
    out: &mut Desired,
    binds: &mut Vec<Resource>,
) -> anyhow::Result<Vec<render::exports::SharedExport>> {
    let old = &facts.state;
    let mut by_image: BTreeMap<&str, Vec<(&String, &ValidClient)>> = BTreeMap::new();
    for (name, client) in &valid.clients {
        if client.root == RootMode::Shared {
            by_image
                .entry(&client.image)
                .or_default()
                .push((name, client));
        }
    }
    let mut exports = Vec::new();
    let nfs = valid.paths.nfs.trim_end_matches('/');
    for (image_name, clients) in by_image {
        let image = valid.images.get(image_name).context("validated image")?;
        let base = shared_base(valid, image_name);
        let tree = format!("{base}/root");
        let label = shared_label(image_name);
        for dir in [
            format!("{nfs}/.shared"),
            base.clone(),
            format!("{base}/boot"),
        ] {
            out.resources.push(Resource::Dir(Dir {
                path: dir,
                mode: 0o755,
                enforce_mode: false,
                client: None,
            }));
        }
        let tree_found = facts.root(&tree);
        let image_dir = match &image.source {
            Source::Directory(p) => Some(p.to_string_lossy().into_owned()),
            _ => {
                let sha = image.sha256.as_deref().context("validated digest")?;
                let store_root = store::root_dir(&valid.paths.state, sha);
                if facts.in_store(sha) {
                    Some(store_root)
                } else if tree_found != Found::Missing {
                    None
                } else {
                    // Provisioned once the image is in the store (`engine::apply` plans again).
                    out.clients.insert(
                        label.clone(),
                        ClientPaths {
                            root: tree.clone(),
                            image_dir: Some(store_root.clone()),
                        },
                    );
                    out.resources.push(Resource::ClientRoot(ClientRoot {
                        client: label.clone(),
                        path: tree.clone(),
                        image: image_name.to_owned(),
                        source: store_root,
                        pending: true,
                    }));
                    continue;
                }
            }
        };
        out.clients.insert(
            label.clone(),
            ClientPaths {
                root: tree.clone(),
                image_dir: image_dir.clone(),
            },
        );
        // The shared root itself: one client's settings stand for all (validation made them
        // agree), without an identity of its own.
        let (_, first) = clients[0];
        let recorded_boot = old.shared.get(&base).map(|r| r.boot_dir.clone());
        let tree_out = expand_client(
            valid,
            facts,
            &label,
            first,
            &tree,
            image_dir.as_deref(),
            recorded_boot,
        );
        let tree_out = match tree_out {
            Ok(t) => t,
            Err(e) => {
                // Every client of the image is left as it is, with the reason.
                for (name, _) in &clients {
                    out.conflicts.push(Conflict {
                        client: (*name).clone(),
                        message: format!("its shared root {tree}: {e:#}"),
                        hint: "fix the image (or the shared root), then apply again".into(),
                    });
                    if let Some(rec) = old.clients.get(*name) {
                        out.state.clients.insert((*name).clone(), rec.clone());
                    }
                }
                continue;
            }
        };
        // The image's own kernel arguments, from the image (or the shared root).
        // The shared root once it exists (what was read of it), else its image.
        let detect = match (tree_found, image_dir.as_deref()) {
            (Found::Dir, _) | (_, None) => facts.tree(&tree)?,
            (_, Some(d)) => facts.tree(d)?,
        };
        // The overlay init needs a few programs and the kernel's modules from the image: an
        // image without them would not boot, so its shared clients are left as they are.
        if let Some(missing) = crate::clientos::shared_missing(detect)? {
            for (name, _) in &clients {
                out.conflicts.push(Conflict {
                    client: (*name).clone(),
                    message: format!(
                        "image {image_name} cannot boot a shared root: it lacks {missing}"
                    ),
                    hint: "install those packages in the image (Raspberry Pi OS has them all), or use `root: own`".into(),
                });
            }
            continue;
        }
        out.resources.extend(tree_out.resources);
        for w in tree_out.warnings {
            if !out.warnings.contains(&w) {
                out.warnings.push(w);
            }
        }
        let boot_rel = crate::resource::rel_str(&tree_out.boot_dir);
        out.state.shared.insert(
            base.clone(),
            crate::state::SharedRecord {
                image: image_name.to_owned(),
                image_sha256: image.sha256.clone(),
                boot_dir: boot_rel.clone(),
            },
        );
        // The image's kernel arguments: read from the image, else from the shared root.
        let cmdline_from = match image_dir.as_deref().map(|d| facts.tree(d)) {
            Some(Ok(t)) => t,
            _ => facts.tree(&tree)?,
        };
        let base_cmdline = cmdline_from
            .read_resolved(&tree_out.boot_dir.join("cmdline.txt"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "console=serial0,115200 console=tty1".into());
        let mut who = Vec::new();
        for (name, client) in &clients {
            let name: &String = name;
            // A root of its own it had before it was shared is its data: kept, said so.
            let own = root_of(valid, name);
            if facts.root(&own) != Found::Missing {
                out.kept.push(Kept {
                    client: name.clone(),
                    path: own,
                    note: format!(
                        "client {name} boots its image's shared root now; its own root is client data, kept (back with `root: own`); to delete it: pinetboot purge {name} --yes"
                    ),
                });
            }
            let own_boot = format!("boot/{name}");
            // Its "root", for its bind mounts: the shared root's base, its boot folder in it.
            out.clients.insert(
                name.clone(),
                ClientPaths {
                    root: base.clone(),
                    image_dir: None,
                },
            );
            out.resources.push(Resource::BootFolder(
                crate::resource::boot_folder::BootFolder {
                    client: name.clone(),
                    base: base.clone(),
                    source: PathBuf::from("root").join(&tree_out.boot_dir),
                    dest: PathBuf::from(&own_boot),
                    cmdline: pios::render_shared_cmdline(
                        &base_cmdline,
                        &valid.address.to_string(),
                        &tree,
                        &client.cmdline,
                        &client.hostname,
                        &client.serial,
                    ),
                },
            ));
            let tftp = tftp_of(valid, &client.serial);
            let prefix_folders = tftp_folders(valid, name, client, old, claimed);
            serve(
                &mut out.resources,
                binds,
                name,
                &base,
                Path::new(&own_boot),
                std::iter::once(&tftp).chain(&prefix_folders),
            );
            out.state.clients.insert(
                name.clone(),
                ClientRecord {
                    serial: client.serial.clone(),
                    root: base.clone(),
                    tftp,
                    prefix_folders,
                    boot_dir: Some(own_boot),
                    image_sha256: image.sha256.clone(),
                    shared: true,
                },
            );
            who.push(client.address.map(|a| a.to_string()));
        }
        let who = if who.iter().all(Option::is_some) {
            who.into_iter().flatten().collect()
        } else {
            vec![valid.nfs_scope.clone()]
        };
        exports.push(render::exports::SharedExport { root: tree, who });
    }
    Ok(exports)
}

/// The disk images (file or URL) clients use, to fetch and unpack into the store before any
/// client root is cloned from it. Images no client uses are not fetched.
pub(crate) fn disk_images(valid: &Valid) -> Vec<Resource> {
    let mut users: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, client) in &valid.clients {
        users
            .entry(client.image.as_str())
            .or_default()
            .push(name.clone());
    }
    let mut out = Vec::new();
    for (image_name, clients) in users {
        let Some(image) = valid.images.get(image_name) else {
            continue;
        };
        let (origin, Some(sha)) = (
            match &image.source {
                Source::File(p) => Origin::File(p.to_string_lossy().into_owned()),
                Source::Url(u) => Origin::Url(u.clone()),
                Source::Directory(_) => continue,
            },
            &image.sha256,
        ) else {
            continue;
        };
        out.push(Resource::Image(crate::resource::image::Image {
            name: image_name.to_owned(),
            sha256: sha.clone(),
            origin,
            state_dir: valid.paths.state.clone(),
            clients,
            limits: valid.downloads,
        }));
    }
    out
}

/// The sha256 a client root was provisioned from: the recorded one while the root exists,
/// the image's own when the root is about to be made from it.
fn provisioned_sha(
    old: &State,
    name: &str,
    image: &crate::config::ValidImage,
    root_exists: bool,
) -> Option<String> {
    if root_exists {
        old.clients.get(name).and_then(|r| r.image_sha256.clone())
    } else if matches!(image.source, Source::Directory(_)) {
        None
    } else {
        image.sha256.clone()
    }
}

/// Where a client reads its image's files from: `Some(Some(dir))` for a directory image, or
/// a disk image whose store entry (the one the client is, or is about to be, provisioned
/// from) is present; `Some(None)` when its root exists but that image is not in the store
/// (the root is read instead), or the image has no sha256; `None` when the client is
/// pending: its root does not exist and the image is not unpacked yet.
pub(crate) fn source_dir(
    valid: &Valid,
    facts: &Facts,
    old: &State,
    name: &str,
    client: &ValidClient,
    root: Found,
) -> Option<Option<String>> {
    let image = valid.images.get(&client.image)?;
    if let Source::Directory(p) = &image.source {
        return Some(Some(p.to_string_lossy().into_owned()));
    }
    let Some(sha) = image.sha256.as_deref() else {
        return Some(None);
    };
    let state_dir = &valid.paths.state;
    if root != Found::Missing {
        let provisioned = old.clients.get(name).and_then(|r| r.image_sha256.clone());
        return Some(
            provisioned
                .filter(|p| facts.in_store(p))
                .map(|p| store::root_dir(state_dir, &p)),
        );
    }
    facts
        .in_store(sha)
        .then(|| Some(store::root_dir(state_dir, sha)))
}

/// Where a client of a disk image reads the image's files from (see [`source_dir`]); for a
/// pending client only the client root is planned (its files are planned after the image is
/// unpacked: `engine::apply` plans again), or a conflict when a local image file is missing.
/// A root provisioned from another sha256 than the image's now is kept, and said so.
fn disk_image_dir(
    valid: &Valid,
    facts: &Facts,
    name: &str,
    client: &ValidClient,
    image: &crate::config::ValidImage,
    root: &str,
    out: &mut Desired,
) -> Option<Option<String>> {
    let old = &facts.state;
    let found = facts.root(root);
    let dir = source_dir(valid, facts, old, name, client, found);
    let Some(sha) = image.sha256.as_deref() else {
        return Some(None);
    };
    if found != Found::Missing {
        let provisioned = old.clients.get(name).and_then(|r| r.image_sha256.clone());
        if let Some(p) = &provisioned
            && p != sha
        {
            out.kept.push(Kept {
                client: name.to_owned(),
                path: root.to_owned(),
                note: format!(
                    "client {name} was provisioned from image sha256 {}… ({} is now {}…); it keeps its root; to reprovision: pinetboot reprovision {name} --yes",
                    &p[..12.min(p.len())],
                    client.image,
                    &sha[..12]
                ),
            });
        }
        return dir;
    }
    if dir.is_some() {
        return dir;
    }
    let store_root = store::root_dir(&valid.paths.state, sha);
    out.clients.insert(
        name.to_owned(),
        ClientPaths {
            root: root.to_owned(),
            image_dir: Some(store_root.clone()),
        },
    );
    // Keep what already works (e.g. a root moved aside by `reprovision`): record and mount.
    if let Some(rec) = old.clients.get(name) {
        out.state.clients.insert(name.to_owned(), rec.clone());
    }
    if let Source::File(p) = &image.source
        && !facts.sources.get(p).copied().unwrap_or(false)
    {
        out.conflicts.push(Conflict {
            client: name.to_owned(),
            message: format!(
                "image {} source {} does not exist (and is not in the image store)",
                client.image,
                p.display()
            ),
            hint: "put the image file there, or fix the image's source in the config".into(),
        });
        return None;
    }
    out.resources.push(Resource::ClientRoot(ClientRoot {
        client: name.to_owned(),
        path: root.to_owned(),
        image: client.image.clone(),
        source: store_root,
        pending: true,
    }));
    None
}

/// The release codename of a tree (its os-release's `VERSION_CODENAME`), read as the Pi
/// sees it (etc/os-release -> ../usr/lib/os-release on every Debian and Raspberry Pi OS root).
fn codename_of(tree: &TreeFacts) -> Result<Option<String>, Violation> {
    let os_release = match tree.read_resolved(Path::new("etc/os-release"))? {
        Some(t) => Some(t),
        None => tree.read_resolved(Path::new("usr/lib/os-release"))?,
    };
    Ok(os_release
        .as_deref()
        .and_then(|t| pios::os_release_field(&String::from_utf8_lossy(t), "VERSION_CODENAME")))
}

/// A client's boot folder: recorded when its root was provisioned (never re-detected from
/// the untrusted root), else the one the image store's manifest records for its image, else
/// detected ([`pios::boot_dir_from`]) from `detect_from` (the image, whose fstab still has
/// its vfat line, else the tree).
pub(crate) fn boot_dir_of(
    detect_from: &TreeFacts,
    recorded: Option<String>,
    manifest: Option<String>,
) -> Result<PathBuf, Violation> {
    let codename = codename_of(detect_from)?;
    if let Some(b) = recorded.or(manifest) {
        return Ok(PathBuf::from(b));
    }
    let image_fstab = detect_from.read_resolved(Path::new("etc/fstab"))?;
    let text = image_fstab.as_deref().map(String::from_utf8_lossy);
    let firmware_dir = detect_from
        .entry_resolved(Path::new("boot/firmware"))?
        .is_some_and(|e| e.kind == EntryKind::Dir);
    Ok(pios::boot_dir_from(
        text.as_deref(),
        firmware_dir,
        codename.as_deref(),
    ))
}

struct ClientOut {
    resources: Vec<Resource>,
    boot_dir: PathBuf,
    warnings: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn expand_client(
    valid: &Valid,
    facts: &Facts,
    name: &str,
    client: &ValidClient,
    root: &str,
    image_dir: Option<&str>,
    recorded_boot: Option<String>,
) -> anyhow::Result<ClientOut> {
    let root_exists = match facts.root(root) {
        Found::Symlink => {
            anyhow::bail!("{root} is a symlink; a client root must be a real folder")
        }
        Found::Other => anyhow::bail!("{root} exists and is not a folder"),
        Found::Dir => true,
        Found::Missing => false,
    };
    let mut resources = Vec::new();
    let image_tree = match image_dir {
        Some(dir) => match facts.tree(dir) {
            Ok(t) => Some(t),
            Err(e) if root_exists => {
                tracing::warn!(
                    client = name,
                    "image folder {dir} is unreadable ({e}); using the client root"
                );
                None
            }
            Err(e) => {
                return Err(e).with_context(|| format!("image {} source {dir}", client.image));
            }
        },
        None if root_exists => None,
        None => anyhow::bail!(
            "image {} is a disk image; provisioning client roots from disk images is not supported by this build",
            client.image
        ),
    };
    let view = match image_tree {
        Some(t) if !root_exists => t,
        _ => facts.tree(root)?,
    };
    if !root_exists {
        resources.push(Resource::ClientRoot(ClientRoot {
            client: name.to_owned(),
            path: root.to_owned(),
            image: client.image.clone(),
            source: image_dir.unwrap_or_default().to_owned(),
            pending: false,
        }));
    }
    // Release and boot folder (see `boot_dir_of`). A client root is untrusted: a boot folder
    // that is not a real folder is a conflict, never a fallback.
    let detect_from = image_tree.unwrap_or(view);
    codename_of(detect_from)?;
    let fstab = view.read(Path::new("etc/fstab"))?;
    let manifest = match (image_tree, image_dir) {
        (Some(_), Some(dir)) => facts
            .manifest_boot_dir(&valid.paths.state, dir)
            .map(str::to_owned),
        _ => None,
    };
    let boot_dir = boot_dir_of(detect_from, recorded_boot, manifest)?;
    match view.entry(&boot_dir)? {
        Some(e) if e.kind == EntryKind::Dir => {}
        Some(crate::host::confined::Entry {
            kind: EntryKind::Symlink,
            ..
        }) => Err(Violation::Symlink(view.path().join(&boot_dir)))?,
        Some(_) => Err(Violation::WrongKind(
            view.path().join(&boot_dir),
            "not a folder",
        ))?,
        None => anyhow::bail!(
            "{} has no boot folder {}",
            view.path().display(),
            boot_dir.display()
        ),
    }
    // Every folder on the way must be real too (e.g. `boot` itself).
    view.open_dir(&boot_dir)?;
    let file = |rel: PathBuf, want: Want| {
        Resource::ClientFile(ClientFile {
            client: name.to_owned(),
            root: root.to_owned(),
            rel,
            want,
            owner: Owner {
                mode: 0o644,
                uid: Some(0),
                gid: Some(0),
            },
            enforce: false,
        })
    };
    // cmdline.txt, from the image's own arguments (the client root's when the image is gone).
    // A shared root's cmdline.txt is not served: each shared client's boot folder has its own.
    if client.root != RootMode::Shared {
        let cmdline_rel = boot_dir.join("cmdline.txt");
        let base = detect_from.read_resolved(&cmdline_rel)?;
        let base = base
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "console=serial0,115200 console=tty1".into());
        let cmdline =
            pios::render_cmdline(&base, &valid.address.to_string(), root, &client.cmdline);
        resources.push(file(cmdline_rel, Want::Cmdline(cmdline)));
    }
    // Firmware overrides (the recipe's "newer start4.elf" step).
    let image = &valid.images[&client.image];
    for (rel, host_path) in &image.files {
        let read = facts
            .host_files
            .get(host_path)
            .cloned()
            .unwrap_or_else(|| Err("not collected before planning (a pinetboot bug)".into()));
        let bytes = read
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("reading {}", host_path.display()))?
            .with_context(|| format!("firmware file {} does not exist", host_path.display()))?;
        resources.push(file(boot_dir.join(rel), Want::Content(bytes)));
    }
    if fstab.is_some() {
        resources.push(file(PathBuf::from("etc/fstab"), Want::FilterFstab));
    }
    // The bootloader's self-update, when the client declares eeprom settings.
    if let (Some(settings), Some((base_path, _))) = (&client.eeprom, &valid.bootloader) {
        let base = match &facts.bootloader {
            Some(Ok(base)) => base,
            Some(Err(e)) => anyhow::bail!("{e}"),
            None => {
                anyhow::bail!("the bootloader image was not read before planning (a pinetboot bug)")
            }
        };
        let upd_rel = boot_dir.join("pieeprom.upd");
        let existing = view.read(&upd_rel)?;
        let update = crate::bootloader::build(base, settings, existing.as_deref(), facts.now)?;
        // The folder is served from the declared prefix: a base image whose own config
        // sets another would send the flashed Pi where nothing is served.
        let declared = settings
            .tftp_prefix
            .clone()
            .unwrap_or(crate::eeprom::TftpPrefix::Serial);
        if crate::eeprom::TftpPrefix::of_config(&update.config).as_ref() != Ok(&declared) {
            anyhow::bail!(
                "the bootloader image {} sets TFTP_PREFIX in its own config, which would make the Pi ask for its files in a folder pinetboot does not serve; declare `tftp_prefix` in the client's `eeprom:` settings",
                base_path.display()
            );
        }
        resources.push(file(upd_rel, Want::Eeprom(update.image)));
        resources.push(file(
            boot_dir.join("pieeprom.sig"),
            Want::Content(update.sig.into_bytes()),
        ));
    }
    let mut warnings = Vec::new();
    // A booted image gives every Pi cloned from it one identity (a booted client root is
    // expected to hold its own: only images are looked at).
    if let (Some(t), Some(dir)) = (image_tree, image_dir) {
        crate::clientos::identity_warning(t, &client.image, dir, &mut warnings)?;
    }
    let server = valid.address.to_string();
    let target = crate::clientos::Target {
        name,
        root,
        client,
        boot_dir: &boot_dir,
        server: &server,
        shared: client.root == crate::config::model::RootMode::Shared,
    };
    crate::clientos::expand(view, &target, &mut resources, &mut warnings, &file)?;
    Ok(ClientOut {
        resources,
        boot_dir,
        warnings,
    })
}

/// Expansion, decided from facts built in memory: no filesystem, no root.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::TreeFacts;
    use crate::resource::client_file::Want;

    const BOOKWORM_FSTAB: &[u8] = b"proc /proc proc defaults 0 0\nPARTUUID=1-01 /boot/firmware vfat defaults 0 2\nPARTUUID=1-02 / ext4 defaults 0 1\n";
    const CMDLINE: &[u8] =
        b"console=serial0,115200 console=tty1 root=PARTUUID=1-02 rootfstype=ext4 rootwait quiet\n";
    const HASH: &str = "$6$rounds=5000$saltsalt$Q2lnSGkxQ2pkRkVhZ0g0ZnVqU0RmZ2tqc2Q0ZnNkZmc";

    fn valid(clients: &str) -> Valid {
        let yaml = format!(
            "server: {{address: 10.0.0.1, network: 10.0.0.0/24}}\n\
             images: {{lite: {{source: /srv/lite}}}}\n\
             defaults: {{image: lite}}\nclients:\n{clients}"
        );
        crate::config::load_str(Path::new("t.yaml"), &yaml).expect("valid config")
    }

    /// A Bookworm-like image tree.
    fn bookworm(path: &str) -> TreeFacts {
        TreeFacts::memory(path)
            .file("etc/os-release", b"VERSION_CODENAME=bookworm\n")
            .file("etc/fstab", BOOKWORM_FSTAB)
            .file("etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n")
            .file("boot/firmware/cmdline.txt", CMDLINE)
            .dir("etc/ssh")
    }

    /// What an earlier apply recorded for a client.
    fn record(name: &str, serial: &str, prefixes: &[&str], boot_dir: Option<&str>) -> ClientRecord {
        ClientRecord {
            serial: serial.into(),
            root: format!("/nfs/{name}"),
            tftp: format!("/tftpboot/{serial}"),
            prefix_folders: prefixes.iter().map(|p| p.to_string()).collect(),
            boot_dir: boot_dir.map(str::to_owned),
            image_sha256: None,
            shared: false,
        }
    }

    fn facts(trees: Vec<TreeFacts>, roots: &[(&str, Found)]) -> Facts {
        Facts {
            trees: trees
                .into_iter()
                .map(|t| (t.path().to_string_lossy().into_owned(), Ok(t)))
                .collect(),
            roots: roots.iter().map(|(p, f)| (p.to_string(), *f)).collect(),
            prefix: PathBuf::from("/"),
            ..Facts::default()
        }
    }

    fn client_files<'a>(
        d: &'a Desired,
        client: &str,
    ) -> Vec<&'a crate::resource::client_file::ClientFile> {
        d.resources
            .iter()
            .filter_map(|r| match r {
                Resource::ClientFile(f) if f.client == client => Some(f),
                _ => None,
            })
            .collect()
    }

    /// The warnings that say `what`.
    fn warned<'a>(d: &'a Desired, what: &str) -> Vec<&'a String> {
        d.warnings.iter().filter(|w| w.contains(what)).collect()
    }

    fn want<'a>(d: &'a Desired, client: &str, rel: &str) -> Option<&'a Want> {
        client_files(d, client)
            .into_iter()
            .find(|f| f.rel == Path::new(rel))
            .map(|f| &f.want)
    }

    #[test]
    fn a_new_client_is_cloned_and_its_cmdline_rendered_from_the_image() {
        let v = valid("  pi: {serial: 10000001}\n");
        let d = expand(&v, &facts(vec![bookworm("/srv/lite")], &[])).unwrap();
        assert!(d.conflicts.is_empty(), "{:?}", d.conflicts);
        assert!(d.resources.iter().any(|r| matches!(r,
            Resource::ClientRoot(c) if c.path == "/nfs/pi" && c.source == "/srv/lite" && !c.pending)));
        assert_eq!(
            want(&d, "pi", "boot/firmware/cmdline.txt"),
            Some(&Want::Cmdline(
                "console=serial0,115200 console=tty1 quiet root=/dev/nfs nfsroot=10.0.0.1:/nfs/pi,vers=3 rw ip=dhcp rootwait\n".into()
            ))
        );
        assert_eq!(
            d.state.clients["pi"].boot_dir.as_deref(),
            Some("boot/firmware")
        );
        // etc/ssh exists: a host key of its own; no fstab in the tree: nothing to filter.
        assert!(want(&d, "pi", crate::sshkeys::HOST_KEY).is_some());
        assert!(want(&d, "pi", "etc/fstab").is_some());
    }

    #[test]
    fn the_boot_folder_is_detected_from_the_images_fstab_and_release() {
        let bullseye = TreeFacts::memory("/srv/lite")
            .file("etc/os-release", b"VERSION_CODENAME=bullseye\n")
            .file("boot/cmdline.txt", CMDLINE)
            .dir("boot/firmware");
        let d = expand(
            &valid("  pi: {serial: 10000001}\n"),
            &facts(vec![bullseye], &[]),
        )
        .unwrap();
        assert_eq!(d.state.clients["pi"].boot_dir.as_deref(), Some("boot"));
        assert!(want(&d, "pi", "boot/cmdline.txt").is_some());
        // No fstab (none to filter), no release: what is there.
        let plain = TreeFacts::memory("/srv/lite").file("boot/firmware/cmdline.txt", CMDLINE);
        let d = expand(
            &valid("  pi: {serial: 10000001}\n"),
            &facts(vec![plain], &[]),
        )
        .unwrap();
        assert_eq!(
            d.state.clients["pi"].boot_dir.as_deref(),
            Some("boot/firmware")
        );
        assert!(want(&d, "pi", "etc/fstab").is_none());
    }

    #[test]
    fn a_recorded_boot_folder_is_never_detected_again() {
        let v = valid("  pi: {serial: 10000001}\n");
        let root = bookworm("/nfs/pi")
            .dir("boot")
            .file("boot/cmdline.txt", CMDLINE);
        let mut f = facts(
            vec![bookworm("/srv/lite"), root],
            &[("/nfs/pi", Found::Dir)],
        );
        f.state
            .clients
            .insert("pi".into(), record("pi", "10000001", &[], Some("boot")));
        let d = expand(&v, &f).unwrap();
        assert_eq!(d.state.clients["pi"].boot_dir.as_deref(), Some("boot"));
        // The image's own cmdline.txt is read in the recorded folder (the image has none
        // there: the default console arguments).
        assert!(matches!(want(&d, "pi", "boot/cmdline.txt"),
            Some(Want::Cmdline(c)) if c.starts_with("console=serial0,115200 console=tty1 root=/dev/nfs")));
        assert!(
            !d.resources
                .iter()
                .any(|r| matches!(r, Resource::ClientRoot(_)))
        );
    }

    #[test]
    fn a_store_image_uses_the_boot_folder_its_manifest_records() {
        let sha = "a".repeat(64);
        let yaml = format!(
            "server: {{address: 10.0.0.1, network: 10.0.0.0/24}}\n\
             images: {{os: {{source: /srv/os.img.xz, sha256: {sha}}}}}\n\
             defaults: {{image: os}}\nclients:\n  pi: {{serial: 10000001}}\n"
        );
        let v = crate::config::load_str(Path::new("t.yaml"), &yaml).unwrap();
        let store_root = store::root_dir(&v.paths.state, &sha);
        // The tree says boot/firmware; the manifest (what the unpack did) wins.
        let image = bookworm(&store_root).file("boot/cmdline.txt", CMDLINE);
        let mut f = facts(vec![image], &[]);
        f.store.insert(sha.clone(), Some("boot".into()));
        let d = expand(&v, &f).unwrap();
        assert_eq!(d.state.clients["pi"].boot_dir.as_deref(), Some("boot"));
        assert_eq!(d.state.clients["pi"].image_sha256.as_deref(), Some(&*sha));
        // Not in the store yet: only the root is planned, pending; a missing local file is a
        // conflict.
        let mut f = facts(vec![], &[]);
        f.sources.insert(PathBuf::from("/srv/os.img.xz"), true);
        let d = expand(&v, &f).unwrap();
        assert!(
            d.resources
                .iter()
                .any(|r| matches!(r, Resource::ClientRoot(c) if c.pending))
        );
        assert!(client_files(&d, "pi").is_empty());
        f.sources.insert(PathBuf::from("/srv/os.img.xz"), false);
        let d = expand(&v, &f).unwrap();
        assert_eq!(d.conflicts.len(), 1);
        assert!(d.conflicts[0].message.contains("does not exist"));
    }

    #[test]
    fn a_planted_symlink_makes_a_conflict_naming_the_tree_it_is_in() {
        let v =
            valid("  a: {serial: 10000001}\n  b: {serial: 10000002}\n  c: {serial: 10000003}\n");
        let a = bookworm("/nfs/a").symlink("boot/firmware");
        let f = facts(
            vec![bookworm("/srv/lite"), a],
            &[("/nfs/a", Found::Dir), ("/nfs/b", Found::Symlink)],
        );
        let d = expand(&v, &f).unwrap();
        let by = |n: &str| d.conflicts.iter().find(|c| c.client == n).unwrap();
        assert!(
            by("a")
                .message
                .contains("/nfs/a/boot/firmware is or passes through a symlink")
        );
        assert!(
            by("a")
                .hint
                .starts_with("something inside /nfs/a is not what")
        );
        assert_eq!(
            by("b").message,
            "/nfs/b is a symlink; a client root must be a real folder"
        );
        assert_eq!(by("b").hint, "fix the cause above, then apply again");
        // A conflict keeps nothing of the client's but what already serves; c goes on.
        assert!(client_files(&d, "a").is_empty() && client_files(&d, "b").is_empty());
        assert!(!client_files(&d, "c").is_empty());
        // In the image, the hint names the image.
        let image = bookworm("/srv/lite").symlink("etc/os-release");
        let d = expand(
            &valid("  c: {serial: 10000003}\n"),
            &facts(vec![image], &[]),
        )
        .unwrap();
        assert!(
            d.conflicts[0]
                .hint
                .starts_with("the image lite (/srv/lite) holds something")
        );
    }

    #[test]
    fn firmware_overrides_come_from_the_facts_and_a_missing_one_is_a_conflict() {
        let yaml = "server: {address: 10.0.0.1, network: 10.0.0.0/24}\n\
             images: {lite: {source: /srv/lite, files: {start4.elf: /srv/fw/start4.elf}}}\n\
             defaults: {image: lite}\nclients:\n  pi: {serial: 10000001}\n";
        let v = crate::config::load_str(Path::new("t.yaml"), yaml).unwrap();
        let mut f = facts(vec![bookworm("/srv/lite")], &[]);
        f.host_files.insert(
            PathBuf::from("/srv/fw/start4.elf"),
            Ok(Some(b"elf".to_vec())),
        );
        let d = expand(&v, &f).unwrap();
        assert_eq!(
            want(&d, "pi", "boot/firmware/start4.elf"),
            Some(&Want::Content(b"elf".to_vec()))
        );
        f.host_files
            .insert(PathBuf::from("/srv/fw/start4.elf"), Ok(None));
        let d = expand(&v, &f).unwrap();
        assert_eq!(
            d.conflicts[0].message,
            "firmware file /srv/fw/start4.elf does not exist"
        );
    }

    #[test]
    fn a_booted_image_is_warned_about_once() {
        let v = valid("  a: {serial: 10000001}\n  b: {serial: 10000002}\n");
        let image = bookworm("/srv/lite")
            .file("etc/machine-id", b"0123\n")
            .file("etc/ssh/ssh_host_ed25519_key", b"k");
        let d = expand(&v, &facts(vec![image], &[])).unwrap();
        let booted = warned(&d, "looks already booted");
        assert_eq!(booted.len(), 1, "{:?}", d.warnings);
        let fresh = bookworm("/srv/lite").file("etc/machine-id", b"uninitialized\n");
        let d = expand(&v, &facts(vec![fresh], &[])).unwrap();
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn prefix_folders_served_before_stay_while_the_serial_does_and_nobody_claims_them() {
        let v = valid("  a: {serial: 10000001}\n  b: {serial: 10000002}\n");
        let mut old = State::default();
        let a = record(
            "a",
            "10000001",
            &["/tftpboot/old-a", "/tftpboot/10000002"],
            None,
        );
        old.clients.insert("a".into(), a);
        let b = record("b", "0000dead", &["/tftpboot/old-b"], None);
        old.clients.insert("b".into(), b);
        let f = Facts {
            state: old,
            ..facts(vec![bookworm("/srv/lite")], &[])
        };
        let d = expand(&v, &f).unwrap();
        // a keeps old-a; b's serial folder is b's. b's serial changed: old-b goes.
        assert_eq!(d.state.clients["a"].prefix_folders, vec!["/tftpboot/old-a"]);
        assert!(d.state.clients["b"].prefix_folders.is_empty());
        let unbound: Vec<&str> = d
            .resources
            .iter()
            .filter_map(|r| match r {
                Resource::Unbind(u) => Some(u.target.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(unbound, vec!["/tftpboot/0000dead", "/tftpboot/old-b"]);
    }

    #[test]
    fn a_root_no_longer_declared_is_kept_and_said_so() {
        let v = valid("  a: {serial: 10000001}\n");
        let mut f = facts(vec![bookworm("/srv/lite")], &[("/nfs/gone", Found::Dir)]);
        let gone = record("gone", "10000009", &[], Some("boot/firmware"));
        f.state.clients.insert("gone".into(), gone);
        let d = expand(&v, &f).unwrap();
        assert_eq!(d.kept.len(), 1);
        assert!(d.kept[0].note.contains("pinetboot purge gone --yes"));
    }

    #[test]
    fn a_user_not_in_the_tree_gets_a_secret_userconf_and_its_keys_wait() {
        let v = valid(&format!(
            "  pi:\n    serial: 10000001\n    user: {{name: alice, password_hash: '{HASH}'}}\n    ssh: {{user: alice, authorized_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBench bench']}}\n"
        ));
        let d = expand(&v, &facts(vec![bookworm("/srv/lite")], &[])).unwrap();
        let userconf = client_files(&d, "pi")
            .into_iter()
            .find(|f| f.rel == Path::new("boot/firmware/userconf.txt"))
            .unwrap();
        assert_eq!(userconf.owner, crate::clientos::SECRET);
        assert_eq!(
            userconf.want,
            Want::Secret(format!("alice:{HASH}\n").into_bytes())
        );
        assert!(want(&d, "pi", "etc/systemd/system/userconfig.service").is_none());
        assert!(want(&d, "pi", "etc/systemd/system/rpi-resize.service").is_some());
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("user alice is created on the Pi's first boot"))
        );
    }

    #[test]
    fn authorized_keys_belong_to_the_user_the_trees_passwd_names() {
        let v = valid(
            "  pi:\n    serial: 10000001\n    ssh: {user: bob, authorized_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBench bench']}\n",
        );
        let image = bookworm("/srv/lite").file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\nbob:x:1001:1002::/home/bob:/bin/sh\n",
        );
        let d = expand(&v, &facts(vec![image], &[])).unwrap();
        let keys = client_files(&d, "pi")
            .into_iter()
            .find(|f| f.rel == Path::new("home/bob/.ssh/authorized_keys"))
            .unwrap();
        assert_eq!(
            (keys.owner.uid, keys.owner.gid, keys.owner.mode),
            (Some(1001), Some(1002), 0o600)
        );
        // The home does not exist: made, the user's.
        assert_eq!(want(&d, "pi", "home/bob"), Some(&Want::Dir));
        // A uid pinetboot cannot set is the tree's violation: a conflict.
        let bad =
            bookworm("/srv/lite").file("etc/passwd", b"bob:x:4294967295:0::/home/bob:/bin/sh\n");
        let d = expand(&v, &facts(vec![bad], &[])).unwrap();
        assert!(
            d.conflicts[0].message.contains("(uid_t)-1"),
            "{:?}",
            d.conflicts
        );
        assert!(d.conflicts[0].hint.starts_with("the image lite"));
        // No such user: an error of the client, not a violation.
        let none = bookworm("/srv/lite");
        let d = expand(&v, &facts(vec![none], &[])).unwrap();
        assert!(d.conflicts[0].message.contains("user bob does not exist"));
        assert_eq!(d.conflicts[0].hint, "fix the cause above, then apply again");
    }

    #[test]
    fn network_stacks_and_firmware_hooks_get_their_drop_ins() {
        let v = valid("  pi: {serial: 10000001}\n");
        let image = bookworm("/srv/lite")
            .dir("etc/NetworkManager")
            .file("usr/lib/systemd/system/systemd-networkd.service", b"")
            .file("etc/kernel/postinst.d/z50-raspi-firmware", b"")
            .file("etc/dhcpcd.conf", b"");
        let d = expand(&v, &facts(vec![image], &[])).unwrap();
        for rel in [
            "etc/NetworkManager/conf.d/pinetboot-nfsroot.conf",
            "etc/systemd/network/00-pinetboot-nfsroot.network",
            "etc/systemd/system/boot-firmware.mount",
            "etc/systemd/system/local-fs.target.wants/boot-firmware.mount",
        ] {
            assert!(want(&d, "pi", rel).is_some(), "{rel}");
        }
        assert!(matches!(want(&d, "pi", "etc/default/raspi-firmware"),
            Some(Want::Block(l)) if l[1] == "ROOTPART='/dev/nfs nfsroot=10.0.0.1:/nfs/pi,vers=3 ip=dhcp'"));
        assert!(matches!(
            want(&d, "pi", "etc/dhcpcd.conf"),
            Some(Want::Block(_))
        ));
        assert!(want(&d, "pi", "etc/systemd/system/networking.service.d").is_none());
    }

    #[test]
    fn secrets_the_boot_folder_serves_to_anyone_are_warned_about() {
        let v = valid("  pi: {serial: 10000001}\n");
        let image = bookworm("/srv/lite")
            .file_with("boot/firmware/firstrun.sh", b"#!/bin/sh\necho x\n", 0o644)
            .file_with("boot/firmware/wpa_supplicant.conf", b"psk=x\n", 0o600)
            .file_with(
                "boot/firmware/user-data",
                b"#cloud-config\n# nothing\n",
                0o644,
            );
        let d = expand(&v, &facts(vec![image], &[])).unwrap();
        let served = warned(&d, "is served over TFTP");
        assert_eq!(served.len(), 1, "{served:?}");
        assert!(served[0].contains("boot/firmware/firstrun.sh"));
    }
}
