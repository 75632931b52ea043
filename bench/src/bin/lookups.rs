//! Document and symbol lookups over gRPC on loopback, against a real `scipcached` (release
//! build), hot tier: a closed-loop load generator.
//!
//! ```text
//! cargo build --release -p scipcache-daemon
//! cargo run --release -p scipcache-bench --bin lookups -- [SERIES...] [--seconds S] [--callers N]
//!     [--connections N]
//! ```
//!
//! For each series (default `A B`: the first commit of each, ~20 MB and ~99 MB) it starts a
//! fresh daemon, pushes the index through the client library, waits until its tables are
//! built, and measures with the client library's calls (`Client::symbol_page`,
//! `Client::document`):
//! - one caller, closed loop: p50/p99 of symbol lookups (symbols that have a definition in the
//!   index, first page of references), of documents of at most 64 KiB, and the throughput of
//!   the largest documents in MB/s;
//! - `--callers` callers (default 32) over `--connections` HTTP/2 connections (default 1): symbol
//!   lookups per second;
//! - what a gateway does without lookups: pull the whole index and decode it to find one
//!   document (median of 3), in the same run;
//! - the floor, before the lookups: health checks of a bare tonic server (this program again,
//!   as `--serve-floor`) and of the daemon, with one caller and with `--callers`, and a ref
//!   read through the client library with one caller.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prost::Message;
use scipcache_client::{Client, ClientConfig, LookupRef, Namespace, PullOptions, RefKey};

#[derive(Clone, PartialEq, Message)]
struct Index {
    #[prost(message, repeated, tag = "2")]
    documents: Vec<Document>,
}

#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    relative_path: String,
    #[prost(message, repeated, tag = "2")]
    occurrences: Vec<Occurrence>,
}

#[derive(Clone, PartialEq, Message)]
struct Occurrence {
    #[prost(string, tag = "2")]
    symbol: String,
    #[prost(int32, tag = "3")]
    symbol_roles: i32,
}

struct Args {
    series: Vec<String>,
    seconds: f64,
    callers: usize,
    connections: usize,
}

fn args() -> Result<Args> {
    let mut args = Args {
        series: Vec::new(),
        seconds: 5.0,
        callers: 32,
        connections: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => args.seconds = it.next().context("--seconds S")?.parse()?,
            "--callers" => args.callers = it.next().context("--callers N")?.parse()?,
            "--connections" => {
                args.connections = it.next().context("--connections N")?.parse()?;
            }
            s if !s.starts_with('-') => args.series.push(s.to_owned()),
            other => bail!("unknown argument {other}"),
        }
    }
    if args.series.is_empty() {
        args.series = vec!["A".into(), "B".into()];
    }
    Ok(args)
}

