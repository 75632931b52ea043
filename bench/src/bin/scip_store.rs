//! `scip_store`: what the daemon stores for a SCIP series under each cutting, end to end
//! (the real `scipcached` on loopback, driven by the client library).
//!
//! ```text
//! cargo build --release -p scipcache-daemon -p scipcache-client
//! cargo run --release -p scipcache-bench --bin scip_store -- \
//!     [--series DIR]... [--pinned DIR]... [--pin STRING] \
//!     [--modes plain,documents,normalized] [--json FILE]
//! ```
//!
//! - Series: without `--series` or `--pinned`, A, B and "B-pinned" from the shared data
//!   (`scipcache_bench::data_dir`). `--series DIR` adds the `NN_<sha-prefix>.scip.zst` files of
//!   DIR, named after DIR; `--pinned DIR` adds its pinned twin `<name>-pinned`: in each file,
//!   the one 40-hex commit SHA that starts with the file name's prefix is replaced by `--pin`
//!   (default [`DEFAULT_PIN`]), as `bench/peers/series.sh --pin=STRING` does (same lengths, so
//!   the protobuf stays valid). Files are checked against the folder's `B3SUMS` when it lists
//!   them, then written decompressed (and pinned) to a scratch folder, since a push reads a
//!   path.
//! - Per series and cutting: one fresh `scipcached` (from `$SCIPCACHE_BIN`, else the folder of
//!   this binary, else `target/release`) on a fresh data dir with its default configuration,
//!   so the cold tier is the folder `<data-dir>/cold`. The commits are pushed in order with
//!   `PushOptions::cutting` set, into `t/team/proj` as `commit/NN`. After each push the bench
//!   waits until the cold write-behind queue is empty and no pack awaits recompression
//!   (`Stats::cold_queue`, `Stats::cold_recompress`), as if commits were minutes apart, then
//!   measures the cold folder: a commit's cold growth. Push seconds are the push alone.
//! - At the end: bytes of the cold folder (the durable copy) and of the whole data dir
//!   (apparent sizes; on-disk blocks in the JSON), then the last commit is pulled to a file
//!   and its BLAKE3 compared with the input's (a mismatch fails the run).
//!
//! Prints a Markdown table on stdout (progress on stderr); `--json FILE` also writes one JSON
//! object per series and cutting (what `bench/peers/compare.sh` reads). MB = 10^6 bytes.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_bench::{
    DEFAULT_PIN, b3sums, data_dir, dir_bytes, pin_sha, read_scip, require_data, series_paths,
};
use scipcache_client::{Client, ClientConfig, Namespace, PullOptions, PushOptions, RefKey};
use scipcache_tiers::scip::CutMode;
use serde_json::json;

/// Where every commit goes; the tokens are for its tenant.
const NAMESPACE: &str = "t/team/proj";
const TENANT: &str = "t";
/// How long the daemon may take to print its ready line.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long the cold write-behind may take to drain after a push.
const SETTLE_LIMIT: Duration = Duration::from_secs(900);
const MODES: [CutMode; 3] = [CutMode::Plain, CutMode::Documents, CutMode::Normalized];
const USAGE: &str = "usage: scip_store [--series DIR]... [--pinned DIR]... [--pin STRING] \
                     [--modes plain,documents,normalized] [--json FILE]";

/// One series to measure: its files in commit order, pinned or not.
#[derive(Debug)]
struct Spec {
    name: String,
    dir: PathBuf,
    paths: Vec<PathBuf>,
    pinned: bool,
}

#[derive(Debug)]
struct Args {
    specs: Vec<Spec>,
    pin: String,
    modes: Vec<CutMode>,
    json: Option<PathBuf>,
}

/// One commit, decompressed (and pinned) into the scratch folder.
#[derive(Debug)]
struct Input {
    path: PathBuf,
    len: u64,
    blake3: blake3::Hash,
}

