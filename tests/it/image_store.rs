//! The image store end to end, on the real binary (needs root, sfdisk, mkfs.vfat, mtools,
//! mke2fs, xz; the reflink test needs mkfs.btrfs and loop devices): a Raspberry Pi OS-like
//! `.img.xz` built here is served over HTTP from 127.0.0.1 (a server this test starts, with
//! Range support and request counting) or read as a local file, fetched, verified, unpacked
//! once into `/var/lib/pinetboot/images/<sha256>/` and cloned into client roots.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::fixture::*;
use crate::support::http::HttpServer;
use crate::support::paused::Paused;
use crate::support::snapshot::*;
use crate::support::text::{assert_contains, assert_lacks};
use crate::support::tools::*;
use sha2::{Digest, Sha256};

/// Disk layout of the test image (512-byte sectors): 32 MiB FAT16, 72 MiB ext4.
const P1_START: u64 = 2048;
const P1_SECTORS: u64 = 65_536;
const IMAGE_BYTES: u64 = 104 << 20;
const DISK_ID: &str = "4e639091";

/// A built image: the `.img.xz`, the same disk gzipped (another sha256, same content), digests.
struct Images {
    xz: PathBuf,
    xz_sha: String,
    gz: PathBuf,
    gz_sha: String,
}

fn sha256_file(p: &Path) -> String {
    let mut h = Sha256::new();
    h.update(std::fs::read(p).unwrap());
    hex::encode(h.finalize())
}

/// Builds (once per test run) a Bookworm disk image from the fixture tree: FAT partition
/// with the boot files, ext4 partition with the rest (setuid, symlinks, hardlinks, devices,
/// xattrs), MBR disk id as in the image's fstab/cmdline.
fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        require_root("building a disk image with owners and device nodes");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("image-store-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tree = dir.join("tree");
        build_image(&tree, Release::Bookworm, false);
        // Fidelity probes only a disk image carries through: xattrs (user and trusted).
        for (path, name, value) in [
            ("usr/bin/perl", "user.pinetboot-test", &b"kept"[..]),
            ("etc", "trusted.dirattr", &b"on a dir"[..]),
        ] {
            rustix::fs::lsetxattr(
                tree.join(path),
                name,
                value,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
        // The FAT side: boot/firmware's content; the ext4 side keeps the empty mount point.
        let bootfs = dir.join("bootfs");
        std::fs::rename(tree.join("boot/firmware"), &bootfs).unwrap();
        std::fs::create_dir(tree.join("boot/firmware")).unwrap();
        let disk = dir.join("disk.img");
        crate::support::disk::build(&crate::support::disk::Disk {
            path: &disk,
            bytes: IMAGE_BYTES,
            disk_id: DISK_ID,
            p1_start: P1_START,
            p1_sectors: P1_SECTORS,
            fat16: true,
            bootfs: &bootfs,
            rootfs: &tree,
            mke2fs: &["-b", "4096"],
        });
        let xz = dir.join("bookworm.img.xz");
        run(Command::new("sh").arg("-c").arg(format!(
            "xz -T2 -3 -c {} > {}",
            disk.display(),
            xz.display()
        )));
        let gz = dir.join("bookworm.img.gz");
        run(Command::new("sh").arg("-c").arg(format!(
            "gzip -1 -c {} > {}",
            disk.display(),
            gz.display()
        )));
        Images {
            xz_sha: sha256_file(&xz),
            xz,
            gz_sha: sha256_file(&gz),
            gz,
        }
    })
}

/// A config with disk images (name, source, sha256) and clients (name, serial, image).
fn config(images: &[(&str, &str, &str)], clients: &[(&str, &str, &str)]) -> String {
    let mut y = format!("server:\n  address: {SERVER}\n  network: {NETWORK}\nimages:\n");
    for (name, source, sha) in images {
        y.push_str(&format!(
            "  {name}:\n    source: {source}\n    sha256: {sha}\n"
        ));
    }
    y.push_str("clients:\n");
    for (name, serial, image) in clients {
        y.push_str(&format!(
            "  {name}:\n    serial: \"{serial}\"\n    image: {image}\n"
        ));
    }
    y
}

