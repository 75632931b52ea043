//! `scip_extras`: what per-path deltas, a trained dictionary and multi-chunk cold frames would
//! save on top of SCIP-aware cutting, without a daemon.
//!
//! ```text
//! cargo run --release -p scipcache-bench --bin scip_extras -- [--series DIR]... [--no-default]
//! ```
//!
//! Each series (A and B from the shared data unless `--no-default`, plus any `--series DIR` of
//! `NN_*.scip.zst` files) is cut commit by commit with `CutMode::Normalized` and the default
//! chunker; each distinct chunk (BLAKE3 of its stored bytes) is stored once, in push order.
//! Stored bytes, summed over the distinct chunks:
//! 1. baseline: every chunk its own zstd frame, level 3 (warm) and 19 (cold);
//! 2. per-path delta: a new chunk of commit k >= 2 compressed with, as zstd reference prefix,
//!    the previous commit's stored bytes of the same top-level units (documents by
//!    `relative_path`, external symbols by `symbol`, the metadata); the smaller of delta and
//!    baseline is kept. Of a unit larger than `REF_WINDOW` only the window around the chunk's
//!    offset is referenced. Every delta is decompressed and compared;
//! 3. a dictionary (`zstd::dict::from_samples`, `DICT_SIZE`) trained on the first commit's
//!    chunks (at most `DICT_SAMPLES` bytes of them, evenly spread), applied to every chunk;
//!    stored bytes include the dictionary once;
//! 4. cold frames: consecutive distinct chunks in push order compressed together at level 19
//!    in frames of at least `FRAME` bytes (a frame closes once it reaches it), and what that
//!    costs a single-chunk cold read: decompressing the whole frame vs the chunk's own frame
//!    (median over a sample of chunks, each the median of a few runs) and the bytes fetched.
//!    For reference, the same with the engine's cold packs (~8 MiB, zstd 9).
//!
//! Savings are against the baseline at the same level, over the whole series and over commits
//! 2..n alone (where deltas can apply). Markdown on stdout, progress on stderr.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use scipcache_bench::{ScipFile, read_scip, require_data, scip_series};
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::scip::{CutMode, Cutter};
use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter};

/// Dictionary size (zstd's default for `--train`).
const DICT_SIZE: usize = 110 * 1024;
/// At most this many bytes of the first commit's chunks train the dictionary.
const DICT_SAMPLES: usize = 24 << 20;
/// Cold frame target size.
const FRAME: usize = 256 * 1024;
/// Largest piece of one previous unit a delta references.
const REF_WINDOW: usize = 4 << 20;
/// Chunks sampled for the cold-read timing.
const READ_SAMPLES: usize = 200;
/// The engine's cold pack size and level, for reference.
const PACK: usize = 8 << 20;
const PACK_LEVEL: i32 = 9;
/// Runs per timed decompression (the median is kept).
const READ_RUNS: usize = 5;
const WARM: i32 = 3;
const COLD: i32 = 19;

fn main() -> Result<()> {
    let mut extra = Vec::new();
    let mut defaults = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--series" => extra.push(PathBuf::from(args.next().context("--series DIR")?)),
            "--no-default" => defaults = false,
            other => bail!("unknown argument {other}"),
        }
    }
    let mut all: Vec<(String, Vec<ScipFile>)> = Vec::new();
    if defaults {
        for name in ["A", "B"] {
            if let Some(files) = require_data(&format!("series {name}"), scip_series(name)) {
                all.push((name.into(), files));
            }
        }
    }
    for dir in extra {
        all.push((series_name(&dir), load_dir(&dir)?));
    }
    for (name, files) in &all {
        eprintln!("series {name}: {} commits", files.len());
        let series = cut_series(files)?;
        report(name, files, &series)?;
    }
    Ok(())
}

fn series_name(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into())
}