/// What one push did.
#[derive(Debug)]
struct Commit {
    len: u64,
    sent: u64,
    seconds: f64,
    chunks: u64,
    new_chunks: u64,
    cold_growth: u64,
    settle_seconds: f64,
}

/// One series under one cutting.
#[derive(Debug)]
struct Row {
    series: String,
    mode: CutMode,
    commits: Vec<Commit>,
    cold_bytes: u64,
    data_bytes: u64,
    data_disk_bytes: u64,
    pull_seconds: f64,
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let bin = binaries()?;
    let scratch = tempfile::Builder::new()
        .prefix("scip-store.")
        .tempdir()
        .context("creating the scratch folder")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for spec in &args.specs {
        let inputs_dir = scratch.path().join(format!("in-{}", spec.name));
        let inputs = prepare(spec, &args.pin, &inputs_dir)?;
        for &mode in &args.modes {
            eprintln!(
                "{} {}: {} commits",
                spec.name,
                mode_name(mode),
                inputs.len()
            );
            let row = rt.block_on(run_one(&bin, &spec.name, &inputs, mode, scratch.path()))?;
            if let Some(path) = &args.json {
                append_json(path, &row)?;
            }
            rows.push(row);
        }
        fs::remove_dir_all(&inputs_dir)
            .with_context(|| format!("removing {}", inputs_dir.display()))?;
    }
    print!("{}", table(&rows));
    Ok(())
}

fn parse_args() -> Result<Args> {
    let mut series = Vec::new();
    let mut pin = DEFAULT_PIN.to_owned();
    let mut modes = MODES.to_vec();
    let mut json = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--series" => series.push((PathBuf::from(value()?), false)),
            "--pinned" => series.push((PathBuf::from(value()?), true)),
            "--pin" => pin = value()?,
            "--modes" => {
                modes = value()?
                    .split(',')
                    .map(parse_mode)
                    .collect::<Result<Vec<_>>>()?;
            }
            "--json" => json = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(
        pin.len() == 40 && pin.is_ascii(),
        "--pin must be 40 ASCII characters (a commit SHA's length), not {pin:?}"
    );
    let mut specs = Vec::new();
    if series.is_empty() {
        for (name, pinned) in [("A", false), ("B", false), ("B", true)] {
            let what = format!("series {name}");
            if let Some(paths) = require_data(&what, series_paths(name)) {
                specs.push(Spec {
                    name: if pinned {
                        format!("{name}-pinned")
                    } else {
                        name.to_owned()
                    },
                    dir: data_dir().join(name),
                    paths,
                    pinned,
                });
            }
        }
    }
    for (dir, pinned) in series {
        let paths = dir_series(&dir)?;
        let base = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 name", dir.display()))?
            .to_owned();
        specs.push(Spec {
            name: if pinned {
                format!("{base}-pinned")
            } else {
                base
            },
            dir,
            paths,
            pinned,
        });
    }
    Ok(Args {
        specs,
        pin,
        modes,
        json,
    })
}

fn parse_mode(s: &str) -> Result<CutMode> {
    Ok(match s {
        "plain" => CutMode::Plain,
        "documents" => CutMode::Documents,
        "normalized" => CutMode::Normalized,
        other => bail!("unknown cutting {other:?} (plain, documents, normalized)"),
    })
}

fn mode_name(mode: CutMode) -> &'static str {
    match mode {
        CutMode::Plain => "plain",
        CutMode::Documents => "documents",
        CutMode::Normalized => "normalized",
    }
}

/// The `NN_<sha-prefix>.scip.zst` files of `dir`, in commit (name) order.
fn dir_series(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(|c: char| c.is_ascii_digit())
            && name.contains('_')
            && name.ends_with(".scip.zst")
        {
            paths.push(path);
        }
    }
    paths.sort();
    ensure!(!paths.is_empty(), "no NN_*.scip.zst in {}", dir.display());
    Ok(paths)
}