/// A daemon on a temporary data dir, stopped when dropped.
struct Daemon {
    child: Child,
    url: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn release_binary(name: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --release -p scipcache-daemon` first",
            path.display()
        );
    }
    Ok(path)
}

fn start_daemon() -> Result<Daemon> {
    let bin = release_binary("scipcached")?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut child = Command::new(&bin)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn,scipcached=info,scipcache_daemon=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let stderr = child.stderr.take().context("daemon stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .context("the daemon exited before it was ready")??;
        if let Some(rest) = line.split("scipcached ready grpc=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    };
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let out = Command::new(&bin)
        .arg("token")
        .arg("--data-dir")
        .arg(&data)
        .args(["--tenant", "bench", "--scope", "*:write", "--ttl", "1h"])
        .output()?;
    if !out.status.success() {
        bail!("scipcached token: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Daemon {
        child,
        url: format!("http://{addr}"),
        token: String::from_utf8(out.stdout)?.trim().to_owned(),
        dir,
    })
}

/// The argument that makes this program the floor server instead of the bench.
const SERVE_FLOOR: &str = "--serve-floor";

/// The floor of a unary call on this machine: a bare tonic server (the health service alone,
/// default settings, no layers) in its own process, for the same client loop to time.
async fn serve_floor() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("floor grpc={}", listener.local_addr()?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

/// A floor server process, killed when dropped.
struct Floor {
    child: Child,
    url: String,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_floor() -> Result<Floor> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg(SERVE_FLOOR)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("floor stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .context("the floor server exited")??;
    let addr = line.strip_prefix("floor grpc=").context("floor address")?;
    Ok(Floor {
        url: format!("http://{addr}"),
        child,
    })
}

/// Health checks against `url` over one connection: the latencies (µs, sorted) of one caller
/// for `seconds`, then the calls per second of `callers` callers.
async fn health_floor(url: &str, seconds: f64, callers: usize) -> Result<(Vec<f64>, f64)> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = move || {
        let mut h = health.clone();
        async move {
            h.check(tonic_health::pb::HealthCheckRequest::default())
                .await?;
            anyhow::Ok(())
        }
    };
    let keys = vec![String::new()];
    let (lat, _) = closed_loop(&keys, seconds, |_| {
        let f = check();
        async move { f.await.map(|()| 0) }
    })
    .await?;
    let rate = many_callers(callers, seconds, move |_, _| check()).await?;
    Ok((lat, rate))
}

/// `callers` tasks each calling `call(caller, n)` in a closed loop (n counts its calls): calls
/// per second over `seconds`, after a fifth of that as warm-up.
async fn many_callers<F, Fut>(callers: usize, seconds: f64, call: F) -> Result<f64>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let call = Arc::new(call);
    let mut tasks = Vec::new();
    for i in 0..callers {
        let (stop, done, call) = (stop.clone(), done.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                call(i, n).await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds / 5.0)).await;
    let (from, started) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let count = done.load(Ordering::Relaxed) - from;
    let rate = count as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok(rate)
}

/// Percentile of sorted microsecond latencies.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Target {
    ns: Namespace,
    key: RefKey,
}

impl Target {
    fn at(&self) -> LookupRef<'_> {
        LookupRef {
            ns: &self.ns,
            key: &self.key,
            fallbacks: &[],
        }
    }
}

/// One caller in a closed loop over `items` for `seconds`: sorted latencies (µs) and bytes.
async fn closed_loop<F, Fut>(items: &[String], seconds: f64, mut call: F) -> Result<(Vec<f64>, u64)>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut lat = Vec::new();
    let mut bytes = 0;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut i = 0;
    while Instant::now() < end {
        let item = items[i % items.len()].clone();
        i += 1;
        let t = Instant::now();
        bytes += call(item).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat, bytes))
}

async fn series(name: &str, a: &Args) -> Result<()> {
    let Some(file) = scipcache_bench::require_data(name, scipcache_bench::scip_commit(name, 0))
    else {
        return Ok(());
    };
    let index = Index::decode(file.data.as_slice()).context("decode the index")?;
    let d = start_daemon()?;
    let mut config = ClientConfig::new(d.url.clone());
    config.token = Some(d.token.clone());
    let client = Client::connect(config.clone()).await?;
    let t = Target {
        ns: "bench/lookups/index".parse()?,
        key: "commit/first".parse()?,
    };
    let path = d.dir.path().join("index.scip");
    std::fs::write(&path, &file.data)?;
    let pushed_at = Instant::now();
    client
        .push_file(&t.ns, &t.key, &path, &Default::default())
        .await?;
    let acked = pushed_at.elapsed();
    // Wait for the tables (UNAVAILABLE while indexing; the client retries that a few times).
    let probe = index.documents[0].relative_path.clone();
    loop {
        match client.document(t.at(), &probe).await {
            Ok(_) => break,
            Err(e) if e.code_words() == "unavailable" => continue,
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "{name} ({}, {:.1} MB, {} documents): push acknowledged in {:.2} s, tables ready {:.2} s \
         after the push began",
        file.name,
        file.data.len() as f64 / 1e6,
        index.documents.len(),
        acked.as_secs_f64(),
        pushed_at.elapsed().as_secs_f64()
    );

    // Symbols defined in the index, spread over it.
    let mut symbols: Vec<String> = index
        .documents
        .iter()
        .flat_map(|d| &d.occurrences)
        .filter(|o| o.symbol_roles & 1 != 0 && !o.symbol.starts_with("local "))
        .map(|o| o.symbol.clone())
        .collect();
    symbols.sort_unstable();
    symbols.dedup();
    let step = (symbols.len() / 2000).max(1);
    let symbols: Vec<String> = symbols.into_iter().step_by(step).collect();
    // Documents by size.
    let mut docs: Vec<(usize, String)> = index
        .documents
        .iter()
        .map(|d| (d.encoded_len(), d.relative_path.clone()))
        .collect();
    docs.sort_unstable();
    let small: Vec<String> = docs
        .iter()
        .filter(|(n, _)| *n <= 64 << 10)
        .map(|(_, p)| p.clone())
        .collect();
    let mid: Vec<String> = docs
        .iter()
        .filter(|(n, _)| (16 << 10..=64 << 10).contains(n))
        .map(|(_, p)| p.clone())
        .collect();
    let large: Vec<String> = docs.iter().rev().take(5).map(|(_, p)| p.clone()).collect();

    // Warm-up: every sampled item once, so the hot tier and the page cache hold them.
    for s in &symbols {
        client.symbol_page(t.at(), s, 0, None).await?;
    }
    for p in small.iter().chain(&large) {
        client.document(t.at(), p).await?;
    }

    let floor = start_floor()?;
    for (label, url) in [
        ("a bare tonic server's health check", &floor.url),
        ("this daemon's health check", &d.url),
    ] {
        let (lat, rate) = health_floor(url, a.seconds, a.callers).await?;
        println!(
            "  floor, {label} (plain tonic client): 1 caller p50 {:.0} µs, p99 {:.0} µs; {} \
             callers over 1 connection {rate:.0} calls/s",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            a.callers,
        );
    }
    drop(floor);
    let once = [String::new()];
    let (lat, _) = closed_loop(&once, a.seconds, |_| {
        let (c, t) = (&client, &t);
        async move {
            c.get_ref(&t.ns, &t.key).await?;
            Ok(0)
        }
    })
    .await?;
    println!(
        "  baseline, a ref read (Refs/Get), 1 caller: p50 {:.0} µs, p99 {:.0} µs",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
    );
    let (lat, _) = closed_loop(&symbols, a.seconds, |s| {
        let (c, t) = (&client, &t);
        async move {
            let page = c.symbol_page(t.at(), &s, 0, None).await?;
            Ok(page.references.len() as u64)
        }
    })
    .await?;
    println!(
        "  symbol, 1 caller: p50 {:.0} µs, p99 {:.0} µs ({} lookups of {} symbols)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len(),
        symbols.len()
    );
    for (label, set) in [("document ≤ 64 KiB", &small), ("document 16–64 KiB", &mid)] {
        if set.is_empty() {
            continue;
        }
        let (lat, bytes) = closed_loop(set, a.seconds, |p| {
            let (c, t) = (&client, &t);
            async move { Ok(c.document(t.at(), &p).await?.bytes.len() as u64) }
        })
        .await?;
        println!(
            "  {label}, 1 caller: p50 {:.0} µs, p99 {:.0} µs ({} lookups of {} documents, mean \
             {:.1} KB)",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.len(),
            set.len(),
            bytes as f64 / lat.len() as f64 / 1e3
        );
    }
    let (lat, bytes) = closed_loop(&large, a.seconds, |p| {
        let (c, t) = (&client, &t);
        async move { Ok(c.document(t.at(), &p).await?.bytes.len() as u64) }
    })
    .await?;
    let secs: f64 = lat.iter().sum::<f64>() / 1e6;
    println!(
        "  largest 5 documents ({:.2}–{:.2} MB), 1 caller: {:.0} MB/s, p50 {:.2} ms",
        docs.iter().rev().nth(4).map_or(0, |d| d.0) as f64 / 1e6,
        docs.last().map_or(0, |d| d.0) as f64 / 1e6,
        bytes as f64 / secs / 1e6,
        pct(&lat, 0.5) / 1e3
    );

    // Many callers over a few connections.
    let mut clients = Vec::new();
    for _ in 0..a.connections.max(1) {
        clients.push(Client::connect(config.clone()).await?);
    }
    let connections = clients.len();
    let (symbols, t) = (Arc::new(symbols), Arc::new(t));
    let target = t.clone();
    let rate = many_callers(a.callers, a.seconds, move |i, j| {
        let c = clients[i % clients.len()].clone();
        let (symbols, t) = (symbols.clone(), target.clone());
        async move {
            let s = &symbols[(i * 7919 + j) % symbols.len()];
            c.symbol_page(t.at(), s, 0, None).await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "  symbol, {} callers over {} connections: {:.0} lookups/s",
        a.callers, connections, rate
    );

    // Without lookups: pull the whole index and decode it to find one document.
    let want = mid
        .first()
        .or(small.first())
        .context("no small document")?
        .clone();
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut blob = Vec::with_capacity(file.data.len());
        client
            .pull(&t.ns, &t.key, &[], &mut blob, &PullOptions::default())
            .await?;
        let index = Index::decode(blob.as_slice())?;
        let found = index.documents.iter().any(|d| d.relative_path == want);
        if !found {
            bail!("{want} not in the pulled index");
        }
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "  without lookups (pull {:.0} MB + decode, one document found): median {:.0} ms",
        file.data.len() as f64 / 1e6,
        times[1] * 1e3
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some(SERVE_FLOOR) {
        return serve_floor().await;
    }
    let a = args()?;
    for name in a.series.clone() {
        series(&name, &a).await?;
    }
    Ok(())
}