fn write_config(env: &Env, yaml: &str) {
    std::fs::write(&env.config, yaml).unwrap();
}

/// Files in the store folder (names), sorted.
fn store_listing(env: &Env) -> Vec<String> {
    let dir = env.path("/var/lib/pinetboot/images");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn state_json(env: &Env) -> serde_json::Value {
    serde_json::from_str(&env.read("/var/lib/pinetboot/state.json")).unwrap()
}

/// The client root holds the unpacked tree, faithfully, with pinetboot's edits.
fn check_client_root(env: &Env, client: &str) {
    let root = env.path(&format!("/nfs/{client}"));
    let md = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(md("usr/bin/sudo").mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(
        md("usr/bin/perl").ino(),
        md("usr/bin/perl5.36.0").ino(),
        "hardlink kept"
    );
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    let null = md("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert!(md("dev/initctl").file_type().is_fifo());
    assert_eq!((md("home/pi").uid(), md("home/pi").gid()), (1000, 1000));
    let mut v = vec![0u8; 64];
    let n = rustix::fs::lgetxattr(root.join("usr/bin/perl"), "user.pinetboot-test", &mut v)
        .expect("xattr kept");
    assert_eq!(&v[..n], b"kept");
    // From the FAT partition into boot/firmware, with pinetboot's cmdline.
    assert!(root.join("boot/firmware/start4.elf").is_file());
    let cmdline = env.read(&format!("/nfs/{client}/boot/firmware/cmdline.txt"));
    assert!(
        cmdline.contains(&format!(
            "root=/dev/nfs nfsroot={SERVER}:/nfs/{client},vers=3"
        )),
        "{cmdline}"
    );
    assert!(!cmdline.contains("PARTUUID"), "{cmdline}");
    assert!(!cmdline.contains("init="), "{cmdline}");
    let fstab = env.read(&format!("/nfs/{client}/etc/fstab"));
    assert_eq!(fstab, Release::Bookworm.fstab_filtered());
}

/// The xz image served by a local HTTP server, and an env whose config declares client
/// raspi1 on it: (images, env, server, url, the xz file's length).
fn served_bookworm() -> (&'static Images, Env, HttpServer, String, u64) {
    let img = images();
    let env = Env::new();
    let server = HttpServer::start();
    let url = server.add("bookworm.img.xz", img.xz.clone());
    let len = std::fs::metadata(&img.xz).unwrap().len();
    write_config(
        &env,
        &config(
            &[("bookworm", &url, &img.xz_sha)],
            &[("raspi1", "10000001", "bookworm")],
        ),
    );
    (img, env, server, url, len)
}

#[test]
fn url_image_one_apply_converges_then_second_client_clones_from_the_store() {
    let (img, env, server, url, len) = served_bookworm();
    // Plan: the image to download and the root to create; no conflict, nothing changed.
    let before = snapshot(&env.root);
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert_same(
        &before,
        &snapshot(&env.root),
        Cmp::ALL,
        "plan changed nothing",
    );
    assert_contains(
        &plan.stdout,
        &format!(
            "  + image bookworm (download {} from {url}, sha256 {}…",
            pinetboot::progress::human_bytes(len),
            &img.xz_sha[..12]
        ),
    );
    assert_contains(
        &plan.stdout,
        "files inside are planned after the image is unpacked",
    );
    assert_lacks(&plan.stdout, "Conflicts");
    server.clear();

    // One apply converges.
    let r = env.apply_ok();
    assert_contains(&r.stdout, "+ image bookworm\n");
    assert_contains(
        &r.stdout,
        "+ client root /nfs/raspi1 (copied from image bookworm: ",
    );
    env.assert_converged();
    let gets = server.gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].sent, len);

    // The store: tree + manifest, nothing else left behind.
    assert_eq!(store_listing(&env), vec![img.xz_sha.clone()]);
    let entry = format!("/var/lib/pinetboot/images/{}", img.xz_sha);
    let m: serde_json::Value =
        serde_json::from_str(&env.read(&format!("{entry}/manifest.json"))).expect("manifest.json");
    assert_eq!(m["sha256"], img.xz_sha.as_str());
    assert_eq!(m["boot_dir"], "boot/firmware");
    assert_eq!(m["version_codename"], "bookworm");
    assert_eq!(m["disk_signature"], DISK_ID);
    assert_eq!(m["source"]["url"], url.as_str());
    assert_eq!(m["image_bytes"], IMAGE_BYTES);
    let store_root = env.path(&format!("{entry}/root"));
    assert!(
        store_root.join("usr/bin/sudo").is_file()
            && store_root.join("boot/firmware/cmdline.txt").is_file()
    );
    let images_mode = std::fs::metadata(env.path("/var/lib/pinetboot/images"))
        .unwrap()
        .mode();
    assert_eq!(images_mode & 0o777, 0o700, "the store is private");
    // The store keeps the image's own cmdline.txt; the client has pinetboot's.
    assert!(
        std::fs::read_to_string(store_root.join("boot/firmware/cmdline.txt"))
            .unwrap()
            .contains("PARTUUID")
    );
    check_client_root(&env, "raspi1");
    assert_eq!(
        state_json(&env)["clients"]["raspi1"]["image_sha256"],
        img.xz_sha.as_str()
    );

    // A second client: cloned from the store, no request to the server at all.
    server.clear();
    write_config(
        &env,
        &config(
            &[("bookworm", &url, &img.xz_sha)],
            &[
                ("raspi1", "10000001", "bookworm"),
                ("raspi2", "10000002", "bookworm"),
            ],
        ),
    );
    let r = env.apply_ok();
    assert_contains(
        &r.stdout,
        "+ client root /nfs/raspi2 (copied from image bookworm: ",
    );
    assert_lacks(&r.stdout, "+ image");
    env.assert_converged();
    assert_eq!(server.seen(), vec![], "no request once the image is stored");
    check_client_root(&env, "raspi2");
}

/// An env with the test image at /srv/images/bookworm.img.xz, and .gz when `gz` (no config
/// yet).
fn with_image_files(gz: bool) -> Env {
    let img = images();
    let env = Env::new();
    std::fs::create_dir_all(env.path("/srv/images")).unwrap();
    std::fs::copy(&img.xz, env.path("/srv/images/bookworm.img.xz")).unwrap();
    if gz {
        std::fs::copy(&img.gz, env.path("/srv/images/bookworm.img.gz")).unwrap();
    }
    env
}

/// [`with_image_files`] and a config declaring client raspi1 on the local xz image.
fn local_bookworm() -> Env {
    let env = with_image_files(false);
    write_config(
        &env,
        &config(
            &[("bookworm", "/srv/images/bookworm.img.xz", &images().xz_sha)],
            &[("raspi1", "10000001", "bookworm")],
        ),
    );
    env
}

#[test]
fn local_image_file_is_unpacked_once() {
    let img = images();
    let env = local_bookworm();
    let plan = env.pt(&["plan"]);
    plan.expect_code(0);
    assert_contains(
        &plan.stdout,
        "  + image bookworm (unpack /srv/images/bookworm.img.xz (",
    );
    let r = env.pt_env(&[("PINETBOOT_LOG", "pinetboot=info")], &["apply"]);
    r.expect_code(0);
    // Not a terminal: plain progress lines for the journal, and the clone's statistics.
    assert_contains(&r.stderr, "pinetboot: image bookworm: writing files");
    assert_contains(&r.stderr, "reflinked=");
    env.assert_converged();
    check_client_root(&env, "raspi1");
    assert_eq!(store_listing(&env), vec![img.xz_sha.clone()]);
    // The source file is the user's: untouched.
    assert!(env.path("/srv/images/bookworm.img.xz").is_file());
}

#[test]
fn a_cut_download_is_resumed_with_a_range_request() {
    let (img, env, server, _url, len) = served_bookworm();
    // Within one apply: the server cuts the body at a third; the download resumes.
    server.cut_next_get_after(len / 3);
    env.apply_ok();
    env.assert_converged();
    let gets = server.gets();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!((gets[0].status, gets[0].range.as_deref()), (200, None));
    assert_eq!(gets[0].sent, len / 3);
    assert_eq!(gets[1].status, 206);
    assert_eq!(gets[1].range, Some(format!("bytes={}-", len / 3)));
    assert_eq!(gets[0].sent + gets[1].sent, len, "no byte fetched twice");
    check_client_root(&env, "raspi1");

    // Across runs: a partial download left by an earlier apply is resumed, not restarted.
    let env2 = Env::new();
    std::fs::write(&env2.config, std::fs::read(&env.config).unwrap()).unwrap();
    let images_dir = env2.path("/var/lib/pinetboot/images");
    std::fs::create_dir_all(&images_dir).unwrap();
    let bytes = std::fs::read(&img.xz).unwrap();
    let half = bytes.len() / 2;
    std::fs::write(
        images_dir.join(format!("{}.download", img.xz_sha)),
        &bytes[..half],
    )
    .unwrap();
    server.clear();
    let plan = env2.pt(&["plan"]);
    assert_contains(&plan.stdout, "(resuming)");
    server.clear();
    env2.apply_ok();
    env2.assert_converged();
    let gets = server.gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range, Some(format!("bytes={half}-")));
    assert_eq!(gets[0].sent, (bytes.len() - half) as u64);
    assert_eq!(store_listing(&env2), vec![img.xz_sha.clone()]);
}