/// Where `scipcached` is: `$SCIPCACHE_BIN`, else beside this binary, else `target/release`.
fn binaries() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("SCIPCACHE_BIN").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir));
    } else {
        if let Some(dir) = std::env::current_exe()?.parent() {
            candidates.push(dir.to_owned());
        }
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"));
    }
    candidates
        .into_iter()
        .find(|d| d.join("scipcached").is_file())
        .context(
            "no scipcached found ($SCIPCACHE_BIN, beside this binary, target/release): run \
             `cargo build --release -p scipcache-daemon -p scipcache-client` first",
        )
}

/// Decompresses (and pins) every commit of `spec` into `dir`.
fn prepare(spec: &Spec, pin: &str, dir: &Path) -> Result<Vec<Input>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let sums = b3sums(&spec.dir)?;
    let mut inputs = Vec::new();
    for path in &spec.paths {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 name", path.display()))?;
        let name = file_name.strip_suffix(".scip.zst").unwrap_or(file_name);
        let mut data = read_scip(path)?;
        if let Some(expected) = sums.get(&format!("{name}.scip")) {
            let actual = blake3::hash(&data).to_hex();
            ensure!(
                actual.as_str() == expected,
                "{} decompresses to BLAKE3 {actual}, but B3SUMS says {expected}",
                path.display()
            );
        }
        if spec.pinned {
            let prefix = name.split_once('_').map_or("", |(_, p)| p);
            let (sha, n) = pin_sha(&mut data, prefix, pin)
                .with_context(|| format!("pinning {}", path.display()))?;
            eprintln!("pinned {name}: {sha} x {n}");
        }
        let out = dir.join(format!("{name}.scip"));
        fs::write(&out, &data).with_context(|| format!("writing {}", out.display()))?;
        inputs.push(Input {
            path: out,
            len: data.len() as u64,
            blake3: blake3::hash(&data),
        });
    }
    Ok(inputs)
}

/// A `scipcached` child on a data dir of its own; killed when dropped.
#[derive(Debug)]
struct Daemon {
    child: Child,
    bin: PathBuf,
    data: PathBuf,
    addr: String,
}

