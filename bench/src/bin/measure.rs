//! `measure`: the numbers behind scipcache's chunk-size and compression-level defaults, taken on
//! the real SCIP series (see the crate docs for where the data comes from).
//!
//! ```text
//! cargo run --release -p scipcache-bench --bin measure -- <chunking|zstd|all> \
//!     [--avg KIB] [--sample-mib MIB]
//! ```
//!
//! - `chunking`: FastCDC v2020 at several average sizes, each series fed commit by commit into
//!   a simulated per-tenant chunk store: dedup share, chunk counts and per-chunk overheads,
//!   bytes the hot tier would hold, chunk+hash throughput.
//! - `zstd`: zstd levels for the warm and cold tiers (and lz4 for comparison) on the unique
//!   chunks of one commit of each series, each chunk compressed alone and ~8 MiB packs
//!   compressed whole. `--avg` sets the chunking, `--sample-mib` caps the bytes measured.
//!
//! Prints Markdown on stdout. Everything runs on one thread; a timing is the fastest of a few
//! runs because the machine is shared. MB = 10^6 bytes, KiB/MiB = 2^10/2^20.

use std::collections::HashSet;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_bench::{ScipFile, data_dir, scip_series};
use scipcache_tiers::chunking::{ChunkerSpec, DEFAULT_AVG_CHUNK, FastCdc};
use scipcache_tiers::codec::{Compression, Frame, MAX_CHUNK_LEN};
use scipcache_tiers::ids::ChunkId;

const USAGE: &str = "usage: measure <chunking|zstd|all> [--avg KIB] [--sample-mib MIB]
  --avg KIB         average chunk size for the zstd section (default: the chunking section's
                    recommendation with `all`, the engine's default with `zstd`)
  --sample-mib MIB  bytes of unique chunks measured per commit in the zstd section (default 24)";

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Average chunk sizes compared, in KiB.
const AVGS_KIB: [u32; 5] = [4, 8, 16, 32, 64];
/// zstd levels compared.
const LEVELS: [i32; 6] = [1, 3, 9, 12, 15, 19];
/// Levels at or below this also get a reused-context column (above it the context set-up is
/// noise next to the compression itself, and the extra pass would cost a minute).
const REUSED_CTX_MAX_LEVEL: i32 = 9;
/// A pack closes once it holds this many bytes (plus at most one chunk).
const PACK_TARGET: usize = 8 * MIB;
/// Per-chunk costs besides the chunk's bytes: an LMDB entry (key, page share, index), a
/// manifest entry (id + length), an id sent in FindMissing.
const LMDB_ENTRY: u64 = 100;
const MANIFEST_ENTRY: u64 = 36;
const FIND_MISSING_ID: u64 = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Chunking,
    Zstd,
    All,
}

struct Args {
    mode: Mode,
    /// Average chunk size for the zstd section, bytes, when given.
    avg: Option<u32>,
    /// Cap on the unique bytes measured per commit in the zstd section.
    sample: usize,
}

/// A series and what to leave out of its "typical commit" averages.
struct SeriesInfo {
    name: &'static str,
    /// Commit-name prefix of an outlier commit (A's commit 06, a release that changes every
    /// symbol string).
    outlier: Option<&'static str>,
}

const SERIES: [SeriesInfo; 2] = [
    SeriesInfo {
        name: "A",
        outlier: Some("06_"),
    },
    SeriesInfo {
        name: "B",
        outlier: None,
    },
];

