//! A flood of idle TCP connections, none of which ever starts the HTTP/2 handshake (or sends
//! an HTTP request), against both ports of a daemon that has 1,024 file descriptors (soft and
//! hard limit, as `ulimit -n 1024` sets them): a well-behaved client still pushes and pulls,
//! and `/healthz` still answers. The flood is kept up for the whole test: every connection
//! the daemon closes is opened again.
//! And each connection that does not complete its handshake (TLS, then the HTTP/2 preface
//! and SETTINGS frame) within `--handshake-timeout` is closed, while one that did stays.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, blake3_file, http_get, write_generated};

use crate::common::{p, str_field};
use crate::tls_certificate::fixture;

/// The daemon's descriptors, soft and hard.
const DAEMON_FILES: u32 = 1024;
/// Idle connections kept open: more than the daemon has descriptors.
const IDLE_CONNECTIONS: usize = 1100;
/// How long one flood connection attempt may take (a full backlog drops SYNs).
const FLOOD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections reopened per round of the flood after the first, and the pause between rounds:
/// a steady stream of new idle connections (about 300 a second) that keeps the daemon's table
/// full of them, without starving the machine the well-behaved client runs on.
const REOPEN_PER_ROUND: usize = 32;
const ROUND_PAUSE: Duration = Duration::from_millis(100);
/// Hang guard for the first round of the flood.
const FLOOD_START_TIMEOUT: Duration = Duration::from_secs(300);

/// Counts of a flood, shared with its thread.
#[derive(Debug, Default)]
struct FloodCounts {
    opened: AtomicU64,
    refused: AtomicU64,
    closed_by_daemon: AtomicU64,
    held: AtomicU64,
    rounds: AtomicU64,
}

