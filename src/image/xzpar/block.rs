//! Decoding blocks: one raw liblzma decoder per block on a worker thread,
//! its output written at the block's offset in the sparse destination file,
//! its size and integrity check verified; readers wait for the range they need.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream};

use super::container::*;

/// Size of the input and output buffers of each worker.
pub(super) const BUF_SIZE: usize = 1 << 20;
/// Alignment of output writes, so that zero blocks become holes.
pub(super) const SPARSE_ALIGN: u64 = 4096;
/// Progress is reported about this often (compressed bytes).
pub(super) const PROGRESS_STEP: u64 = 16 << 20;

/// The integrity check of one block's output, computed as it is produced.
pub(super) enum Integrity {
    None,
    Crc32(crc32fast::Hasher),
    Crc64(crc64fast::Digest),
    Sha256(Box<sha2::Sha256>),
}

impl Integrity {
    fn new(check: u8) -> Self {
        use sha2::Digest;
        match check {
            1 => Integrity::Crc32(crc32fast::Hasher::new()),
            4 => Integrity::Crc64(crc64fast::Digest::new()),
            10 => Integrity::Sha256(Box::new(sha2::Sha256::new())),
            _ => Integrity::None,
        }
    }

    fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            Integrity::None => {}
            Integrity::Crc32(h) => h.update(data),
            Integrity::Crc64(h) => h.write(data),
            Integrity::Sha256(h) => h.update(data),
        }
    }

    /// The check field as stored in the file; `None` when not verified.
    fn field(self) -> Option<Vec<u8>> {
        use sha2::Digest;
        match self {
            Integrity::None => None,
            Integrity::Crc32(h) => Some(h.finalize().to_le_bytes().to_vec()),
            Integrity::Crc64(h) => Some(h.sum64().to_le_bytes().to_vec()),
            Integrity::Sha256(h) => Some(h.finalize().to_vec()),
        }
    }
}

/// liblzma's filter chain for a block (LZMA2 with [`Block::effective_dict`]).
pub(super) fn build_filters(block: &Block) -> Result<Filters, String> {
    let mut filters = Filters::new();
    for f in &block.filters {
        let props = f.props.as_slice();
        let r = match f.id {
            FILTER_DELTA => filters.delta_properties(props),
            FILTER_X86 => filters.x86_properties(props),
            FILTER_POWERPC => filters.powerpc_properties(props),
            FILTER_IA64 => filters.ia64_properties(props),
            FILTER_ARM => filters.arm_properties(props),
            FILTER_ARMTHUMB => filters.arm_thumb_properties(props),
            FILTER_SPARC => filters.sparc_properties(props),
            FILTER_ARM64 => filters.arm64_properties(props),
            FILTER_RISCV => filters.riscv_properties(props),
            FILTER_LZMA2 => {
                // Only the dictionary size matters to the LZMA2 decoder
                // (lc/lp/pb come from the chunk headers).
                let mut opts =
                    LzmaOptions::new_preset(0).map_err(|e| format!("LZMA2 options: {e}"))?;
                opts.dict_size(block.effective_dict() as u32);
                Ok(filters.lzma2(&opts))
            }
            id => return Err(format!("unsupported filter {id:#x}")),
        };
        r.map_err(|e| {
            format!(
                "invalid properties {props:02x?} for filter {:#x}: {e}",
                f.id
            )
        })?;
    }
    Ok(filters)
}

/// Mutable state shared by the workers and the waiters.
struct State {
    done: Vec<bool>,
    error: Option<String>,
    running: usize,
}

/// What the workers share.
struct Shared {
    layout: XzLayout,
    src: File,
    out: File,
    next: AtomicUsize,
    cancel: AtomicBool,
    consumed: AtomicU64,
    /// Last value passed to `progress` (reports are serialized).
    reported: Mutex<u64>,
    progress: Box<dyn Fn(u64) + Send + Sync>,
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the first error, cancels the other workers and wakes waiters.
    fn fail(&self, msg: String) {
        let mut st = self.lock();
        if st.error.is_none() {
            st.error = Some(msg);
        }
        self.cancel.store(true, Ordering::SeqCst);
        self.cond.notify_all();
    }

    /// Adds consumed compressed bytes; reports progress on every
    /// [`PROGRESS_STEP`] crossed, or always if `force`.
    fn add_consumed(&self, n: u64, force: bool) {
        let now = self.consumed.fetch_add(n, Ordering::Relaxed) + n;
        if force || (now - n) / PROGRESS_STEP != now / PROGRESS_STEP {
            let mut last = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
            let now = self.consumed.load(Ordering::Relaxed);
            if now > *last {
                *last = now;
                (self.progress)(now);
            }
        }
    }
}

/// Decrements the running count when a worker ends (also on panic).
struct WorkerGuard<'a>(&'a Shared);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("xz decoder thread panicked".into());
        }
        let mut st = self.0.lock();
        st.running -= 1;
        self.0.cond.notify_all();
    }
}

/// A block-parallel decode in progress. See the module documentation.
pub(crate) struct ParDecode {
    shared: Arc<Shared>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
}