impl Daemon {
    /// Starts it in `root` (data dir `root/data`, log `root/scipcached.log`) and waits for
    /// its ready line.
    fn start(bin: &Path, root: &Path) -> Result<Self> {
        let data = root.join("data");
        let log_path = root.join("scipcached.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(bin.join("scipcached"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}/scipcached", bin.display()))?;
        let mut daemon = Self {
            child,
            bin: bin.to_owned(),
            data,
            addr: String::new(),
        };
        let started = Instant::now();
        loop {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(addr) = ready_addr(&text) {
                daemon.addr = addr;
                return Ok(daemon);
            }
            if let Some(status) = daemon.child.try_wait()? {
                bail!("scipcached exited ({status}) before it was ready; its log:\n{text}");
            }
            if started.elapsed() > READY_LIMIT {
                bail!("scipcached not ready after {READY_LIMIT:?}; its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A token minted by `scipcached token` on the data dir.
    fn token(&self, tenant: &str, scope: &str) -> Result<String> {
        let out = Command::new(self.bin.join("scipcached"))
            .arg("token")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--tenant", tenant, "--scope", scope])
            .output()
            .context("running scipcached token")?;
        // Its stderr is the token's id on success, the reason on failure.
        ensure!(
            out.status.success(),
            "scipcached token failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// SIGTERM, then waits (SIGKILL after 60 s).
    fn stop(&mut self) -> Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let started = Instant::now();
        while self.child.try_wait()?.is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                self.child.kill()?;
                bail!("scipcached did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The gRPC address of `scipcached ready grpc=ADDR metrics=...` in the log.
fn ready_addr(log: &str) -> Option<String> {
    const READY: &str = "scipcached ready grpc=";
    let rest = &log[log.find(READY)? + READY.len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

async fn connect(url: &str, token: String) -> Result<Client> {
    let mut config = ClientConfig::new(url);
    config.token = Some(token);
    Client::connect(config)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Waits until nothing waits for a cold copy or a recompression; returns the seconds waited.
async fn settle(admin: &Client) -> Result<f64> {
    let started = Instant::now();
    loop {
        let stats = admin.stats().await?;
        if stats.cold_queue == 0 && stats.cold_recompress == 0 {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > SETTLE_LIMIT {
            bail!(
                "the cold tier did not settle within {SETTLE_LIMIT:?}: queue {}, recompress {}",
                stats.cold_queue,
                stats.cold_recompress
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bytes allocated to every file under `dir` (`du`-like, directories left out).
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

async fn run_one(
    bin: &Path,
    series: &str,
    inputs: &[Input],
    mode: CutMode,
    scratch: &Path,
) -> Result<Row> {
    let root = tempfile::Builder::new()
        .prefix("run.")
        .tempdir_in(scratch)
        .context("creating a data dir")?;
    let mut daemon = Daemon::start(bin, root.path())?;
    let url = format!("http://{}", daemon.addr);
    let writer = connect(&url, daemon.token(TENANT, "*:write")?).await?;
    let admin = connect(&url, daemon.token("*", "*:admin")?).await?;
    let ns: Namespace = NAMESPACE.parse()?;
    let cold_dir = daemon.data.join("cold");
    let opts = PushOptions {
        cutting: Some(mode),
        ..PushOptions::default()
    };
    let mut commits = Vec::new();
    let mut cold_before = dir_bytes(&cold_dir);
    let mut last_key = None;
    for (i, input) in inputs.iter().enumerate() {
        let key: RefKey = format!("commit/{:02}", i + 1).parse()?;
        let pushed = writer
            .push_file(&ns, &key, &input.path, &opts)
            .await
            .with_context(|| format!("pushing {}", input.path.display()))?;
        ensure!(
            pushed.blob.to_string() == input.blake3.to_hex().as_str(),
            "push of {} reports blob {}, the file's BLAKE3 is {}",
            input.path.display(),
            pushed.blob,
            input.blake3.to_hex()
        );
        let settle_seconds = settle(&admin).await?;
        let cold = dir_bytes(&cold_dir);
        eprintln!(
            "  commit {:02}: sent {:.2} MB in {:.2} s, {} of {} chunks new, cold +{:.2} MB \
             (settled in {settle_seconds:.1} s)",
            i + 1,
            mb(pushed.bytes_sent),
            pushed.seconds,
            pushed.new_chunks,
            pushed.chunks,
            mb(cold.saturating_sub(cold_before))
        );
        commits.push(Commit {
            len: input.len,
            sent: pushed.bytes_sent,
            seconds: pushed.seconds,
            chunks: pushed.chunks,
            new_chunks: pushed.new_chunks,
            cold_growth: cold.saturating_sub(cold_before),
            settle_seconds,
        });
        cold_before = cold;
        last_key = Some(key);
    }
    ensure!(
        cold_dir.is_dir(),
        "no cold folder at {} (has the default cold URL changed?)",
        cold_dir.display()
    );
    let cold_bytes = dir_bytes(&cold_dir);
    let data_bytes = dir_bytes(&daemon.data);
    let data_disk_bytes = disk_bytes(&daemon.data);

    let (Some(key), Some(last)) = (last_key, inputs.last()) else {
        bail!("series {series} has no commits");
    };
    let out = root.path().join("pulled.scip");
    let file = fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
    let pulled = writer
        .pull_file(&ns, &key, &[], file, &PullOptions::default())
        .await
        .with_context(|| format!("pulling {key}"))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(fs::File::open(&out)?)
        .with_context(|| format!("hashing {}", out.display()))?;
    let got = hasher.finalize();
    if got != last.blake3 || pulled.bytes != last.len {
        bail!(
            "{series} {}: {key} pulled back as {} bytes with BLAKE3 {}, but {} holds {} bytes \
             with BLAKE3 {}",
            mode_name(mode),
            pulled.bytes,
            got.to_hex(),
            last.path.display(),
            last.len,
            last.blake3.to_hex()
        );
    }
    eprintln!(
        "  pulled {key} back in {:.2} s, BLAKE3 {} matches",
        pulled.seconds,
        got.to_hex()
    );
    drop((writer, admin));
    daemon.stop()?;
    Ok(Row {
        series: series.to_owned(),
        mode,
        commits,
        cold_bytes,
        data_bytes,
        data_disk_bytes,
        pull_seconds: pulled.seconds,
    })
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

impl Row {
    fn next(&self) -> &[Commit] {
        self.commits.get(1..).unwrap_or_default()
    }

    fn next_sent_median(&self) -> Option<f64> {
        median(self.next().iter().map(|c| c.sent as f64).collect())
    }

    fn next_sent_pct_median(&self) -> Option<f64> {
        median(
            self.next()
                .iter()
                .map(|c| 100.0 * c.sent as f64 / c.len.max(1) as f64)
                .collect(),
        )
    }

    fn next_cold_median(&self) -> Option<f64> {
        median(self.next().iter().map(|c| c.cold_growth as f64).collect())
    }

    fn push_seconds_median(&self) -> Option<f64> {
        median(self.commits.iter().map(|c| c.seconds).collect())
    }
}

fn append_json(path: &Path, row: &Row) -> Result<()> {
    let first = row.commits.first();
    let value = json!({
        "series": row.series,
        "cutting": mode_name(row.mode),
        "files": row.commits.len(),
        "input_bytes": row.commits.iter().map(|c| c.len).sum::<u64>(),
        "cold_bytes": row.cold_bytes,
        "data_dir_bytes": row.data_bytes,
        "data_dir_disk_bytes": row.data_disk_bytes,
        "first_sent": first.map(|c| c.sent),
        "first_cold": first.map(|c| c.cold_growth),
        "next_sent_median": row.next_sent_median(),
        "next_sent_pct_median": row.next_sent_pct_median(),
        "next_cold_median": row.next_cold_median(),
        "push_seconds_median": row.push_seconds_median(),
        "pull_seconds": row.pull_seconds,
        "sent": row.commits.iter().map(|c| c.sent).collect::<Vec<_>>(),
        "cold_growth": row.commits.iter().map(|c| c.cold_growth).collect::<Vec<_>>(),
        "seconds": row.commits.iter().map(|c| c.seconds).collect::<Vec<_>>(),
        "chunks": row.commits.iter().map(|c| c.chunks).collect::<Vec<_>>(),
        "new_chunks": row.commits.iter().map(|c| c.new_chunks).collect::<Vec<_>>(),
        "settle_seconds": row.commits.iter().map(|c| c.settle_seconds).collect::<Vec<_>>(),
    });
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{value}").with_context(|| format!("writing {}", path.display()))
}

fn table(rows: &[Row]) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |b| format!("{:.2}", b / 1e6));
    let mut out = String::from(
        "| series | cutting | commits | input MB | stored cold MB | data dir MB | first push MB \
         sent | next commit, median MB sent (% of file) | next commit, median cold MB | push s, \
         median |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in rows {
        let sent = match (r.next_sent_median(), r.next_sent_pct_median()) {
            (Some(b), Some(p)) => format!("{:.2} ({p:.1}%)", b / 1e6),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {sent} | {} | {:.2} |",
            r.series,
            mode_name(r.mode),
            r.commits.len(),
            mb(r.commits.iter().map(|c| c.len).sum()),
            mb(r.cold_bytes),
            mb(r.data_bytes),
            mb(r.commits.first().map_or(0, |c| c.sent)),
            opt(r.next_cold_median()),
            r.push_seconds_median().unwrap_or(0.0),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_grpc_address() {
        let log = "2026-12-02T00:00:00Z INFO scipcached ready grpc=127.0.0.1:41234 metrics=x\n";
        assert_eq!(ready_addr(log).as_deref(), Some("127.0.0.1:41234"));
        assert_eq!(ready_addr("starting\n"), None);
    }

    #[test]
    fn medians_of_odd_and_even_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }
}