fn main() -> Result<()> {
    let args = parse_args()?;
    let mut series = Vec::new();
    for info in &SERIES {
        let t = Instant::now();
        let files = scip_series(info.name)?.with_context(|| {
            format!(
                "SCIP series {} not found under {} (set SCIPCACHE_TEST_DATA to the `scip` \
                 directory)",
                info.name,
                data_dir().display()
            )
        })?;
        eprintln!(
            "loaded series {}: {} commits, {:.1} MB in {:.1} s",
            info.name,
            files.len(),
            mb(files.iter().map(|f| f.data.len() as u64).sum()),
            t.elapsed().as_secs_f64()
        );
        series.push((info, files));
    }

    println!("# scipcache measurements\n");
    println!(
        "Single thread; each timing is the fastest of a few runs on a shared machine \
         ({} cores visible). MB = 10^6 bytes.\n",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let mut recommended = None;
    if matches!(args.mode, Mode::Chunking | Mode::All) {
        recommended = chunking_section(&series)?;
    }
    if matches!(args.mode, Mode::Zstd | Mode::All) {
        let (avg, why) = match (args.avg, recommended) {
            (Some(avg), _) => (avg, "set by --avg"),
            (None, Some(kib)) => (kib * 1024, "the chunking section's recommendation"),
            (None, None) => (DEFAULT_AVG_CHUNK, "the engine's default"),
        };
        zstd_section(&series, avg, why, args.sample)?;
    }
    Ok(())
}

fn parse_args() -> Result<Args> {
    let mut mode = None;
    let mut avg_kib = None;
    let mut sample_mib = 24usize;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "chunking" => mode = Some(Mode::Chunking),
            "zstd" => mode = Some(Mode::Zstd),
            "all" => mode = Some(Mode::All),
            "--avg" => {
                let value = it.next().context("--avg needs a value")?;
                avg_kib = Some(value.parse::<u32>().context("--avg takes whole KiB")?);
            }
            "--sample-mib" => {
                sample_mib = it
                    .next()
                    .context("--sample-mib needs a value")?
                    .parse()
                    .context("--sample-mib takes whole MiB")?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let Some(mode) = mode else {
        bail!("which measurement?\n{USAGE}");
    };
    let avg = match avg_kib {
        Some(kib) => {
            let avg = kib.checked_mul(1024).context("--avg is too large")?;
            ChunkerSpec::fastcdc(avg)
                .validate()
                .with_context(|| format!("--avg {kib}"))?;
            Some(avg)
        }
        None => None,
    };
    ensure!(sample_mib > 0, "--sample-mib must be positive");
    Ok(Args {
        mode,
        avg,
        sample: sample_mib * MIB,
    })
}

// ---------------------------------------------------------------------------------------------
// Chunk size

/// One commit pushed into the simulated store at one average chunk size.
struct CommitRun {
    name: String,
    len: u64,
    chunks: u64,
    /// Chunks cut at the maximum size rather than at a content-defined point.
    at_max: u64,
    /// Bytes of this commit whose chunk the store held before the commit arrived.
    stored_before: u64,
    /// Byte-identical to the previous commit.
    identical: bool,
    /// Chunks (and their raw and lz4-frame bytes) this commit added to the store.
    new_chunks: u64,
    new_lz4: u64,
}

impl CommitRun {
    fn share_stored(&self) -> f64 {
        ratio(self.stored_before as f64, self.len as f64)
    }

    /// What pushing this commit costs the hot tier and the wire beyond the raw upload: new lz4
    /// bytes and LMDB entries, the manifest, the FindMissing request.
    fn push_cost(&self) -> u64 {
        self.new_lz4
            + self.new_chunks * LMDB_ENTRY
            + self.chunks * (MANIFEST_ENTRY + FIND_MISSING_ID)
    }
}

/// One series pushed commit by commit at one average chunk size.
struct AvgRun {
    avg_kib: u32,
    commits: Vec<CommitRun>,
    unique_chunks: u64,
    unique_raw: u64,
    unique_lz4: u64,
    chunk_hash_time: Duration,
    lz4_time: Duration,
}

impl AvgRun {
    fn total_bytes(&self) -> u64 {
        self.commits.iter().map(|c| c.len).sum()
    }

    fn total_chunks(&self) -> u64 {
        self.commits.iter().map(|c| c.chunks).sum()
    }

    fn total_at_max(&self) -> u64 {
        self.commits.iter().map(|c| c.at_max).sum()
    }

    /// Commits 2..N.
    fn next_commits(&self) -> &[CommitRun] {
        self.commits.get(1..).unwrap_or_default()
    }
}

fn run_avg(files: &[ScipFile], avg_kib: u32) -> Result<AvgRun> {
    let spec = ChunkerSpec::fastcdc(avg_kib * 1024);
    let splitter = spec.splitter()?;
    let mut store: HashSet<ChunkId> = HashSet::new();
    let mut run = AvgRun {
        avg_kib,
        commits: Vec::with_capacity(files.len()),
        unique_chunks: 0,
        unique_raw: 0,
        unique_lz4: 0,
        chunk_hash_time: Duration::ZERO,
        lz4_time: Duration::ZERO,
    };
    let mut prev: Option<&[u8]> = None;
    for file in files {
        let data = file.data.as_slice();
        let (time, chunks) = best_of(|| Ok(chunk_and_hash(&splitter, data)))?;
        run.chunk_hash_time += time;
        let stored_before = chunks
            .iter()
            .filter(|(_, id)| store.contains(id))
            .map(|(r, _)| r.len() as u64)
            .sum();
        let (mut new_chunks, mut new_lz4) = (0, 0);
        for (range, id) in &chunks {
            if store.insert(*id) {
                let raw = &data[range.clone()];
                let t = Instant::now();
                let frame = Frame::encode(raw, Compression::Lz4)?;
                run.lz4_time += t.elapsed();
                new_chunks += 1;
                new_lz4 += frame.stored_len() as u64;
                run.unique_raw += raw.len() as u64;
            }
        }
        run.unique_chunks += new_chunks;
        run.unique_lz4 += new_lz4;
        run.commits.push(CommitRun {
            name: file.name.clone(),
            len: data.len() as u64,
            chunks: chunks.len() as u64,
            at_max: chunks
                .iter()
                .filter(|(r, _)| r.len() == spec.max as usize)
                .count() as u64,
            stored_before,
            identical: prev == Some(data),
            new_chunks,
            new_lz4,
        });
        prev = Some(data);
    }
    Ok(run)
}

/// Cut points and BLAKE3 ids, the client's and the server's first step on every push.
fn chunk_and_hash(splitter: &FastCdc, data: &[u8]) -> Vec<(Range<usize>, ChunkId)> {
    splitter
        .cut_all(data)
        .map(|r| {
            let id = ChunkId::of(&data[r.clone()]);
            (r, id)
        })
        .collect()
}

/// Prints the chunk-size tables; returns the recommended average in KiB.
fn chunking_section(series: &[(&SeriesInfo, Vec<ScipFile>)]) -> Result<Option<u32>> {
    println!("## Chunk size: FastCDC v2020, min = avg/4, max = avg*4\n");
    println!(
        "Each series is pushed commit by commit, oldest first, into one simulated per-tenant \
         chunk store (a set of BLAKE3 chunk ids). \"Already stored\" is the share of a commit's \
         bytes whose chunks the store held before that commit, over commits 2..N. Hot tier = \
         unique chunks as lz4 frames (6-byte header included) plus {LMDB_ENTRY} B of LMDB \
         entry per unique chunk. Per-commit wire/metadata: manifest {MANIFEST_ENTRY} B and \
         FindMissing id {FIND_MISSING_ID} B per chunk.\n"
    );
    let mut per_series = Vec::new();
    for (info, files) in series {
        let runs = AVGS_KIB
            .iter()
            .map(|&avg| run_avg(files, avg))
            .collect::<Result<Vec<_>>>()?;
        print_chunking_series(info, files, &runs);
        per_series.push((*info, runs));
    }
    Ok(print_chunking_recommendation(&per_series))
}

fn print_chunking_series(info: &SeriesInfo, files: &[ScipFile], runs: &[AvgRun]) {
    let total: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    println!(
        "### Series {}: {} commits, {:.1} MB in total\n",
        info.name,
        files.len(),
        mb(total)
    );
    let Some(first) = runs.first() else {
        return;
    };
    let identical: Vec<&str> = first
        .commits
        .iter()
        .filter(|c| c.identical)
        .map(|c| c.name.as_str())
        .collect();
    if !identical.is_empty() {
        println!(
            "Byte-identical to the previous commit: {} (100% already stored at every size).",
            identical.join(", ")
        );
    }
    let outlier = info.outlier.map_or_else(String::new, |o| {
        format!(
            "; \"excl. {}\" leaves out commit {}, \"changed only\" also leaves out the identical \
             commits",
            o.trim_end_matches('_'),
            o.trim_end_matches('_')
        )
    });
    println!(
        "Already-stored shares over commits 2..{}{outlier}.\n",
        files.len()
    );

    println!(
        "| avg | real mean chunk | cut at max | already stored: median | mean | mean excl. \
         outlier | mean, changed only | unique raw MB | unique lz4 MB | dedup × (input / \
         unique raw) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let next = run.next_commits();
        let shares: Vec<f64> = next.iter().map(CommitRun::share_stored).collect();
        let typical: Vec<f64> = next
            .iter()
            .filter(|c| !is_outlier(info, c))
            .map(CommitRun::share_stored)
            .collect();
        let changed: Vec<f64> = next
            .iter()
            .filter(|c| !is_outlier(info, c) && !c.identical)
            .map(CommitRun::share_stored)
            .collect();
        println!(
            "| {} KiB | {:.1} KiB | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            run.avg_kib,
            ratio(run.total_bytes() as f64, run.total_chunks() as f64) / KIB as f64,
            pct(ratio(run.total_at_max() as f64, run.total_chunks() as f64)),
            pct(median(&shares)),
            pct(mean(&shares)),
            info.outlier.map_or("—".to_owned(), |_| pct(mean(&typical))),
            pct(mean(&changed)),
            mb(run.unique_raw),
            mb(run.unique_lz4),
            ratio(run.total_bytes() as f64, run.unique_raw as f64),
        );
    }
    println!();

    println!(
        "| avg | chunks / commit | manifest / commit | FindMissing / commit | unique chunks | \
         LMDB entries MB | hot tier MB (lz4 + entries) | push cost / next commit, KB | \
         chunk+hash MB/s | lz4 MB/s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let n = run.commits.len().max(1) as f64;
        let chunks_per_commit = run.total_chunks() as f64 / n;
        let next = run.next_commits();
        let cost = mean(
            &next
                .iter()
                .map(|c| c.push_cost() as f64)
                .collect::<Vec<_>>(),
        );
        println!(
            "| {} KiB | {:.0} | {:.1} KB | {:.1} KB | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
            run.avg_kib,
            chunks_per_commit,
            chunks_per_commit * MANIFEST_ENTRY as f64 / 1e3,
            chunks_per_commit * FIND_MISSING_ID as f64 / 1e3,
            run.unique_chunks,
            mb(run.unique_chunks * LMDB_ENTRY),
            mb(run.unique_lz4 + run.unique_chunks * LMDB_ENTRY),
            cost / 1e3,
            throughput(run.total_bytes(), run.chunk_hash_time),
            throughput(run.unique_raw, run.lz4_time),
        );
    }
    println!(
        "\nPush cost = new lz4 bytes + {LMDB_ENTRY} B per new chunk + manifest + FindMissing, \
         mean over commits 2..N (identical commits included: they still send a manifest).\n"
    );

    println!("Per commit, share of its bytes already stored:\n");
    let header: Vec<String> = runs.iter().map(|r| format!("{} KiB", r.avg_kib)).collect();
    println!("| commit | MB | {} |", header.join(" | "));
    println!("| --- | --- |{}", " --- |".repeat(runs.len()));
    for (i, file) in files.iter().enumerate() {
        let shares: Vec<String> = runs
            .iter()
            .map(|r| {
                r.commits
                    .get(i)
                    .map_or("—".to_owned(), |c| pct(c.share_stored()))
            })
            .collect();
        let mark = if first.commits.get(i).is_some_and(|c| c.identical) {
            " (identical)"
        } else {
            ""
        };
        println!(
            "| {}{mark} | {:.2} | {} |",
            file.name,
            mb(file.data.len() as u64),
            shares.join(" | ")
        );
    }
    println!();
}

fn is_outlier(info: &SeriesInfo, commit: &CommitRun) -> bool {
    info.outlier.is_some_and(|o| commit.name.starts_with(o))
}

/// Recommends the average whose push cost (typical commits, outlier excluded), normalised to
/// the best average of each series, sums lowest over the series.
fn print_chunking_recommendation(per_series: &[(&SeriesInfo, Vec<AvgRun>)]) -> Option<u32> {
    let mut scores = vec![0.0f64; AVGS_KIB.len()];
    for (info, runs) in per_series {
        let costs: Vec<f64> = runs
            .iter()
            .map(|r| {
                let c: Vec<f64> = r
                    .next_commits()
                    .iter()
                    .filter(|c| !is_outlier(info, c))
                    .map(|c| c.push_cost() as f64)
                    .collect();
                mean(&c)
            })
            .collect();
        let best = costs.iter().copied().fold(f64::INFINITY, f64::min);
        for (score, cost) in scores.iter_mut().zip(&costs) {
            *score += ratio(*cost, best);
        }
    }
    let (best_i, _) = scores
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))?;
    let listed: Vec<String> = AVGS_KIB
        .iter()
        .zip(&scores)
        .map(|(avg, s)| format!("{avg} KiB {s:.2}"))
        .collect();
    println!(
        "**Recommendation:** avg {} KiB: lowest push cost per typical commit (new lz4 bytes + \
         per-chunk entries + manifest + FindMissing, outlier excluded), summed over the series \
         relative to each series' best size (1.00 per series is ideal): {}.\n",
        AVGS_KIB[best_i],
        listed.join(", ")
    );
    Some(AVGS_KIB[best_i])
}