/// Why a block was not decoded.
enum BlockError {
    Cancelled,
    Failed(String),
}

impl ParDecode {
    /// Truncates `out` and sizes it to the decoded size (zero regions are
    /// never written, they stay holes) and starts `threads` workers, fewer if
    /// `workers * (dictionary + 2 MiB)` would exceed `mem_budget` (at least
    /// one) and never more than there are blocks. Workers take blocks in file
    /// order. `progress` is called with the compressed bytes consumed so far
    /// (block headers, data, padding and checks; summed over the workers),
    /// about every 16 MiB and when a block is done; the values increase.
    pub(crate) fn start(
        src: File,
        layout: XzLayout,
        out: File,
        threads: usize,
        mem_budget: u64,
        progress: Box<dyn Fn(u64) + Send + Sync>,
    ) -> Arc<Self> {
        let by_mem = (mem_budget / layout.worker_mem()).max(1);
        let workers = threads
            .max(1)
            .min(usize::try_from(by_mem).unwrap_or(usize::MAX))
            .min(layout.blocks.len());
        let size = layout.uncompressed_size;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                done: vec![false; layout.blocks.len()],
                error: None,
                running: 0,
            }),
            layout,
            src,
            out,
            next: AtomicUsize::new(0),
            cancel: AtomicBool::new(false),
            consumed: AtomicU64::new(0),
            reported: Mutex::new(0),
            progress,
            cond: Condvar::new(),
        });
        let mut handles = Vec::new();
        if let Err(e) = shared
            .out
            .set_len(0)
            .and_then(|()| shared.out.set_len(size))
        {
            shared.fail(format!("sizing the decoded image to {size} bytes: {e}"));
        } else {
            for i in 0..workers {
                shared.lock().running += 1;
                let sh = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name(format!("xz-block-{i}"))
                    .spawn(move || worker(&sh));
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        shared.lock().running -= 1;
                        if handles.is_empty() {
                            shared.fail(format!("starting an xz decoder thread: {e}"));
                        }
                        break;
                    }
                }
            }
        }
        let workers = handles.len();
        Arc::new(ParDecode {
            shared,
            handles: Mutex::new(handles),
            workers,
        })
    }

    /// Number of worker threads started.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Blocks until `out[start..start + len)` is fully decoded. `Err` at once
    /// if a worker failed, the decode was cancelled or the range is past the
    /// end.
    pub(crate) fn wait_range(&self, start: u64, len: u64) -> Result<(), String> {
        let blocks = &self.shared.layout.blocks;
        let size = self.shared.layout.uncompressed_size;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                format!("range of {len} bytes at {start} is past the end of the {size}-byte image")
            })?;
        let first =
            blocks.partition_point(|b| b.uncompressed_offset + b.uncompressed_size <= start);
        let last = blocks.partition_point(|b| b.uncompressed_offset < end);
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = &st.error {
                return Err(e.clone());
            }
            if first >= last || st.done[first..last].iter().all(|&d| d) {
                return Ok(());
            }
            if self.shared.cancel.load(Ordering::SeqCst) || st.running == 0 {
                return Err("xz decoding was cancelled".into());
            }
            st = self
                .shared
                .cond
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits for all workers to end; the decoded size, or the first error.
    pub(crate) fn finish(&self) -> Result<u64, String> {
        let handles =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(PoisonError::into_inner));
        for h in handles {
            // A panic has been recorded by the worker's guard.
            let _ = h.join();
        }
        let st = self.shared.lock();
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        if st.done.iter().all(|&d| d) {
            Ok(self.shared.layout.uncompressed_size)
        } else {
            Err("xz decoding was cancelled".into())
        }
    }

    /// True while a worker is still decoding.
    pub(crate) fn active(&self) -> bool {
        self.shared.lock().running > 0
    }

    /// The error that stopped the decoding, if one did (not a cancel).
    pub(crate) fn failure(&self) -> Option<String> {
        self.shared.lock().error.clone()
    }

    /// Asks the workers to stop after their current chunk and wakes waiters.
    pub(crate) fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        let _st = self.shared.lock();
        self.shared.cond.notify_all();
    }
}

