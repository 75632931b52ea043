//! `lookup_tables`: what the document and symbol lookup tables take across the commits of a
//! SCIP series (rows shared by document content), and how much memory building them holds for
//! a large index. In process, on a real store (LMDB, pack files, local cold folder).
//!
//! ```text
//! cargo run --release -p scipcache-bench --bin lookup_tables -- [SERIES...] [--synthetic-mb N]
//! ```
//!
//! - Per series (default `A B`, from the shared data; `NAME-pinned` is series NAME with each
//!   file's commit SHA replaced by one fixed string, as `scip_store --pinned` does): one fresh
//!   store; each commit is written
//!   in order (`Store::write_blob`) and the bench waits until its tables are ready, then reads
//!   [`TableSizes`]: the bytes of the rows each blob has of its own, of the rows shared by
//!   document content, and what those shared rows would take if every blob kept its own copy
//!   (the layout before sharing). Bytes are keys plus values; LMDB's pages add to both.
//! - `--synthetic-mb N` (default 0: skipped): writes a synthetic SCIP index of about N MB
//!   (documents of ~30 KB, 100 definitions of their own and 300 references to other documents'
//!   symbols each) to a scratch file, stores it from the file and builds its tables twice, on
//!   fresh stores: with the default bound on a build's gathered symbol state (32 MiB) and with
//!   none. For each it prints the peak heap of the whole process (a counting global
//!   allocator) while the blob is stored and, separately, after that while its tables are
//!   built, and the build time.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use peak_alloc::PeakAlloc;
use scipcache_bench::{DEFAULT_PIN, pin_sha, read_scip, require_data, series_paths};
use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::store::{LookupState, TableSizes};
use scipcache_tiers::{Store, StoreConfig};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const USAGE: &str = "usage: lookup_tables [SERIES...] [--synthetic-mb N]";
const MB: f64 = 1e6;

fn config(dir: &Path, run_bytes: usize) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.lmdb_map_size = 64 << 30;
    c.cold_flush_after = Duration::from_secs(1);
    c.lookup_run_bytes = run_bytes;
    c
}

/// What storing and building one blob took.
struct Built {
    state: LookupState,
    /// Seconds from the write's return to ready tables.
    secs: f64,
    /// Peak heap bytes while writing, and after it while building.
    write_peak: usize,
    build_peak: usize,
}

/// Writes `reader` under `commit/NN` and waits until its tables are ready.
async fn store_and_build(
    store: &Store,
    ns: &Namespace,
    n: usize,
    reader: impl tokio::io::AsyncRead + Unpin + Send,
) -> Result<Built> {
    let key: RefKey = format!("commit/{n:02}").parse()?;
    HEAP.reset_peak_usage();
    let record = store
        .write_blob(ns, &key, reader, RefOptions::default())
        .await?;
    let write_peak = HEAP.peak_usage();
    HEAP.reset_peak_usage();
    let written = Instant::now();
    loop {
        match store.lookup_state(ns.tenant(), record.manifest).await? {
            Some(LookupState::Pending) => tokio::time::sleep(Duration::from_millis(5)).await,
            Some(state) => {
                return Ok(Built {
                    state,
                    secs: written.elapsed().as_secs_f64(),
                    write_peak,
                    build_peak: HEAP.peak_usage(),
                });
            }
            None => bail!("commit/{n:02} has no lookup state"),
        }
        if written.elapsed() > Duration::from_secs(3600) {
            bail!("the tables of commit/{n:02} took over an hour");
        }
    }
}