fn load_dir(dir: &Path) -> Result<Vec<ScipFile>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".scip.zst"))
        .collect();
    paths.sort();
    ensure!(!paths.is_empty(), "no *.scip.zst in {}", dir.display());
    paths
        .iter()
        .map(|p| {
            let name = p.file_name().map_or_else(String::new, |n| {
                n.to_string_lossy().trim_end_matches(".scip.zst").to_owned()
            });
            Ok(ScipFile {
                name,
                data: read_scip(p)?,
            })
        })
        .collect()
}

/// One distinct chunk, in push order.
struct Chunk {
    commit: usize,
    data: Bytes,
}

/// Compressed sizes of the new chunks of commits 2..n that had a reference: (delta, baseline)
/// per level.
#[derive(Default)]
struct Deltas {
    chunks: usize,
    raw: u64,
    reference: u64,
    warm: (u64, u64),
    cold: (u64, u64),
    seconds: f64,
}

struct Series {
    chunks: Vec<Chunk>,
    deltas: Deltas,
    normalized_chunks: usize,
}

/// A top-level unit of an index: which field, its identity, where it lies.
type UnitMap = HashMap<Vec<u8>, Range<usize>>;

fn cut_series(files: &[ScipFile]) -> Result<Series> {
    let mut seen: HashSet<blake3::Hash> = HashSet::new();
    let mut chunks = Vec::new();
    let mut deltas = Deltas::default();
    let mut normalized_chunks = 0;
    let mut prev: Option<(Vec<u8>, UnitMap)> = None;
    for (commit, f) in files.iter().enumerate() {
        let units = units(&f.data);
        let cuts = cut(&f.data)?;
        let mut stored = Vec::with_capacity(f.data.len());
        for c in &cuts {
            stored.extend_from_slice(&c.0);
        }
        ensure!(
            stored.len() == f.data.len(),
            "{}: stored form is {} bytes, input {} (placeholders should keep lengths)",
            f.name,
            stored.len(),
            f.data.len()
        );
        let mut at = 0usize;
        for (data, normalized) in cuts {
            let range = at..at + data.len();
            at = range.end;
            if !seen.insert(blake3::hash(&data)) {
                continue;
            }
            normalized_chunks += usize::from(normalized);
            if let Some((prev_stored, prev_units)) = &prev {
                let reference = reference(&units, prev_stored, prev_units, &range);
                if !reference.is_empty() {
                    let started = Instant::now();
                    deltas.chunks += 1;
                    deltas.raw += data.len() as u64;
                    deltas.reference += reference.len() as u64;
                    for (level, sizes) in [(WARM, &mut deltas.warm), (COLD, &mut deltas.cold)] {
                        let d = delta_size(&data, &reference, level)?;
                        let plain = zstd::bulk::compress(&data, level)?.len() as u64;
                        sizes.0 += d.min(plain);
                        sizes.1 += plain;
                    }
                    deltas.seconds += started.elapsed().as_secs_f64();
                }
            }
            chunks.push(Chunk { commit, data });
        }
        prev = Some((stored, units.into_iter().collect()));
        eprintln!("  {}: {} distinct chunks so far", f.name, chunks.len());
    }
    Ok(Series {
        chunks,
        deltas,
        normalized_chunks,
    })
}

/// Every chunk of `data` (stored bytes, normalized), fed in 4 MiB blocks as the CLI does.
fn cut(data: &[u8]) -> Result<Vec<(Bytes, bool)>> {
    let mut cutter = Cutter::new(ChunkerSpec::default(), CutMode::Normalized)?;
    let mut out = Vec::new();
    for block in data.chunks(4 << 20) {
        cutter.push(block);
        while let Some(c) = cutter.next_cut(false)? {
            out.push((c.data, c.normalized));
        }
    }
    while let Some(c) = cutter.next_cut(true)? {
        out.push((c.data, c.normalized));
    }
    Ok(out)
}