impl Drop for ParDecode {
    fn drop(&mut self) {
        self.cancel();
        let handles = std::mem::take(
            self.handles
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for h in handles {
            let _ = h.join();
        }
    }
}

/// A worker: decodes blocks until there are none left, an error or cancel.
fn worker(sh: &Shared) {
    let _guard = WorkerGuard(sh);
    let mut inbuf = vec![0u8; BUF_SIZE];
    let mut outbuf = vec![0u8; BUF_SIZE];
    while !sh.cancel.load(Ordering::SeqCst) {
        let i = sh.next.fetch_add(1, Ordering::SeqCst);
        let Some(block) = sh.layout.blocks.get(i) else {
            break;
        };
        match decode_block(sh, block, &mut inbuf, &mut outbuf) {
            Ok(()) => {
                let mut st = sh.lock();
                st.done[i] = true;
                sh.cond.notify_all();
                drop(st);
                sh.add_consumed(block.padding + block.check_size, true);
            }
            Err(BlockError::Cancelled) => break,
            Err(BlockError::Failed(e)) => {
                sh.fail(format!(
                    "xz block {i} (at byte {} of the file): {e}",
                    block.offset
                ));
                break;
            }
        }
    }
}

/// Decodes one block into its range of the output.
fn decode_block(
    sh: &Shared,
    block: &Block,
    inbuf: &mut [u8],
    outbuf: &mut [u8],
) -> Result<(), BlockError> {
    use BlockError::{Cancelled, Failed};
    let filters = build_filters(block).map_err(Failed)?;
    let mut stream = Stream::new_raw_decoder(&filters)
        .map_err(|e| Failed(format!("creating the raw decoder: {e}")))?;
    sh.add_consumed(block.header_size, false);

    let data_at = block.data_offset();
    let data_end = data_at + block.data_size;
    let mut read_pos = data_at; // next byte to read from the file
    let (mut in_start, mut in_len) = (0usize, 0usize);
    let out_end = block.uncompressed_offset + block.uncompressed_size;
    let mut out_off = block.uncompressed_offset; // file offset of outbuf[0]
    let mut fill = 0usize;

    let mut integrity = Integrity::new(block.check);
    let flush = |buf: &[u8], off: u64| -> Result<(), BlockError> {
        crate::tree::write_sparse_chunk(sh.out.as_fd(), buf, off)
            .map_err(|e| Failed(format!("writing decoded bytes at {off}: {e}")))
    };
    loop {
        if sh.cancel.load(Ordering::Relaxed) {
            return Err(Cancelled);
        }
        if in_start == in_len && read_pos < data_end {
            let n = (data_end - read_pos).min(inbuf.len() as u64) as usize;
            sh.src
                .read_exact_at(&mut inbuf[..n], read_pos)
                .map_err(|e| Failed(format!("reading compressed data at byte {read_pos}: {e}")))?;
            read_pos += n as u64;
            in_start = 0;
            in_len = n;
            sh.add_consumed(n as u64, false);
        }
        // Keep writes 4 KiB-aligned in the file so zero blocks become holes.
        let cap = outbuf.len() - (out_off % SPARSE_ALIGN) as usize;
        if fill == cap {
            flush(&outbuf[..fill], out_off)?;
            out_off += fill as u64;
            fill = 0;
            continue;
        }
        // Room for one byte more than the block may still produce, to catch
        // a block that decodes to more than the index says.
        let remaining = out_end - out_off - fill as u64;
        let window = ((cap - fill) as u64).min(remaining + 1) as usize;
        let (in0, out0) = (stream.total_in(), stream.total_out());
        let status = stream
            .process(
                &inbuf[in_start..in_len],
                &mut outbuf[fill..fill + window],
                Action::Run,
            )
            .map_err(|e| {
                Failed(format!(
                    "{e} near compressed byte {} of the file",
                    data_at + stream.total_in()
                ))
            })?;
        let used = (stream.total_in() - in0) as usize;
        let produced = (stream.total_out() - out0) as usize;
        integrity.update(&outbuf[fill..fill + produced.min(window)]);
        in_start += used;
        fill += produced;
        if produced as u64 > remaining {
            return Err(Failed(format!(
                "decodes to more than the {} bytes the index records",
                block.uncompressed_size
            )));
        }
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::GetCheck | Status::MemNeeded => {
                if used == 0 && produced == 0 {
                    if in_start == in_len && read_pos == data_end {
                        return Err(Failed(format!(
                            "compressed data ends (after {} bytes) before the end of the LZMA2 data",
                            block.data_size
                        )));
                    }
                    return Err(Failed("the decoder makes no progress".into()));
                }
            }
        }
    }
    let consumed = stream.total_in();
    if consumed != block.data_size {
        return Err(Failed(format!(
            "the LZMA2 data ends after {consumed} of the block's {} compressed bytes",
            block.data_size
        )));
    }
    let produced = stream.total_out();
    if produced != block.uncompressed_size {
        return Err(Failed(format!(
            "decodes to {produced} bytes, the index records {}",
            block.uncompressed_size
        )));
    }
    flush(&outbuf[..fill], out_off)?;
    if block.padding > 0 {
        let mut pad = [0u8; 3];
        let pad = &mut pad[..block.padding as usize];
        sh.src
            .read_exact_at(pad, data_end)
            .map_err(|e| Failed(format!("reading block padding at byte {data_end}: {e}")))?;
        if pad.iter().any(|&b| b != 0) {
            return Err(Failed(format!("nonzero block padding at byte {data_end}")));
        }
    }
    if let Some(want) = integrity.field() {
        let at = data_end + block.padding;
        let mut stored = vec![0u8; want.len()];
        sh.src
            .read_exact_at(&mut stored, at)
            .map_err(|e| Failed(format!("reading the block's check at byte {at}: {e}")))?;
        if stored != want {
            return Err(Failed(format!(
                "the decoded data does not match the block's {} check (corrupt data)",
                match block.check {
                    1 => "CRC32",
                    4 => "CRC64",
                    _ => "SHA-256",
                }
            )));
        }
    }
    Ok(())
}
