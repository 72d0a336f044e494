//! Progress of long work (downloads, image unpacking): a bar on a terminal (bytes, rate, ETA),
//! plain lines otherwise (the journal), at most every ~5 s or every 10 %.
//!
//! Off with `--quiet`, and whenever `PINETBOOT_PROGRESS=0`. The plain lines go to the writer
//! the command layer names with [`set_output`] (stderr until it does).

use std::io::{IsTerminal as _, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

static QUIET: AtomicBool = AtomicBool::new(false);

/// A writer shared by every [`Progress`] of the process.
type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

static OUTPUT: Mutex<Option<Sink>> = Mutex::new(None);

/// Turns progress output off (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Sends the plain progress lines to `out` (the bar is drawn by `indicatif` on the terminal).
pub fn set_output(out: impl Write + Send + 'static) {
    *OUTPUT.lock().unwrap_or_else(PoisonError::into_inner) =
        Some(Arc::new(Mutex::new(Box::new(out))));
}

/// The writer plain lines go to.
fn output() -> Sink {
    OUTPUT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(|| Arc::new(Mutex::new(Box::new(std::io::stderr()))))
        .clone()
}

fn enabled() -> bool {
    !QUIET.load(Ordering::Relaxed) && std::env::var("PINETBOOT_PROGRESS").as_deref() != Ok("0")
}

/// How often plain lines are printed at most.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

struct Plain {
    phase: String,
    total: u64,
    last_at: Instant,
    last_tenth: u64,
    started: Instant,
    done: u64,
    out: Sink,
}

impl Plain {
    /// Writes one line (a closed stderr is not worth failing the work for).
    fn line(&self, text: std::fmt::Arguments<'_>) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// One unit of long work with phases (e.g. "downloading", "decompressing", "writing").
pub struct Progress {
    what: String,
    bar: Option<indicatif::ProgressBar>,
    plain: Option<Mutex<Plain>>,
}

/// `1.5 GiB`, `432 MiB`, `12 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Progress {
    /// Starts reporting `what` (e.g. `image bookworm`).
    pub fn new(what: &str) -> Self {
        let (bar, plain) = if !enabled() {
            (None, None)
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} {msg:>14} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_owned());
            (Some(bar), None)
        } else {
            return Progress::plain(what, output());
        };
        Progress {
            what: what.to_owned(),
            bar,
            plain,
        }
    }

    /// Reports `what` as plain lines into `out`, whatever stderr is.
    fn plain(what: &str, out: Sink) -> Self {
        let now = Instant::now();
        Progress {
            what: what.to_owned(),
            bar: None,
            plain: Some(Mutex::new(Plain {
                phase: String::new(),
                total: 0,
                last_at: now,
                last_tenth: 0,
                started: now,
                done: 0,
                out,
            })),
        }
    }

    /// Reports `done` of `total` bytes in `phase`. A new phase (or total) restarts the count.
    pub fn update(&self, phase: &str, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            if bar.message() != phase || bar.length() != Some(total) {
                bar.set_message(phase.to_owned());
                bar.set_length(total);
                bar.reset();
            }
            bar.set_position(done.min(total));
        }
        if let Some(plain) = &self.plain {
            let mut p = plain.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if p.phase != phase || p.total != total {
                p.phase = phase.to_owned();
                p.total = total;
                p.last_tenth = 0;
                p.last_at = now;
                p.started = now;
                p.done = 0;
                p.line(format_args!("pinetboot: {}: {phase}…", self.what));
            }
            p.done = done;
            let tenth = (done.saturating_mul(10)).checked_div(total).unwrap_or(0);
            if tenth > p.last_tenth || now.duration_since(p.last_at) >= PLAIN_EVERY {
                p.last_tenth = tenth;
                p.last_at = now;
                let secs = now.duration_since(p.started).as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let pct = (done.saturating_mul(100)).checked_div(total).unwrap_or(0);
                let eta = if rate > 0.0 && total > done {
                    format!(", ETA {:.0} s", (total - done) as f64 / rate)
                } else {
                    String::new()
                };
                p.line(format_args!(
                    "pinetboot: {}: {phase} {} of {} ({pct}%), {}/s{eta}",
                    self.what,
                    human_bytes(done),
                    human_bytes(total),
                    human_bytes(rate as u64),
                ));
            }
        }
    }

    /// Ends the report (clears the bar; a last plain line when the phase was unfinished).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some(plain) = &self.plain {
            let p = plain.lock().unwrap_or_else(|e| e.into_inner());
            let secs = p.started.elapsed().as_secs_f64();
            if !p.phase.is_empty() {
                p.line(format_args!(
                    "pinetboot: {}: {} done ({} in {secs:.1} s)",
                    self.what,
                    p.phase,
                    human_bytes(p.done)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(432 << 20), "432 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    /// A writer whose bytes the test can read afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_lines_go_to_the_writer() {
        let buf = Shared::default();
        let p = Progress::plain("image x", Arc::new(Mutex::new(Box::new(buf.clone()))));
        p.update("downloading", 0, 1000);
        p.update("downloading", 1000, 1000);
        p.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "pinetboot: image x: downloading…");
        assert!(
            lines[1].starts_with("pinetboot: image x: downloading 1000 B of 1000 B (100%), "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("pinetboot: image x: downloading done (1000 B in "),
            "{text}"
        );
    }
}