/// A background thread that keeps `n` idle connections to `addr` open, reopening each one
/// the daemon closes, until it is stopped.
struct Flood {
    stop: Arc<AtomicBool>,
    counts: Arc<FloodCounts>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn start(addr: SocketAddr, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(FloodCounts::default());
        let thread = std::thread::spawn({
            let (stop, counts) = (stop.clone(), counts.clone());
            move || flood(addr, n, &stop, &counts)
        });
        Self {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    /// Waits until every connection has been tried once.
    fn wait_first_round(&self) -> Result<()> {
        let deadline = Instant::now() + FLOOD_START_TIMEOUT;
        while self.counts.rounds.load(Ordering::Acquire) == 0 {
            if Instant::now() >= deadline {
                bail!("the flood did not open its {IDLE_CONNECTIONS} connections in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn report(&self) -> String {
        let c = &self.counts;
        format!(
            "opened {}, refused or timed out {}, closed by the daemon {}, open at the last \
             round {}, rounds {}",
            c.opened.load(Ordering::Acquire),
            c.refused.load(Ordering::Acquire),
            c.closed_by_daemon.load(Ordering::Acquire),
            c.held.load(Ordering::Acquire),
            c.rounds.load(Ordering::Acquire),
        )
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn flood(addr: SocketAddr, n: usize, stop: &AtomicBool, counts: &FloodCounts) {
    let mut slots: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut probe = [0u8; 64];
    let mut first_round = true;
    while !stop.load(Ordering::Acquire) {
        let mut held = 0;
        let mut reopened = 0;
        for slot in &mut slots {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if let Some(stream) = slot {
                // Open and silent: reading would block. Anything else means the daemon
                // closed it (or sent its own HTTP/2 preface, which counts as alive).
                match stream.read(&mut probe) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Ok(n) if n > 0 => {}
                    _ => {
                        counts.closed_by_daemon.fetch_add(1, Ordering::AcqRel);
                        *slot = None;
                    }
                }
            }
            if slot.is_none() && (first_round || reopened < REOPEN_PER_ROUND) {
                reopened += 1;
                match TcpStream::connect_timeout(&addr, FLOOD_CONNECT_TIMEOUT)
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                {
                    Ok(stream) => {
                        counts.opened.fetch_add(1, Ordering::AcqRel);
                        *slot = Some(stream);
                    }
                    Err(_) => {
                        counts.refused.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
            held += u64::from(slot.is_some());
        }
        counts.held.store(held, Ordering::Release);
        counts.rounds.fetch_add(1, Ordering::AcqRel);
        first_round = false;
        std::thread::sleep(ROUND_PAUSE);
    }
}

/// This process's own soft limit on open files (`/proc/self/limits`).
fn own_open_file_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .context("no `Max open files` line in /proc/self/limits")
}

/// Descriptors the daemon holds now (`/proc/<pid>/fd`).
fn daemon_descriptors(d: &Daemon) -> Result<usize> {
    let pid = d.pid().context("daemon not running")?;
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[test]
fn a_flood_of_idle_connections_leaves_pushes_pulls_and_healthz_served() -> Result<()> {
    let own = own_open_file_limit()?;
    ensure!(
        own > 2 * IDLE_CONNECTIONS as u64 + 256,
        "this test opens {IDLE_CONNECTIONS} sockets itself but may open only {own} files: \
         raise `ulimit -n` for the test run"
    );
    let d = Daemon::start(DaemonOptions::new().open_file_limit(DAEMON_FILES))?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let blob = d.scratch().join("blob");
    let b3 = write_generated(&blob, 8 << 20, 11)?;

    let flood = Flood::start(d.grpc_addr(), IDLE_CONNECTIONS);
    let metrics_flood = Flood::start(d.metrics_addr(), IDLE_CONNECTIONS);
    flood.wait_first_round()?;
    metrics_flood.wait_first_round()?;
    let descriptors_flooded = daemon_descriptors(&d)?;
    eprintln!(
        "connection_flood: after the first round: gRPC port: {}; metrics port: {}; daemon \
         descriptors {descriptors_flooded}",
        flood.report(),
        metrics_flood.report()
    );

    let health = http_get(d.metrics_addr(), "/healthz");
    let push = d.cli(&writer, &["--json", "push", NS, "flooded", p(&blob)])?;
    let dest = d.scratch().join("pulled");
    let pull = d.cli(&writer, &["--json", "pull", NS, "flooded", "-o", p(&dest)])?;
    let health_after = http_get(d.metrics_addr(), "/healthz");
    let descriptors_end = daemon_descriptors(&d)?;
    let report = format!(
        "gRPC port: {}; metrics port: {}",
        flood.report(),
        metrics_flood.report()
    );
    drop((flood, metrics_flood));
    eprintln!("connection_flood: at the end: {report}; daemon descriptors {descriptors_end}");

    let push = push
        .success()
        .with_context(|| format!("push under the flood ({report}); daemon log:\n{}", d.log()))?;
    ensure!(str_field(&push.json()?, "blob")? == b3, "push: {push}");
    pull.success()
        .with_context(|| format!("pull under the flood ({report})"))?;
    ensure!(blake3_file(&dest)? == b3, "the pulled bytes differ");
    for (when, health) in [("before", health), ("after", health_after)] {
        let health = health.with_context(|| format!("/healthz {when} the push ({report})"))?;
        ensure!(health.status == 200, "/healthz {when} the push: {health:?}");
    }
    ensure!(
        descriptors_end < DAEMON_FILES as usize,
        "the daemon holds {descriptors_end} of its {DAEMON_FILES} descriptors"
    );
    Ok(())
}

/// Hang guard for a connection the daemon must close.
const CLOSE_GUARD: Duration = Duration::from_secs(120);

/// Reads from `stream` until the daemon closes it, failing if it has not within
/// [`CLOSE_GUARD`]; returns the bytes the daemon sent first.
fn read_until_closed(mut stream: TcpStream, what: &str) -> Result<Vec<u8>> {
    stream.set_read_timeout(Some(CLOSE_GUARD))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("{what}: the daemon left the connection open for over {CLOSE_GUARD:?}")
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[test]
fn a_connection_without_a_handshake_is_closed_after_the_handshake_timeout() -> Result<()> {
    let plain = Daemon::start(DaemonOptions::new().arg("--handshake-timeout").arg("1s"))?;
    let silent = TcpStream::connect(plain.grpc_addr())?;
    read_until_closed(silent, "silent plaintext connection")?;
    // Half a preface is no handshake either.
    let mut half = TcpStream::connect(plain.grpc_addr())?;
    half.write_all(b"PRI * HTTP/2.0\r\n")?;
    read_until_closed(half, "half a preface")?;

    let tls = Daemon::start(
        DaemonOptions::new()
            .arg("--handshake-timeout")
            .arg("1s")
            .arg("--tls-cert")
            .arg(fixture("server.crt"))
            .arg("--tls-key")
            .arg(fixture("server.key")),
    )?;
    let silent = TcpStream::connect(tls.grpc_addr())?;
    read_until_closed(silent, "silent connection to the TLS port")?;
    Ok(())
}

#[test]
fn a_connection_that_completed_its_handshake_outlives_the_handshake_timeout() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new().arg("--handshake-timeout").arg("1s"))?;
    let mut client = TcpStream::connect(d.grpc_addr())?;
    // The client preface and an empty SETTINGS frame: the HTTP/2 handshake.
    client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
    client.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])?;
    // Well past the timeout, the daemon has sent its SETTINGS and has not closed the
    // connection (reading times out instead of ending).
    std::thread::sleep(Duration::from_secs(3));
    client.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 4096];
    let mut got = 0;
    loop {
        match client.read(&mut buf) {
            Ok(0) => bail!("the daemon closed an established connection"),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => bail!("the daemon broke an established connection: {e}"),
        }
    }
    ensure!(got >= 9, "the daemon sent no SETTINGS frame");
    Ok(())
}