// ---------------------------------------------------------------------------------------------
// zstd levels

/// The unique chunks of `data`, in order of first appearance.
fn unique_chunks<'a>(splitter: &FastCdc, data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut seen = HashSet::new();
    splitter
        .cut_all(data)
        .map(|r| &data[r])
        .filter(|c| seen.insert(ChunkId::of(c)))
        .collect()
}

/// Consecutive chunks grouped into packs of about [`PACK_TARGET`] bytes.
fn into_packs<'a>(chunks: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut packs = Vec::new();
    let mut pack = Vec::new();
    let mut len = 0;
    for &c in chunks {
        pack.push(c);
        len += c.len();
        if len >= PACK_TARGET {
            packs.push(std::mem::take(&mut pack));
            len = 0;
        }
    }
    if !pack.is_empty() {
        packs.push(pack);
    }
    packs
}

/// All packs when they fit in `cap`, else `cap / PACK_TARGET` of them spread evenly.
fn sample_packs(packs: Vec<Vec<&[u8]>>, cap: usize) -> Vec<Vec<&[u8]>> {
    let total: usize = packs.iter().flatten().map(|c| c.len()).sum();
    if total <= cap {
        return packs;
    }
    let n = packs.len();
    let k = (cap / PACK_TARGET).clamp(1, n);
    let picks: Vec<usize> = (0..k).map(|i| (2 * i + 1) * n / (2 * k)).collect();
    packs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| picks.contains(i))
        .map(|(_, p)| p)
        .collect()
}