/// The reference for the chunk at `range` of the current blob: for each top-level unit it
/// overlaps, that unit's stored bytes in the previous commit (a window around the same offset
/// when the unit is large), in order.
fn reference(
    units: &[(Vec<u8>, Range<usize>)],
    prev_stored: &[u8],
    prev_units: &UnitMap,
    range: &Range<usize>,
) -> Vec<u8> {
    let first = units.partition_point(|(_, r)| r.end <= range.start);
    let mut out = Vec::new();
    for (key, unit) in units[first..]
        .iter()
        .take_while(|(_, r)| r.start < range.end)
    {
        let Some(p) = prev_units.get(key) else {
            continue;
        };
        let mut piece = p.clone();
        if piece.len() > REF_WINDOW {
            let offset = range.start.saturating_sub(unit.start);
            let centre = p.start + offset.min(p.len());
            let start = centre.saturating_sub(REF_WINDOW / 2).max(p.start);
            piece = start..(start + REF_WINDOW).min(p.end);
        }
        out.extend_from_slice(&prev_stored[piece]);
    }
    out
}

/// The compressed size of `data` with `reference` as zstd raw prefix
/// (`ZSTD_CCtx_refPrefix`), checked by decompressing it again. A context per call: a prefix
/// borrow lasts as long as its context.
fn delta_size(data: &[u8], reference: &[u8], level: i32) -> Result<u64> {
    let z = |code: usize| anyhow::anyhow!("zstd: {}", zstd::zstd_safe::get_error_name(code));
    let window = window_log(reference.len() + data.len());
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(z)?;
    cctx.set_parameter(CParameter::WindowLog(window))
        .map_err(z)?;
    cctx.ref_prefix(reference).map_err(z)?;
    cctx.compress2(&mut out, data).map_err(z)?;
    let mut dctx = DCtx::create();
    dctx.set_parameter(DParameter::WindowLogMax(window))
        .map_err(z)?;
    dctx.ref_prefix(reference).map_err(z)?;
    let mut back = Vec::with_capacity(data.len());
    dctx.decompress(&mut back, &out).map_err(z)?;
    ensure!(back == data, "a delta did not decompress to its chunk");
    Ok(out.len() as u64)
}

/// The smallest window log (at least 10, at most 27) that covers `len` bytes.
fn window_log(len: usize) -> u32 {
    let mut log = 10;
    while log < 27 && (1usize << log) < len {
        log += 1;
    }
    log
}

/// The top-level units of an index, in order: key (field number, then `relative_path` for a
/// document, `symbol` for an external symbol, nothing for the metadata) and byte range
/// (header included). Stops where the bytes stop being an index.
fn units(data: &[u8]) -> Vec<(Vec<u8>, Range<usize>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let Some((number, value)) = len_field(data, pos) else {
            break;
        };
        let mut key = vec![number as u8];
        if number == 2 || number == 3 {
            // Document.relative_path = 1, SymbolInformation.symbol = 1.
            let body = &data[value.clone()];
            let mut at = 0;
            while at < body.len() {
                let Some((n, v)) = any_field(body, at) else {
                    break;
                };
                if n.0 == 1 && n.1 == 2 {
                    key.extend_from_slice(&body[v.clone()]);
                    break;
                }
                at = v.end;
            }
        }
        out.push((key, pos..value.end));
        pos = value.end;
    }
    out
}

/// A length-delimited field at `pos`: its number and value range.
fn len_field(data: &[u8], pos: usize) -> Option<(u32, Range<usize>)> {
    let ((number, wire), v) = any_field(data, pos)?;
    (wire == 2).then_some((number, v))
}

/// Any field at `pos`: (number, wire type) and the range of its value (for a varint or a
/// fixed field, the bytes after the key), `None` when malformed.
fn any_field(data: &[u8], pos: usize) -> Option<((u32, u8), Range<usize>)> {
    let (key, n) = varint(&data[pos..])?;
    let start = pos + n;
    let (number, wire) = (u32::try_from(key >> 3).ok()?, (key & 7) as u8);
    let end = match wire {
        0 => start + varint(&data[start..])?.1,
        1 => start + 8,
        2 => {
            let (len, m) = varint(&data[start..])?;
            let s = start + m;
            let end = s.checked_add(usize::try_from(len).ok()?)?;
            if end > data.len() {
                return None;
            }
            return Some(((number, wire), s..end));
        }
        5 => start + 4,
        _ => return None,
    };
    (end <= data.len()).then_some(((number, wire), start..end))
}