async fn series(name: &str) -> Result<()> {
    let (base, pinned) = match name.strip_suffix("-pinned") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let Some(paths) = require_data(&format!("series {base}"), series_paths(base)) else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open(config(dir.path(), 32 << 20)).await?;
    let ns: Namespace = "bench/team/proj".parse()?;
    println!("\n### {name}\n");
    println!(
        "| commit | documents | tables ready (s) | own rows (MB) | shared rows (MB) | \
         documents stored | shared rows, unshared (MB) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut last = TableSizes::default();
    for (i, path) in paths.iter().enumerate() {
        let mut data = read_scip(path)?;
        let stem = path.file_name().and_then(|f| f.to_str()).unwrap_or("?");
        if pinned {
            let prefix = stem.split_once('_').map_or("", |(_, p)| p);
            let prefix = prefix.strip_suffix(".scip.zst").unwrap_or(prefix);
            pin_sha(&mut data, prefix, DEFAULT_PIN)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        let Built { state, secs, .. } = store_and_build(&store, &ns, i + 1, &data[..]).await?;
        let documents = match state {
            LookupState::Ready { documents, .. } => documents,
            other => bail!("{} is not indexed: {other:?}", path.display()),
        };
        let s = store.lookup_table_sizes().await?;
        let same = if s == last { " (same blob)" } else { "" };
        println!(
            "| {stem}{same} | {documents} | {secs:.2} | {:.1} | {:.1} | {} | {:.1} |",
            s.blob_bytes as f64 / MB,
            s.shared_bytes as f64 / MB,
            s.documents,
            s.unshared_bytes as f64 / MB,
        );
        last = s;
    }
    let shared = last.blob_bytes + last.shared_bytes;
    let unshared = last.blob_bytes + last.unshared_bytes;
    println!(
        "\n{name}: {} blobs' tables take {:.1} MB with shared rows, {:.1} MB without \
         ({:.2}× less)",
        last.blobs,
        shared as f64 / MB,
        unshared as f64 / MB,
        unshared as f64 / shared.max(1) as f64
    );
    store.shutdown().await?;
    Ok(())
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, number: u32, value: &[u8]) {
    varint(out, u64::from(number) << 3 | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn symbol(doc: u64, n: u64) -> String {
    format!(
        "scip-typescript npm synthetic 1.0.0 src/m{}/`f{doc}.ts`/s{n}().",
        doc % 97
    )
}

/// A synthetic index of about `mb` MB in `path`: see the module docs. How many documents.
fn synthetic(path: &Path, mb: u64) -> Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut meta = Vec::new();
    field(&mut meta, 3, b"file:///synthetic");
    let mut top = Vec::new();
    field(&mut top, 1, &meta);
    out.write_all(&top)?;
    let (mut written, mut docs) = (top.len() as u64, 0u64);
    while written < mb * 1_000_000 {
        let d = docs;
        let mut doc = Vec::with_capacity(40_000);
        field(&mut doc, 1, format!("src/m{}/f{d}.ts", d % 97).as_bytes());
        field(&mut doc, 4, b"typescript");
        for j in 0..400u64 {
            let (s, roles) = if j < 100 {
                (symbol(d, j), 1)
            } else {
                let other = (d * 7919 + j * 104_729) % (d + 1);
                (symbol(other, j % 100), 0)
            };
            let mut occ = Vec::new();
            let mut range = Vec::new();
            for v in [j, 2, 2 + j % 40] {
                varint(&mut range, v);
            }
            field(&mut occ, 1, &range);
            field(&mut occ, 2, s.as_bytes());
            if roles != 0 {
                varint(&mut occ, 3 << 3);
                varint(&mut occ, roles);
            }
            field(&mut doc, 2, &occ);
        }
        let mut message = Vec::with_capacity(doc.len() + 8);
        field(&mut message, 2, &doc);
        out.write_all(&message)?;
        written += message.len() as u64;
        docs += 1;
    }
    out.flush()?;
    Ok(docs)
}

async fn bounded(mb: u64) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let file = scratch.path().join("synthetic.scip");
    let docs = synthetic(&file, mb)?;
    let size = std::fs::metadata(&file)?.len();
    println!(
        "\n### Synthetic index: {:.0} MB, {docs} documents\n",
        size as f64 / MB
    );
    println!(
        "| symbol state bound | peak heap, building (MB) | peak heap, storing (MB) | \
         tables ready (s) | symbols |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (label, run_bytes) in [("32 MiB (default)", 32usize << 20), ("none", usize::MAX)] {
        let dir = tempfile::Builder::new().tempdir_in(scratch.path())?;
        let store = Store::open(config(dir.path(), run_bytes)).await?;
        let ns: Namespace = "bench/team/proj".parse()?;
        let reader = tokio::fs::File::open(&file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let built = store_and_build(&store, &ns, 1, reader).await?;
        let symbols = match built.state {
            LookupState::Ready { symbols, .. } => symbols,
            other => bail!("the synthetic index is not indexed: {other:?}"),
        };
        println!(
            "| {label} | {:.0} | {:.0} | {:.1} | {symbols} |",
            built.build_peak as f64 / MB,
            built.write_peak as f64 / MB,
            built.secs
        );
        store.shutdown().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut names = Vec::new();
    let mut synthetic_mb = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--synthetic-mb" => {
                synthetic_mb = args
                    .next()
                    .context(USAGE)?
                    .parse()
                    .context("--synthetic-mb takes a number of MB")?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other if other.starts_with('-') => bail!("unknown flag {other}\n{USAGE}"),
            other => names.push(other.to_owned()),
        }
    }
    if names.is_empty() && synthetic_mb == 0 {
        names = vec!["A".into(), "B".into()];
    }
    for name in &names {
        series(name).await?;
    }
    if synthetic_mb > 0 {
        bounded(synthetic_mb).await?;
    }
    Ok(())
}