/// One codec setting measured on one set of bytes.
struct CodecRow {
    label: String,
    bytes: u64,
    chunk_ratio: f64,
    chunk_mbps: f64,
    chunk_reused_mbps: Option<f64>,
    chunk_dec_mbps: f64,
    pack_ratio: f64,
    pack_mbps: f64,
    pack_dec_mbps: f64,
}

fn measure_codec(
    label: String,
    compression: Compression,
    packs: &[Vec<&[u8]>],
    reused_ctx: bool,
) -> Result<CodecRow> {
    let chunks: Vec<&[u8]> = packs.iter().flatten().copied().collect();
    let raw: u64 = chunks.iter().map(|c| c.len() as u64).sum();

    // Per chunk, through the engine's frame codec: what the hot and warm tiers store.
    let (enc_time, frames) = best_of(|| {
        chunks
            .iter()
            .map(|c| Frame::encode(c, compression))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::from)
    })?;
    let stored: u64 = frames.iter().map(|f| f.stored_len() as u64).sum();
    let (dec_time, decoded) = best_of(|| {
        frames
            .iter()
            .map(|f| f.decode(MAX_CHUNK_LEN).map(|b| b.len() as u64))
            .sum::<Result<u64, _>>()
            .map_err(anyhow::Error::from)
    })?;
    ensure!(decoded == raw, "per-chunk round trip lost bytes");
    for (frame, chunk) in frames.iter().zip(&chunks) {
        ensure!(
            frame.decode(MAX_CHUNK_LEN)?.as_ref() == *chunk,
            "per-chunk round trip changed a chunk"
        );
    }
    let chunk_reused_mbps = match compression {
        Compression::Zstd(level) if reused_ctx => {
            let mut ctx = zstd::bulk::Compressor::new(level)?;
            let (t, _) = best_of(|| {
                chunks
                    .iter()
                    .map(|c| ctx.compress(c).map(|v| v.len() as u64))
                    .sum::<Result<u64, _>>()
                    .map_err(anyhow::Error::from)
            })?;
            Some(throughput(raw, t))
        }
        _ => None,
    };

    // Per pack: the chunks concatenated and compressed as one unit.
    let bodies: Vec<Vec<u8>> = packs.iter().map(|p| p.concat()).collect();
    let (pack_time, packed) = best_of(|| {
        bodies
            .iter()
            .map(|b| compress_pack(b, compression))
            .collect::<Result<Vec<_>>>()
    })?;
    let packed_len: u64 = packed.iter().map(|p| p.len() as u64).sum();
    let (pack_dec_time, unpacked) = best_of(|| {
        packed
            .iter()
            .zip(&bodies)
            .map(|(p, b)| decompress_pack(p, b.len(), compression).map(|v| v.len() as u64))
            .sum::<Result<u64>>()
    })?;
    ensure!(unpacked == raw, "per-pack round trip lost bytes");

    Ok(CodecRow {
        label,
        bytes: raw,
        chunk_ratio: ratio(raw as f64, stored as f64),
        chunk_mbps: throughput(raw, enc_time),
        chunk_reused_mbps,
        chunk_dec_mbps: throughput(raw, dec_time),
        pack_ratio: ratio(raw as f64, packed_len as f64),
        pack_mbps: throughput(raw, pack_time),
        pack_dec_mbps: throughput(raw, pack_dec_time),
    })
}