fn varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Per-chunk compressed sizes at one level, with or without a dictionary.
fn per_chunk(chunks: &[Chunk], level: i32, dict: Option<&[u8]>) -> Result<Vec<Vec<u8>>> {
    let mut c = match dict {
        Some(d) => zstd::bulk::Compressor::with_dictionary(level, d)?,
        None => zstd::bulk::Compressor::new(level)?,
    };
    chunks.iter().map(|ch| Ok(c.compress(&ch.data)?)).collect()
}

/// Sums of `sizes` over all chunks and over those of commits 2..n.
fn sums(chunks: &[Chunk], sizes: impl Iterator<Item = u64>) -> (u64, u64) {
    chunks
        .iter()
        .zip(sizes)
        .fold((0, 0), |(all, later), (c, s)| {
            (all + s, later + if c.commit > 0 { s } else { 0 })
        })
}

struct Row {
    what: String,
    all: u64,
    later: u64,
    base: (u64, u64),
    seconds: f64,
}

fn report(name: &str, files: &[ScipFile], s: &Series) -> Result<()> {
    let chunks = &s.chunks;
    let raw = sums(chunks, chunks.iter().map(|c| c.data.len() as u64));
    let input: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    let mut rows = Vec::new();

    // 1. Baseline.
    let mut base = HashMap::new();
    let mut cold_frames = Vec::new();
    for level in [WARM, COLD] {
        let started = Instant::now();
        let out = per_chunk(chunks, level, None)?;
        let seconds = started.elapsed().as_secs_f64();
        let b = sums(chunks, out.iter().map(|o| o.len() as u64));
        base.insert(level, b);
        rows.push(Row {
            what: format!("baseline: one frame per chunk, zstd {level}"),
            all: b.0,
            later: b.1,
            base: b,
            seconds,
        });
        if level == COLD {
            cold_frames = out;
        }
        eprintln!("  baseline {level}: {seconds:.1} s");
    }

    // 2. Per-path deltas (computed while cutting).
    let d = &s.deltas;
    for (level, (delta, plain)) in [(WARM, d.warm), (COLD, d.cold)] {
        let b = base[&level];
        rows.push(Row {
            what: format!("per-path delta vs previous commit, zstd {level}"),
            all: b.0 - plain + delta,
            later: b.1 - plain + delta,
            base: b,
            seconds: f64::NAN,
        });
    }

    // 3. Dictionary trained on the first commit's chunks.
    let first: Vec<&Chunk> = chunks.iter().filter(|c| c.commit == 0).collect();
    let first_bytes: usize = first.iter().map(|c| c.data.len()).sum();
    let stride = first_bytes.div_ceil(DICT_SAMPLES).max(1);
    let samples: Vec<&[u8]> = first
        .iter()
        .step_by(stride)
        .map(|c| c.data.as_ref())
        .collect();
    let sample_bytes: usize = samples.iter().map(|s| s.len()).sum();
    let started = Instant::now();
    let dict = zstd::dict::from_samples(&samples, DICT_SIZE)?;
    let train = started.elapsed().as_secs_f64();
    eprintln!(
        "  dictionary: {} bytes from {} samples ({sample_bytes} bytes) in {train:.1} s",
        dict.len(),
        samples.len()
    );
    for level in [WARM, COLD] {
        let started = Instant::now();
        let out = per_chunk(chunks, level, Some(&dict))?;
        let seconds = started.elapsed().as_secs_f64();
        let (all, later) = sums(chunks, out.iter().map(|o| o.len() as u64));
        rows.push(Row {
            what: format!(
                "dictionary ({} KiB, stored once), zstd {level}",
                dict.len() / 1024
            ),
            all: all + dict.len() as u64,
            later,
            base: base[&level],
            seconds,
        });
        eprintln!("  dictionary {level}: {seconds:.1} s");
    }

    // 4. Cold frames of >= FRAME bytes of consecutive chunks, and the engine's packs.
    let mut reads = Vec::new();
    for (target, level, what) in [
        (FRAME, COLD, "cold frames"),
        (PACK, PACK_LEVEL, "reference: engine-sized packs"),
    ] {
        let started = Instant::now();
        let f = frames(chunks, target, level)?;
        let seconds = started.elapsed().as_secs_f64();
        rows.push(Row {
            what: format!(
                "{what} >= {} KiB of consecutive chunks ({} frames), zstd {level}",
                target / 1024,
                f.frames.len()
            ),
            all: f.all,
            later: f.later,
            base: base[&COLD],
            seconds,
        });
        eprintln!("  frames {target} at {level}: {seconds:.1} s");
        reads.push((target, level, read_cost(chunks, &f, &cold_frames)?));
    }

    println!(
        "\n#### Series {name}: {} commits, {:.1} MB in, {} distinct chunks ({} normalized), \
         {:.1} MB distinct ({:.1} MB in commits 2..{})\n",
        files.len(),
        input as f64 / 1e6,
        chunks.len(),
        s.normalized_chunks,
        raw.0 as f64 / 1e6,
        raw.1 as f64 / 1e6,
        files.len()
    );
    println!(
        "| stored as | all commits, MB | saving | commits 2..n, MB | saving | >= 15%: all, 2..n | CPU s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | :-: | ---: |");
    for r in &rows {
        let pct = |x: u64, b: u64| 100.0 * (b as f64 - x as f64) / b.max(1) as f64;
        let (sa, sl) = (pct(r.all, r.base.0), pct(r.later, r.base.1));
        println!(
            "| {} | {:.3} | {:.1}% | {:.3} | {:.1}% | {}, {} | {} |",
            r.what,
            r.all as f64 / 1e6,
            sa,
            r.later as f64 / 1e6,
            sl,
            yes(sa),
            yes(sl),
            if r.seconds.is_nan() {
                "-".to_owned()
            } else {
                format!("{:.2}", r.seconds)
            }
        );
    }
    println!(
        "\nDeltas: {} new chunks of commits 2..n had a previous unit to refer to ({:.2} MB raw, \
         references {:.1} MB in all); {:.1} s for both levels, check included. Per-chunk sizes \
         of those chunks: zstd {WARM} {:.3} -> {:.3} MB, zstd {COLD} {:.3} -> {:.3} MB.",
        d.chunks,
        d.raw as f64 / 1e6,
        d.reference as f64 / 1e6,
        d.seconds,
        d.warm.1 as f64 / 1e6,
        d.warm.0 as f64 / 1e6,
        d.cold.1 as f64 / 1e6,
        d.cold.0 as f64 / 1e6,
    );
    println!(
        "Dictionary trained on {} samples ({:.1} MB of the first commit's chunks) in {train:.1} s.",
        samples.len(),
        sample_bytes as f64 / 1e6
    );
    for (target, level, r) in &reads {
        println!(
            "Cold read of one chunk, frames of {} KiB at zstd {level} (median of {} sampled \
             chunks, each the median of {READ_RUNS} runs): decompressing its frame {:.0} µs, \
             {:.1} KB fetched; its own zstd {COLD} frame {:.0} µs, {:.1} KB fetched.",
            target / 1024,
            r.samples,
            r.frame_us,
            r.frame_kb,
            r.chunk_us,
            r.chunk_kb,
        );
    }
    Ok(())
}