#[test]
fn a_wrong_sha256_is_a_conflict_naming_both_digests_and_keeps_nothing() {
    let img = images();
    let env = Env::new();
    let server = HttpServer::start();
    let url = server.add("bookworm.img.xz", img.xz.clone());
    std::fs::create_dir_all(env.path("/srv/images")).unwrap();
    std::fs::copy(&img.gz, env.path("/srv/images/bookworm.img.gz")).unwrap();
    let wrong = "0123456789abcdef".repeat(4);
    write_config(
        &env,
        &config(
            &[
                ("good", "/srv/images/bookworm.img.gz", &img.gz_sha),
                ("badurl", &url, &wrong),
                (
                    "badfile",
                    "/srv/images/bookworm.img.gz",
                    &wrong.replace('0', "f"),
                ),
            ],
            &[
                ("raspi1", "10000001", "good"),
                ("raspi2", "10000002", "badurl"),
                ("raspi3", "10000003", "badfile"),
            ],
        ),
    );
    let r = env.pt(&["apply"]);
    r.expect_code(1);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(
        out.contains(&format!(
            "sha256 mismatch for {url}: expected {wrong}, got {}",
            img.xz_sha
        )),
        "{out}"
    );
    assert!(
        out.contains(&img.gz_sha) && out.contains(&wrong.replace('0', "f")),
        "{out}"
    );
    assert!(
        out.contains("client raspi2:") && out.contains("client raspi3:"),
        "{out}"
    );
    // The good client converged; the bad ones are conflicts, and the store holds only the good.
    check_client_root(&env, "raspi1");
    assert!(!env.path("/nfs/raspi2").exists() && !env.path("/nfs/raspi3").exists());
    assert_eq!(store_listing(&env), vec![img.gz_sha.clone()]);
    let plan = env.pt(&["plan"]);
    assert_contains(&plan.stdout, "+ image badurl");
    assert_lacks(&plan.stdout, "raspi1");
}

