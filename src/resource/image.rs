//! An OS disk image in the store: fetched (downloaded, resumably, or read from a local file),
//! verified by sha256 and unpacked once into `<state>/images/<sha256>/`. Applied before any
//! client root, which are cloned from the store (see `engine::apply`).

use super::{Action, Change, ChangeKind, Ctx};
use crate::host::ops;
use crate::image::store::{self, Origin};
use crate::progress::{Progress, human_bytes};

/// Where an image stands on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Unpacked into the store.
    InStore,
    /// A local file (its size, when it is there).
    File { size: Option<u64> },
    /// Downloaded whole, not unpacked.
    Downloaded,
    /// Bytes of a partial download, and the size the server says (if it says).
    Remote { have: u64, total: Option<u64> },
}

/// An image that must be in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image's name in the config.
    pub name: String,
    /// Lower-case sha256 of the image file.
    pub sha256: String,
    /// Where it comes from.
    pub origin: Origin,
    /// `paths.state` (host path).
    pub state_dir: String,
    /// The clients provisioned from it (a failure makes them conflicts).
    pub clients: Vec<String>,
    /// Download limits (`downloads:`), for a URL.
    pub limits: crate::image::fetch::Limits,
}

impl Image {
    /// Host path of the store entry.
    pub fn entry(&self) -> String {
        store::entry_dir(&self.state_dir, &self.sha256)
    }

    /// Host path of the unpacked tree.
    pub fn root(&self) -> String {
        store::root_dir(&self.state_dir, &self.sha256)
    }

    fn short_sha(&self) -> String {
        format!("{}…", &self.sha256[..12.min(self.sha256.len())])
    }

    /// Where the image stands on the host.
    fn observe(&self, ctx: &Ctx) -> Seen {
        if store::is_present(&ctx.host, &self.state_dir, &self.sha256) {
            return Seen::InStore;
        }
        match &self.origin {
            Origin::File(p) => Seen::File {
                size: ctx.host.size(p),
            },
            Origin::Url(url) => {
                let images = ctx.host.path(store::images_dir(&self.state_dir));
                if ops::is_file_at(&crate::image::fetch::complete_path(&images, &self.sha256)) {
                    Seen::Downloaded
                } else {
                    Seen::Remote {
                        have: ops::size_at(&crate::image::fetch::partial_path(
                            &images,
                            &self.sha256,
                        ))
                        .unwrap_or(0),
                        total: crate::image::fetch::remote_size(url),
                    }
                }
            }
        }
    }

    /// The change from where the image stands (pure).
    fn decide(&self, seen: Seen) -> Option<Change> {
        let what = match (seen, &self.origin) {
            (Seen::InStore, _) => return None,
            (_, Origin::File(p)) => match seen {
                Seen::File { size: Some(s) } => format!("unpack {p} ({})", human_bytes(s)),
                _ => format!("unpack {p}"),
            },
            (Seen::Downloaded, Origin::Url(url)) => {
                format!("unpack the finished download of {url}")
            }
            (seen, Origin::Url(url)) => match seen {
                Seen::Remote {
                    have,
                    total: Some(total),
                } if have > 0 && have < total => format!(
                    "download {} more of {} from {url} (resuming)",
                    human_bytes(total - have),
                    human_bytes(total)
                ),
                Seen::Remote {
                    total: Some(total), ..
                } => format!("download {} from {url}", human_bytes(total)),
                _ => format!("download from {url}"),
            },
        };
        Some(
            Change::new(Action::Create, ChangeKind::Image, &self.name)
                .detail(format!("{what}, sha256 {}", self.short_sha())),
        )
    }

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        Ok(self.decide(self.observe(ctx)))
    }

    pub(super) fn apply(&self, ctx: &Ctx) -> anyhow::Result<()> {
        if let Origin::File(p) = &self.origin {
            // A fifo there would block the unpack forever, a device would be read without end.
            crate::host::bounded::open_regular(&ctx.host.path(p)).map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "image {} ({})",
                    self.name,
                    self.origin.describe()
                ))
            })?;
        }
        let progress = Progress::new(&format!("image {}", self.name));
        let started = std::time::Instant::now();
        let m = store::ensure(
            &ctx.host,
            &self.state_dir,
            &self.sha256,
            &self.origin,
            &self.limits,
            &progress,
        )
        .map_err(|e| e.context(format!("image {} ({})", self.name, self.origin.describe())))?;
        tracing::info!(
            image = %self.name,
            sha256 = %self.sha256,
            files = m.files,
            bytes = m.tree_bytes,
            release = m.pretty_name.as_deref().unwrap_or("?"),
            seconds = started.elapsed().as_secs_f64(),
            "image unpacked into the store"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(origin: Origin) -> Image {
        Image {
            name: "os".into(),
            sha256: "ab".repeat(32),
            origin,
            state_dir: "/var/lib/pinetboot".into(),
            clients: vec!["pi".into()],
            limits: crate::image::fetch::Limits::default(),
        }
    }

    #[test]
    fn an_image_not_in_the_store_says_what_fetching_it_takes() {
        let url = image(Origin::Url("https://x/os.img.xz".into()));
        assert!(url.decide(Seen::InStore).is_none());
        let detail = |i: &Image, s| i.decide(s).unwrap().detail.unwrap();
        assert_eq!(
            detail(
                &url,
                Seen::Remote {
                    have: 512,
                    total: Some(2048)
                }
            ),
            "download 1.5 KiB more of 2.0 KiB from https://x/os.img.xz (resuming), sha256 abababababab…"
        );
        assert!(
            detail(
                &url,
                Seen::Remote {
                    have: 0,
                    total: None
                }
            )
            .starts_with("download from")
        );
        assert!(detail(&url, Seen::Downloaded).starts_with("unpack the finished download"));
        let file = image(Origin::File("/srv/os.img.xz".into()));
        assert!(
            detail(&file, Seen::File { size: None }).starts_with("unpack /srv/os.img.xz, sha256")
        );
    }
}
