//! A tiny HTTP/1.1 file server on 127.0.0.1 for image-download tests: GET and HEAD, `Range:
//! bytes=N-`, request counting, an optional cut of the connection mid-file, and hostile
//! servers: an endless body, a `Content-Length` it never sends, a body trickled byte by byte.
//! Each connection is served on a thread of its own (a trickle never holds up the next
//! request), then closed. The server stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path asked for.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Status answered.
    pub status: u16,
    /// Body bytes actually sent.
    pub sent: u64,
}

/// What a path serves.
#[derive(Debug, Clone)]
enum Route {
    /// A file (with Range support), its body sent one byte per `trickle` when set.
    File {
        path: PathBuf,
        trickle: Option<std::time::Duration>,
    },
    /// `200` without a length, then zeros until the client goes away (or `cap` bytes, so a
    /// client without a limit fails a test instead of filling the disk).
    Endless { cap: u64 },
    /// `200` announcing `length` bytes, then `sent` zeros and the end of the connection.
    Claim { length: u64, sent: u64 },
}

#[derive(Default)]
struct Shared {
    files: Mutex<HashMap<String, Route>>,
    seen: Mutex<Vec<Seen>>,
    /// Cut the next GET's body after this many bytes (0: never).
    cut_after: AtomicU64,
    stop: AtomicBool,
    /// Connections being served.
    active: AtomicU64,
}

/// The server.
pub struct HttpServer {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts serving on 127.0.0.1 (a free port).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let s = s.clone();
                    s.active.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || {
                        let _ = serve(&s, c);
                        s.active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        });
        HttpServer {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    fn route(&self, name: &str, route: Route) -> String {
        self.shared
            .files
            .lock()
            .unwrap()
            .insert(format!("/{name}"), route);
        format!("http://{}/{name}", self.addr)
    }

    /// Serves `file` at `/name`; returns its URL.
    pub fn add(&self, name: &str, file: PathBuf) -> String {
        self.route(
            name,
            Route::File {
                path: file,
                trickle: None,
            },
        )
    }

    /// Serves `file` at `/name`, one byte of its body every `every`; returns its URL.
    pub fn add_trickle(&self, name: &str, file: PathBuf, every: std::time::Duration) -> String {
        self.route(
            name,
            Route::File {
                path: file,
                trickle: Some(every),
            },
        )
    }

    /// Serves an endless body of zeros (no `Content-Length`; at most `cap` bytes) at `/name`.
    pub fn add_endless(&self, name: &str, cap: u64) -> String {
        self.route(name, Route::Endless { cap })
    }

    /// Serves `200` with `Content-Length: length`, then `sent` zeros and a closed connection.
    pub fn add_claim(&self, name: &str, length: u64, sent: u64) -> String {
        self.route(name, Route::Claim { length, sent })
    }

    /// Cuts the connection of the next GET after `bytes` of its body (once).
    pub fn cut_next_get_after(&self, bytes: u64) {
        self.shared.cut_after.store(bytes, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// GET requests so far, once every connection has been served to its end (a client that
    /// hung up is noticed at the server's next write). Panics after 30 s.
    pub fn settled_gets(&self) -> Vec<Seen> {
        let start = std::time::Instant::now();
        while self.shared.active.load(Ordering::SeqCst) > 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the test server still serves {} connections after 30 s",
                self.shared.active.load(Ordering::SeqCst)
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.gets()
    }

    /// GET requests so far.
    pub fn gets(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET")
            .collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.shared.seen.lock().unwrap().clear();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(s: &Shared, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    let mut out = stream;
    let route = s.files.lock().unwrap().get(&path).cloned();
    let record = |status, sent| {
        s.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
            status,
            sent,
        });
    };
    let (file, trickle) = match route {
        None => {
            record(404, 0);
            return out.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        Some(Route::File { path, trickle }) => (path, trickle),
        Some(Route::Endless { cap }) => {
            out.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let sent = if method == "HEAD" {
                0
            } else {
                zeros(s, &mut out, cap)
            };
            record(200, sent);
            return Ok(());
        }
        Some(Route::Claim { length, sent }) => {
            out.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )?;
            let sent = if method == "HEAD" {
                0
            } else {
                zeros(s, &mut out, sent)
            };
            record(200, sent);
            return Ok(());
        }
    };
    let mut f = std::fs::File::open(&file)?;
    let len = f.metadata()?.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok());
    let (status, from) = match start {
        Some(n) if n >= len => {
            record(416, 0);
            return out.write_all(
                format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
        }
        Some(n) => (206, n),
        None => (200, 0),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        },
        len - from
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {from}-{}/{len}\r\n",
            len - 1
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        record(status, 0);
        return Ok(());
    }
    let cut = s.cut_after.swap(0, Ordering::SeqCst);
    let limit = if cut > 0 {
        cut.min(len - from)
    } else {
        len - from
    };
    f.seek(SeekFrom::Start(from))?;
    let mut sent = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while sent < limit {
        if s.stop.load(Ordering::SeqCst) {
            break;
        }
        let chunk = if trickle.is_some() { 1 } else { buf.len() };
        let want = chunk.min((limit - sent) as usize);
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        if out.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if let Some(every) = trickle {
            let _ = out.flush();
            sleep_unless_stopped(s, every);
        }
    }
    record(status, sent);
    let _ = out.flush();
    // Dropping the stream closes it: a cut body ends short of Content-Length.
    Ok(())
}

/// Writes zeros until `cap` bytes, a write error (the client left) or the server stops.
fn zeros(s: &Shared, out: &mut TcpStream, cap: u64) -> u64 {
    let buf = vec![0u8; 1 << 16];
    let mut sent = 0u64;
    while sent < cap && !s.stop.load(Ordering::SeqCst) {
        let n = buf.len().min((cap - sent) as usize);
        if out.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    sent
}

/// Sleeps `d` in short steps, returning early when the server stops.
fn sleep_unless_stopped(s: &Shared, d: std::time::Duration) {
    let end = std::time::Instant::now() + d;
    while !s.stop.load(Ordering::SeqCst) {
        let now = std::time::Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(50)));
    }
}