fn yes(saving: f64) -> &'static str {
    if saving >= 15.0 { "yes" } else { "no" }
}

/// Distinct chunks compressed in frames of consecutive chunks.
struct Frames {
    /// Chunk ranges, in push order.
    frames: Vec<Range<usize>>,
    /// Each frame compressed, and its raw length.
    compressed: Vec<(Vec<u8>, usize)>,
    /// The frame of each chunk.
    frame_of: Vec<usize>,
    all: u64,
    /// Bytes attributed to commits 2..n: each frame's in proportion to their raw bytes in it.
    later: u64,
}

/// Consecutive chunks in frames that close once they hold `target` raw bytes.
fn frames(chunks: &[Chunk], target: usize, level: i32) -> Result<Frames> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut open = 0..0;
    let mut open_bytes = 0;
    for (i, c) in chunks.iter().enumerate() {
        if open.is_empty() {
            open = i..i;
            open_bytes = 0;
        }
        open.end = i + 1;
        open_bytes += c.data.len();
        if open_bytes >= target {
            ranges.push(std::mem::replace(&mut open, 0..0));
        }
    }
    if !open.is_empty() {
        ranges.push(open);
    }
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    let mut out = Frames {
        compressed: Vec::with_capacity(ranges.len()),
        frame_of: vec![0; chunks.len()],
        frames: Vec::new(),
        all: 0,
        later: 0,
    };
    for (f, range) in ranges.iter().enumerate() {
        let mut buf = Vec::new();
        let mut later_raw = 0u64;
        for (i, c) in chunks[range.clone()].iter().enumerate() {
            buf.extend_from_slice(&c.data);
            out.frame_of[range.start + i] = f;
            if c.commit > 0 {
                later_raw += c.data.len() as u64;
            }
        }
        let z = compressor.compress(&buf)?;
        out.all += z.len() as u64;
        out.later += z.len() as u64 * later_raw / (buf.len() as u64).max(1);
        out.compressed.push((z, buf.len()));
    }
    out.frames = ranges;
    Ok(out)
}

