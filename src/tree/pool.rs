//! [`DataPool`]: threads that copy regular files' data (and then apply their
//! metadata) while the tree walk goes on creating entries.
//!
//! Copying file data is memory-bandwidth work done in the kernel
//! (`copy_file_range`); one walker thread leaves the other cores idle while
//! it copies a large file. A [`super::TreeWriter`] with a pool creates each
//! large file itself (so names, order and confinement are unchanged) and
//! hands the open descriptor to a worker, which copies the data, sets the
//! size, starts writeback, then applies owner, mode, xattrs and times — the
//! same order as the inline path. The queue is bounded, so memory and open
//! descriptors stay bounded.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::writer::{apply_meta, fill_data};
use super::{Meta, Result, TreeError};
use crate::ioerr::IoError;

/// Where a file's data comes from.
pub(crate) enum Source {
    /// Every data segment of this file (holes kept), at the same offsets.
    Whole(OwnedFd),
    /// `(source offset, file offset, length)` runs of this file; the file is
    /// `size` bytes, holes elsewhere.
    Runs {
        src: OwnedFd,
        runs: Vec<(u64, u64, u64)>,
        size: u64,
    },
}

/// One file to fill: its new descriptor, its path (for errors) and metadata.
pub(crate) struct Job {
    pub(crate) fd: OwnedFd,
    pub(crate) full: PathBuf,
    pub(crate) meta: Meta,
    pub(crate) source: Source,
}

/// A bounded queue of [`Job`]s served by worker threads.
pub(crate) struct DataPool {
    tx: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    error: Arc<Mutex<Option<TreeError>>>,
}

fn run(job: Job) -> Result<()> {
    let Job {
        fd,
        full,
        meta,
        source,
    } = job;
    match &source {
        Source::Whole(src) => fill_data(src.as_fd(), fd.as_fd(), None, &full)?,
        Source::Runs { src, runs, size } => {
            fill_data(src.as_fd(), fd.as_fd(), Some((runs, *size)), &full)?
        }
    };
    apply_meta(fd.as_fd(), &meta, &full)
}

impl DataPool {
    /// A pool of `threads` workers (at least one); `None` if no thread
    /// could be started.
    pub(crate) fn new(threads: usize) -> Option<Self> {
        let (tx, rx) = sync_channel::<Job>(64);
        let rx = Arc::new(Mutex::new(rx));
        let error: Arc<Mutex<Option<TreeError>>> = Arc::default();
        let workers = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let error = error.clone();
                let name = format!("copy-{i}");
                std::thread::Builder::new().name(name).spawn(move || {
                    loop {
                        let Ok(Ok(job)) = rx.lock().map(|r| r.recv()) else {
                            return;
                        };
                        // After a failure the rest is drained, not written.
                        if error.lock().map(|e| e.is_some()).unwrap_or(true) {
                            continue;
                        }
                        if let Err(e) = run(job)
                            && let Ok(mut slot) = error.lock()
                        {
                            slot.get_or_insert(e);
                        }
                    }
                })
            })
            .filter_map(|spawned| {
                spawned
                    .inspect_err(|e| tracing::debug!(error = %e, "cannot start a copy thread"))
                    .ok()
            })
            .collect::<Vec<_>>();
        (!workers.is_empty()).then_some(DataPool {
            tx: Some(tx),
            workers,
            error,
        })
    }

    /// The first error of a worker, if any (taken: reported once).
    fn take_error(&self) -> Option<TreeError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Queues a job (waits while the queue is full). Fails with a worker's
    /// earlier error, if one happened.
    pub(crate) fn submit(&self, job: Job) -> Result<()> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        let tx = self.tx.as_ref().expect("pool is open until joined");
        tx.send(job).map_err(|_| {
            TreeError::Io(IoError::new(
                "hand over to a copy thread",
                PathBuf::new(),
                std::io::Error::other("copy thread ended"),
            ))
        })
    }

    /// Waits for every queued job; the first error of any.
    pub(crate) fn join(mut self) -> Result<()> {
        self.close();
        match self.take_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn close(&mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for DataPool {
    /// Never leaves a thread writing into a tree its owner is removing.
    fn drop(&mut self) {
        self.close();
    }
}
