//! `images:`: names, sources (folder, image file or URL; a sha256 where one is needed), the
//! boot files an image overrides.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Checker;
use super::fields::*;
use super::valid::*;
use crate::config::model::Config;

/// Whether a source names a disk image file (by its name), rather than a directory tree.
pub(super) fn is_image_file_name(source: &str) -> bool {
    let name = source
        .rsplit('/')
        .next()
        .unwrap_or(source)
        .to_ascii_lowercase();
    [".img", ".xz", ".gz", ".zip"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

pub(super) fn check_images(c: &mut Checker<'_>, cfg: &Config) -> BTreeMap<String, ValidImage> {
    let mut out = BTreeMap::new();
    for (name, image) in &cfg.images {
        let base = format!("images.{name}");
        if let Err(why) = safe_name(name) {
            c.at_key(
                &base,
                format!("image name `{name}` {why}"),
                "image names are short identifiers such as bookworm-lite",
            );
        }
        let field = format!("{base}.source");
        let is_url = image.source.starts_with("http://") || image.source.starts_with("https://");
        let source = if is_url {
            let host = image.source.split("://").nth(1).unwrap_or_default();
            if host.is_empty()
                || host.starts_with('/')
                || image.source.chars().any(char::is_whitespace)
            {
                c.at_value(
                    &field,
                    format!("`{}` is not a usable URL", image.source),
                    "write the full http(s) URL of the image file",
                );
            }
            Source::Url(image.source.clone())
        } else if image.source.contains("://") {
            c.at_value(
                &field,
                format!(
                    "`{}`: only http:// and https:// URLs are supported",
                    image.source
                ),
                "download the image yourself and give its absolute path",
            );
            Source::Url(image.source.clone())
        } else {
            check_path(c, &field, &image.source);
            if is_image_file_name(&image.source) {
                Source::File(image.source.clone().into())
            } else {
                Source::Directory(image.source.clone().into())
            }
        };
        let needs_digest = !matches!(source, Source::Directory(_));
        let sha256 = match (&image.sha256, needs_digest) {
            (None, true) => {
                c.at_key(
                    &base,
                    format!("image `{name}` has no sha256"),
                    "add `sha256:` with the 64 hex digits published beside the image (its .sha256 file)",
                );
                None
            }
            (Some(_), false) => {
                c.at_value(
                    &format!("{base}.sha256"),
                    "a directory source has no sha256".into(),
                    "remove sha256, or point source at the image file (.img, .img.xz, .img.gz, .zip)",
                );
                None
            }
            (Some(d), true) => {
                if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some(d.to_ascii_lowercase())
                } else {
                    c.at_value(
                        &format!("{base}.sha256"),
                        format!("`{d}` is not a SHA-256 digest"),
                        "a SHA-256 is 64 hex digits, as in the image's .sha256 file",
                    );
                    None
                }
            }
            (None, false) => None,
        };
        let mut files = BTreeMap::new();
        for (rel, host) in &image.files {
            let f = format!("{base}.files.{rel}");
            if let Err(why) = safe_relative(rel) {
                c.at_key(
                    &f,
                    format!("`{rel}` {why}"),
                    "name a file inside the boot folder, e.g. start4.elf or overlays/foo.dtbo",
                );
            }
            check_path(c, &f, host);
            files.insert(rel.clone(), PathBuf::from(host));
        }
        out.insert(
            name.clone(),
            ValidImage {
                source,
                sha256,
                files,
            },
        );
    }
    out
}

pub(super) fn declared_images_hint(cfg: &Config) -> String {
    if cfg.images.is_empty() {
        "declare it under `images:` first".into()
    } else {
        let names: Vec<&str> = cfg.images.keys().map(String::as_str).collect();
        format!("declared images: {}", names.join(", "))
    }
}
