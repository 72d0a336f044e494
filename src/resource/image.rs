//! An OS disk image in the store: fetched (downloaded, resumably, or read from a local file),
//! verified by sha256 and unpacked once into `<state>/images/<sha256>/`. Applied before any
//! client root, which are cloned from the store (see `engine::apply`).

use super::{Action, Change, ChangeKind, Ctx};
use crate::host::ops;
use crate::image::store::{self, Origin};
use crate::progress::{Progress, human_bytes};

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

    pub(super) fn check(&self, ctx: &Ctx) -> anyhow::Result<Option<Change>> {
        if store::is_present(&ctx.host, &self.state_dir, &self.sha256) {
            return Ok(None);
        }
        let what = match &self.origin {
            Origin::File(p) => match ctx.host.size(p) {
                Some(s) => format!("unpack {p} ({})", human_bytes(s)),
                None => format!("unpack {p}"),
            },
            Origin::Url(url) => {
                let images = ctx.host.path(store::images_dir(&self.state_dir));
                if ops::is_file_at(&crate::image::fetch::complete_path(&images, &self.sha256)) {
                    format!("unpack the finished download of {url}")
                } else {
                    let have =
                        ops::size_at(&crate::image::fetch::partial_path(&images, &self.sha256))
                            .unwrap_or(0);
                    match crate::image::fetch::remote_size(url) {
                        Some(total) if have > 0 && have < total => format!(
                            "download {} more of {} from {url} (resuming)",
                            human_bytes(total - have),
                            human_bytes(total)
                        ),
                        Some(total) => format!("download {} from {url}", human_bytes(total)),
                        None => format!("download from {url}"),
                    }
                }
            }
        };
        Ok(Some(
            Change::new(Action::Create, ChangeKind::Image, &self.name)
                .detail(format!("{what}, sha256 {}", self.short_sha())),
        ))
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