fn compress_pack(body: &[u8], compression: Compression) -> Result<Vec<u8>> {
    Ok(match compression {
        Compression::Zstd(level) => zstd::bulk::compress(body, level)?,
        Compression::Lz4 | Compression::Raw => {
            Frame::encode(body, compression)?.into_bytes().to_vec()
        }
    })
}

fn decompress_pack(packed: &[u8], len: usize, compression: Compression) -> Result<Vec<u8>> {
    Ok(match compression {
        Compression::Zstd(_) => zstd::bulk::decompress(packed, len)?,
        Compression::Lz4 | Compression::Raw => {
            Frame::from_bytes(bytes::Bytes::copy_from_slice(packed))?
                .decode(MAX_CHUNK_LEN)?
                .to_vec()
        }
    })
}

fn zstd_section(
    series: &[(&SeriesInfo, Vec<ScipFile>)],
    avg: u32,
    why: &str,
    cap: usize,
) -> Result<()> {
    let splitter = ChunkerSpec::fastcdc(avg).splitter()?;
    println!(
        "## zstd levels for the warm and cold tiers (lz4 for comparison)\n\n\
         Bytes: the unique chunks (FastCDC avg {} KiB, {why}) of the first commit of each \
         series. \
         \"Per chunk\" encodes each chunk alone as an engine frame (`Frame::encode`, a fresh \
         zstd context per chunk, as the tiers store it; \"reused ctx\" is the same with one \
         `zstd::bulk::Compressor` kept across chunks, measured for levels <= \
         {REUSED_CTX_MAX_LEVEL}). \"Per pack\" concatenates consecutive chunks into packs of \
         ~{} MiB and compresses each pack as one zstd frame. Every level is measured on the \
         same bytes: all of the commit's unique chunks when they fit in {} MiB, else {} \
         packs spread evenly through it (the cap keeps level 19, ~2-3 MB/s, to a few \
         seconds); a zstd-3 row over all unique bytes checks that sample. Ratio = raw / \
         stored; MB/s of raw bytes, one thread.\n",
        avg / 1024,
        PACK_TARGET / MIB,
        cap / MIB,
        (cap / PACK_TARGET).max(1),
    );
    for (info, files) in series {
        let Some(file) = files.first() else {
            continue;
        };
        let unique = unique_chunks(&splitter, &file.data);
        let unique_bytes: usize = unique.iter().map(|c| c.len()).sum();
        let all_packs = into_packs(&unique);
        let sample = sample_packs(all_packs.clone(), cap);
        let sample_bytes: usize = sample.iter().flatten().map(|c| c.len()).sum();
        println!(
            "### Series {}, commit {}: {:.1} MB, {} unique chunks, {:.1} MB unique; measured \
             {:.1} MB in {} of {} packs\n",
            info.name,
            file.name,
            mb(file.data.len() as u64),
            unique.len(),
            mb(unique_bytes as u64),
            mb(sample_bytes as u64),
            sample.len(),
            all_packs.len()
        );
        println!(
            "| codec | MB measured | per chunk: ratio | compress MB/s | compress MB/s, reused \
             ctx | decompress MB/s | per pack: ratio | compress MB/s | decompress MB/s |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut rows = vec![measure_codec(
            "lz4".to_owned(),
            Compression::Lz4,
            &sample,
            false,
        )?];
        for level in LEVELS {
            let t = Instant::now();
            rows.push(measure_codec(
                format!("zstd {level}"),
                Compression::Zstd(level),
                &sample,
                level <= REUSED_CTX_MAX_LEVEL,
            )?);
            eprintln!(
                "series {} zstd {level}: {:.1} s",
                info.name,
                t.elapsed().as_secs_f64()
            );
        }
        if sample_bytes < unique_bytes {
            rows.push(measure_codec(
                "zstd 3, all unique bytes".to_owned(),
                Compression::Zstd(3),
                &all_packs,
                true,
            )?);
        }
        for row in &rows {
            println!(
                "| {} | {:.1} | {:.2} | {} | {} | {} | {:.2} | {} | {} |",
                row.label,
                mb(row.bytes),
                row.chunk_ratio,
                rate(row.chunk_mbps),
                row.chunk_reused_mbps.map_or("—".to_owned(), rate),
                rate(row.chunk_dec_mbps),
                row.pack_ratio,
                rate(row.pack_mbps),
                rate(row.pack_dec_mbps),
            );
        }
        println!();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `f` at least twice and until 0.6 s have passed (once when a run takes over 3 s, at
/// most 5 times), returning the fastest run's time and the last run's output.
fn best_of<T>(mut f: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let start = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    loop {
        let t = Instant::now();
        let out = f()?;
        best = best.min(t.elapsed());
        runs += 1;
        let spent = start.elapsed();
        let done = best > Duration::from_secs(3)
            || runs >= 5
            || (runs >= 2 && spent > Duration::from_millis(600));
        if done {
            return Ok((best, out));
        }
    }
}

/// A rate in MB/s, with a decimal only where it is small enough to need one.
fn rate(mbps: f64) -> String {
    if mbps < 10.0 {
        format!("{mbps:.1}")
    } else {
        format!("{mbps:.0}")
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn throughput(bytes: u64, time: Duration) -> f64 {
    ratio(mb(bytes), time.as_secs_f64())
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn mean(values: &[f64]) -> f64 {
    ratio(values.iter().sum(), values.len() as f64)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
