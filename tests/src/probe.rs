//! Small probes: an HTTP/1.1 GET, a process's peak RSS, a file's BLAKE3.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Status, headers and body of an HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header lines as sent (`Name: value`).
    pub headers: Vec<String>,
    /// The body (chunked transfer decoded).
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`; no dependency, 30 s timeouts.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse> {
    let timeout = Duration::from_secs(30);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?} from {addr}{path}"))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        headers.push(line.to_owned());
    }
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {size:?}"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    response.body = String::from_utf8_lossy(&body).into_owned();
    Ok(response)
}

/// Peak resident set size (`VmHWM` in `/proc/<pid>/status`) of a live process, in bytes.
pub fn vm_hwm_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmHWM:") {
            let kib: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("bad VmHWM line {line:?}"))?;
            return Ok(kib * 1024);
        }
    }
    bail!("no VmHWM in /proc/{pid}/status")
}

/// Lowercase hex BLAKE3 of a file's content (what `b3sum` prints).
pub fn blake3_file(path: &Path) -> Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::io::BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Peak memory figures of a process, sampled while it ran (see [`PeakSampler`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Peaks {
    /// Largest `RssAnon` seen: heap, stacks and other private memory, in bytes.
    pub anon: u64,
    /// Largest `RssFile` seen: mapped file pages (e.g. an LMDB map), in bytes.
    pub file: u64,
    /// Largest `VmRSS` seen, in bytes.
    pub total: u64,
}

/// Samples a process's `/proc/<pid>/status` on a background thread until stopped.
///
/// `VmHWM` alone cannot tell heap from mapped file pages; a daemon that keeps a memory-mapped
/// database (LMDB) shows its touched map pages as resident. The sampled `RssAnon` peak is what
/// the process itself holds; a fast peak between two samples can be missed.
#[derive(Debug)]
pub struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Peaks>>,
}

impl PeakSampler {
    /// Starts sampling `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            loop {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    peaks.anon = peaks.anon.max(status_kib(&status, "RssAnon:") * 1024);
                    peaks.file = peaks.file.max(status_kib(&status, "RssFile:") * 1024);
                    peaks.total = peaks.total.max(status_kib(&status, "VmRSS:") * 1024);
                }
                if flag.load(Ordering::Relaxed) {
                    return peaks;
                }
                std::thread::sleep(every);
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sampling and returns the peaks.
    pub fn stop(mut self) -> Peaks {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes of every file under `dir` (0 for a folder that is absent).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