struct ReadCost {
    samples: usize,
    frame_us: f64,
    frame_kb: f64,
    chunk_us: f64,
    chunk_kb: f64,
}

/// What a single-chunk cold read costs with `f`'s frames vs one frame per chunk (`own`, zstd
/// 19): medians over up to `READ_SAMPLES` chunks spread over the series.
fn read_cost(chunks: &[Chunk], f: &Frames, own: &[Vec<u8>]) -> Result<ReadCost> {
    let step = chunks.len().div_ceil(READ_SAMPLES).max(1);
    let mut dec = zstd::bulk::Decompressor::new()?;
    let (mut t_frame, mut t_chunk, mut b_frame, mut b_chunk) = (vec![], vec![], vec![], vec![]);
    for i in (0..chunks.len()).step_by(step) {
        let (z, len) = &f.compressed[f.frame_of[i]];
        t_frame.push(time_median(|| dec.decompress(z, *len).map(drop))?);
        b_frame.push(z.len() as f64);
        let len = chunks[i].data.len();
        t_chunk.push(time_median(|| dec.decompress(&own[i], len).map(drop))?);
        b_chunk.push(own[i].len() as f64);
    }
    Ok(ReadCost {
        samples: t_frame.len(),
        frame_us: median(&mut t_frame) * 1e6,
        frame_kb: median(&mut b_frame) / 1e3,
        chunk_us: median(&mut t_chunk) * 1e6,
        chunk_kb: median(&mut b_chunk) / 1e3,
    })
}

/// The median of `READ_RUNS` timings of `f`, in seconds.
fn time_median(mut f: impl FnMut() -> std::io::Result<()>) -> Result<f64> {
    let mut t = Vec::with_capacity(READ_RUNS);
    for _ in 0..READ_RUNS {
        let started = Instant::now();
        f()?;
        t.push(started.elapsed());
    }
    t.sort();
    Ok(t.get(READ_RUNS / 2)
        .copied()
        .unwrap_or(Duration::ZERO)
        .as_secs_f64())
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