#[test]
fn an_apply_killed_during_unpack_leaves_no_half_entry_and_the_next_converges() {
    let img = images();
    // Crash points while the image is handled: after the unpack, before the manifest's
    // rename, before the store rename, after the image change; each leaves no entry or a
    // whole one.
    for n in 1..=4u32 {
        let env = local_bookworm();
        let crash = env.pt_env(&[("PINETBOOT_CRASH_AT", &n.to_string())], &["apply"]);
        assert!(crash.aborted(), "crash point {n} not reached: {crash:?}");
        let listing = store_listing(&env);
        let entry = env.path(&format!("/var/lib/pinetboot/images/{}", img.xz_sha));
        assert!(
            !entry.exists() || entry.join("manifest.json").is_file(),
            "crash point {n}: a half entry {listing:?}"
        );
        assert!(!env.path("/nfs/raspi1").exists());
        let again = env.pt_env(&[("PINETBOOT_LOG", "pinetboot=info")], &["apply"]);
        again.expect_code(0);
        env.assert_converged();
        assert_eq!(
            store_listing(&env),
            vec![img.xz_sha.clone()],
            "crash point {n}: leftovers"
        );
        check_client_root(&env, "raspi1");
    }
}

#[test]
fn a_changed_image_keeps_the_root_until_reprovisioned() {
    let img = images();
    let env = with_image_files(true);
    let clients = [("raspi1", "10000001", "bookworm")];
    write_config(
        &env,
        &config(
            &[("bookworm", "/srv/images/bookworm.img.xz", &img.xz_sha)],
            &clients,
        ),
    );
    env.apply_ok();
    // Client data.
    std::fs::write(env.path("/nfs/raspi1/home/pi/notes.txt"), "mine\n").unwrap();
    // The image changes: it is fetched into the store, the root is kept, and the plan says so.
    write_config(
        &env,
        &config(
            &[("bookworm", "/srv/images/bookworm.img.gz", &img.gz_sha)],
            &clients,
        ),
    );
    let plan = env.pt(&["plan"]);
    let note = format!(
        "client raspi1 was provisioned from image sha256 {}… (bookworm is now {}…); it keeps its root; to reprovision: pinetboot reprovision raspi1 --yes",
        &img.xz_sha[..12],
        &img.gz_sha[..12]
    );
    assert_contains(&plan.stdout, &note);
    assert!(
        plan.stdout
            .contains("+ image bookworm (unpack /srv/images/bookworm.img.gz")
    );
    let r = env.apply_ok();
    assert_contains(&r.stdout, &note);
    assert_eq!(env.read("/nfs/raspi1/home/pi/notes.txt"), "mine\n");
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(0);
    assert_eq!(
        state_json(&env)["clients"]["raspi1"]["image_sha256"],
        img.xz_sha.as_str()
    );

    // Reprovision: refused without --yes; then the old root is moved aside, never deleted.
    env.pt(&["reprovision", "raspi1"]).expect_code(1);
    let r = env.pt(&["reprovision", "raspi1", "--yes"]);
    r.expect_code(0);
    assert_contains(
        &r.stdout,
        "moved client root /nfs/raspi1 aside to /nfs/.raspi1.pinetboot-old-",
    );
    assert_contains(
        &r.stdout,
        "+ client root /nfs/raspi1 (copied from image bookworm",
    );
    // Converged; the entry of the image no longer named and the old root are gc's to delete.
    env.assert_converged_but_kept();
    let plan = env.pt(&["plan"]).stdout;
    assert_contains(&plan, &format!("image store entry {}", &img.xz_sha[..12]));
    assert_contains(
        &plan,
        "old root of client raspi1, moved aside by reprovision",
    );
    let nfs: Vec<String> = std::fs::read_dir(env.path("/nfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let old = nfs
        .iter()
        .find(|n| n.starts_with(".raspi1.pinetboot-old-"))
        .unwrap_or_else(|| panic!("{nfs:?}"));
    assert_eq!(env.read(&format!("/nfs/{old}/home/pi/notes.txt")), "mine\n");
    assert!(!env.path("/nfs/raspi1/home/pi/notes.txt").exists());
    check_client_root(&env, "raspi1");
    assert_eq!(
        state_json(&env)["clients"]["raspi1"]["image_sha256"],
        img.gz_sha.as_str()
    );
    // The boot folder is served from the new root.
    assert_eq!(
        env.ns.dev_ino(&env.path("/tftpboot/10000001")),
        env.ns.dev_ino(&env.path("/nfs/raspi1/boot/firmware"))
    );
    // gc on a real store: the unpacked entry of the image no longer named goes, with the old
    // root; the entry in use and the new root stay.
    let r = env.pt(&["gc", "--yes"]);
    r.expect_code(0);
    assert_eq!(store_listing(&env), vec![img.gz_sha.clone()]);
    assert!(!env.path(&format!("/nfs/{old}")).exists());
    check_client_root(&env, "raspi1");
    env.assert_converged();
}

#[test]
fn client_roots_are_reflinked_from_the_store_on_btrfs() {
    let img = images();
    let env = Env::new();
    // The throwaway root itself becomes a btrfs filesystem (made in a file, loop-mounted in
    // the test's private mount namespace): /var/lib/pinetboot and /nfs on one mount, as FICLONE
    // needs.
    let fsimg = env.tmp.path().join("btrfs.img");
    std::fs::File::create(&fsimg)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    run(Command::new("mkfs.btrfs").args(["-q", "-f"]).arg(&fsimg));
    let stage = env.tmp.path().join("btrfs-stage");
    std::fs::create_dir(&stage).unwrap();
    env.ns.sh(&format!(
        "mount -o loop {img} {stage} && cp -a {root}/. {stage}/ && umount {stage} && mount -o loop {img} {root} && mkdir -p {root}/srv/images && cp {xz} {root}/srv/images/bookworm.img.xz",
        img = fsimg.display(),
        stage = stage.display(),
        root = env.root.display(),
        xz = img.xz.display()
    ));
    assert_eq!(
        env.ns
            .sh(&format!("stat -f -c %T {}", env.root.display()))
            .trim(),
        "btrfs"
    );
    write_config(
        &env,
        &config(
            &[("bookworm", "/srv/images/bookworm.img.xz", &img.xz_sha)],
            &[
                ("raspi1", "10000001", "bookworm"),
                ("raspi2", "10000002", "bookworm"),
            ],
        ),
    );
    let r = env.pt(&["apply"]);
    r.expect_code(0);
    for client in ["raspi1", "raspi2"] {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("+ client root /nfs/{client} (copied")))
            .unwrap_or_else(|| panic!("{}", r.stdout));
        let reflinked: u64 = line
            .rsplit_once(", ")
            .and_then(|(_, t)| t.strip_suffix(" reflinked)"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(reflinked > 10, "{line}");
    }
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(0);
    // Inside the namespace: the clone's content is the store's.
    env.ns.sh(&format!(
        "cmp {root}/nfs/raspi2/usr/bin/sudo {root}/var/lib/pinetboot/images/{sha}/root/usr/bin/sudo && test \"$(stat -c %a {root}/nfs/raspi2/usr/bin/sudo)\" = 4755",
        root = env.root.display(),
        sha = img.xz_sha
    ));
    // The loop mount goes with the namespace when `env` is dropped.
}

/// An apply killed (SIGKILL, by pid) in the middle of an unpack, and another in the middle of
/// a clone, leave their staging folders (of 104 MiB apparent size here, 21 GB on a real
/// host). Once the config no longer names that image or client, plan shows them (text and
/// JSON, with their apparent size) and apply removes them: the unpack's before any image is
/// fetched, the clone's with the other changes. A download no client uses goes the same way.
#[test]
fn staging_folders_of_killed_applies_are_shown_and_removed_once_the_config_changed() {
    let img = images();
    let env = with_image_files(true);
    let json_change = |stdout: &str, path: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(stdout).unwrap();
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == path)
            .unwrap_or_else(|| panic!("no change of {path}: {stdout}"))
            .clone()
    };

    // 1. Killed while the xz image is being unpacked.
    write_config(
        &env,
        &config(
            &[("bookworm", "/srv/images/bookworm.img.xz", &img.xz_sha)],
            &[("raspi1", "10000001", "bookworm")],
        ),
    );
    Paused::start(&env, "unpack", &[], &["apply"]).kill();
    let unpack = format!("/var/lib/pinetboot/images/.{}.staging", img.xz_sha);
    assert!(
        env.path(&unpack).join("root").is_dir(),
        "{:?}",
        store_listing(&env)
    );
    assert_eq!(
        store_listing(&env),
        vec![format!(".{}.staging", img.xz_sha)]
    );

    // 2. raspi1 moves to the gzip image: the xz unpack's staging folder is a leftover.
    let gz_config = |client: &str, serial: &str| {
        config(
            &[("bookworm", "/srv/images/bookworm.img.gz", &img.gz_sha)],
            &[(client, serial, "bookworm")],
        )
    };
    write_config(&env, &gz_config("raspi1", "10000001"));
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    let first = plan.stdout.lines().find(|l| l.starts_with("  ")).unwrap();
    assert!(
        first.starts_with(&format!(
            "  - staging folder {unpack} (an interrupted unpack of image sha256 {}…; ",
            &img.xz_sha[..12]
        )),
        "{}",
        plan.stdout
    );
    let json = env.pt(&["plan", "--json"]);
    json.expect_code(0);
    let c = json_change(&json.stdout, &unpack);
    assert_eq!(
        (c["action"].as_str(), c["kind"].as_str()),
        (Some("remove"), Some("staging folder"))
    );
    let bytes = c["bytes"].as_u64().unwrap();
    assert!(bytes > 0, "{c}");
    assert!(
        first.contains(&pinetboot::progress::human_bytes(bytes)),
        "{first} / {bytes}"
    );

    // 3. Killed while raspi1 is being cloned from the gzip image; the xz leftover went first.
    Paused::start(&env, "clone", &[], &["apply"]).kill();
    assert_eq!(store_listing(&env), vec![img.gz_sha.clone()]);
    let clone = "/nfs/.raspi1.pinetboot-staging";
    let copied = std::fs::read_dir(env.path(clone)).unwrap().count();
    assert!(copied > 0, "the clone had begun");
    assert!(!env.path("/nfs/raspi1").exists());

    // 4. raspi1 leaves the config (raspi2 comes): its clone's staging folder is a leftover; so
    // is a download of the xz image, which no client uses any more.
    write_config(&env, &gz_config("raspi2", "10000002"));
    let download = format!("/var/lib/pinetboot/images/{}.download", img.xz_sha);
    std::fs::write(env.path(&download), vec![0u8; 4096]).unwrap();
    let plan = env.pt(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    let lines: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.starts_with("  - "))
        .collect();
    assert!(
        lines[0].starts_with(&format!(
            "  - staging folder {clone} (an interrupted clone of client raspi1's root; raspi1 is no longer declared; "
        )),
        "{}",
        plan.stdout
    );
    assert_eq!(
        lines[1],
        format!(
            "  - download {download} (a download of image sha256 {}…, which no client uses any more; 4.0 KiB)",
            &img.xz_sha[..12]
        )
    );
    let json = env.pt(&["plan", "--json"]);
    let c = json_change(&json.stdout, clone);
    assert!(c["bytes"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(json_change(&json.stdout, &download)["bytes"], 4096);
    let r = env.apply_ok();
    assert_contains(&r.stdout, &format!("- staging folder {clone}\n"));
    assert_contains(&r.stdout, &format!("- download {download}\n"));
    assert!(!env.path(clone).exists() && !env.path(&download).exists());
    assert_eq!(store_listing(&env), vec![img.gz_sha.clone()]);
    check_client_root(&env, "raspi2");
    env.assert_converged();
}

/// Runs `pinetboot --root R --config C apply` in the namespace and returns its output and
/// its peak resident set size in KiB (from `wait4`, which counts the waited-for
/// descendants: `timeout`, `nsenter` and pinetboot).
#[allow(clippy::zombie_processes)]
// reaped by `wait4` below, for its resource usage
// wait4 (the child's own peak RSS) has no safe wrapper in std.
#[allow(unsafe_code)]
fn apply_measured(env: &Env) -> (String, Option<i32>, u64) {
    use std::io::Read;
    let args = [
        "--root".to_string(),
        env.root.to_string_lossy().into_owned(),
        "--config".into(),
        env.config.to_string_lossy().into_owned(),
        "apply".into(),
    ];
    let mut child = env
        .ns
        .command(120, bin(), &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running pinetboot apply");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let mut text = String::new();
    err.read_to_string(&mut text).unwrap();
    text.push_str(&reader.join().unwrap());
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid, and the pid is our own child, not waited for yet.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: `status` and `usage` are valid for writes; `pid` is our own unreaped child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (text, code, usage.ru_maxrss as u64)
}

/// Item 8 of issue 13: a 45 KiB `.img.xz` of one block whose header claims a 4 GiB
/// dictionary, with 300 MiB of zeros behind it. With a wrong sha256 nothing is decoded
/// (before, a single-block file was decoded before its digest was compared, and the
/// dictionary filled as it went: RSS grew with the data); with its right sha256 the claim
/// is refused with what it claims and the cap, before any block is decoded.
#[test]
fn a_dictionary_bomb_is_never_decoded() {
    // Alone: pinetboot's peak RSS is measured through wait4.
    if !in_own_process("image_store::a_dictionary_bomb_is_never_decoded") {
        return;
    }
    let env = Env::new();
    let dir = env.path("/srv/images");
    std::fs::create_dir_all(&dir).unwrap();
    let bomb = dir.join("bomb.img.xz");
    run(Command::new("sh").arg("-c").arg(format!(
        "head -c 300M /dev/zero | xz -T1 -0 > {}",
        bomb.display()
    )));
    let mut f = std::fs::read(&bomb).unwrap();
    // Block header after the 12-byte stream header: size, flags 0 (one filter, no sizes),
    // LZMA2 (0x21), one byte of properties: the dictionary size; then padding and CRC32.
    assert_eq!(&f[13..16], &[0x00, 0x21, 0x01], "unexpected block header");
    f[16] = 40; // 4 GiB - 1
    let hlen = (usize::from(f[12]) + 1) * 4;
    let crc = crc32fast::hash(&f[12..12 + hlen - 4]);
    f[12 + hlen - 4..12 + hlen].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&bomb, &f).unwrap();
    assert!(f.len() < 100 << 10, "{} bytes", f.len());
    let good = sha256_file(&bomb);
    let wrong = "0123456789abcdef".repeat(4);
    for (sha, expect) in [
        (&wrong, format!("bomb.img.xz: expected {wrong}, got {good}")),
        (
            &good,
            "declares a 4.0 GiB LZMA2 dictionary for 300 MiB of data: decoding it needs 302 MiB, more than the 256 MiB pinetboot allows one decoder".to_string(),
        ),
    ] {
        write_config(
            &env,
            &config(
                &[("bomb", "/srv/images/bomb.img.xz", sha)],
                &[("raspi1", "10000001", "bomb")],
            ),
        );
        let (out, code, maxrss_kib) = apply_measured(&env);
        eprintln!("sha256 {sha}: peak RSS {} MiB", maxrss_kib >> 10);
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&expect), "{out}");
        assert!(
            maxrss_kib < 100 << 10,
            "peak RSS {} MiB with sha256 {sha}:\n{out}",
            maxrss_kib >> 10
        );
        assert_eq!(store_listing(&env), Vec::<String>::new());
        assert!(!env.path("/nfs/raspi1").exists());
    }
}
