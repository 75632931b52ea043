//! Single-core ceilings of the ingest pipeline on real SCIP data, on the first 32 MiB of the
//! first commit of each series (all of it for A, ~20.5 MB):
//!
//! - `blake3`: one `blake3::hash` over the buffer;
//! - `fastcdc_cut/<avg>`: FastCDC v2020 cut points at 16, 32 and 64 KiB averages (and the
//!   engine's default, [`ChunkerSpec::default`], if it is another);
//! - `chunk_hash`: cut points at the engine's default plus a BLAKE3 id per chunk (so are all
//!   the benches below);
//! - `chunk_hash_lz4`: plus an lz4 frame per chunk. This is the single-core ceiling of
//!   chunk+hash+lz4 that the engine's ingest bench compares against;
//! - `lz4_encode`/`lz4_decode`, `zstd3_encode`/`zstd3_decode`: the engine's frame codec, chunk
//!   by chunk.
//!
//! Throughput is in raw input bytes. Run with `cargo bench -p scipcache-bench --bench
//! chunking` (under two minutes). Without the data it prints why and skips; under `CI=true`
//! missing data fails.

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use scipcache_bench::{require_data, scip_commit};
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::codec::{Compression, Frame, MAX_CHUNK_LEN};
use scipcache_tiers::ids::ChunkId;

/// How much of each commit is measured.
const PREFIX: usize = 32 * 1024 * 1024;

fn bench_series_a(c: &mut Criterion) {
    bench_series(c, "A");
}

fn bench_series_b(c: &mut Criterion) {
    bench_series(c, "B");
}

fn bench_series(c: &mut Criterion, series: &str) {
    let Some(file) = require_data(
        &format!("series {series}, first commit"),
        scip_commit(series, 0),
    ) else {
        return;
    };
    let data = &file.data[..file.data.len().min(PREFIX)];
    let spec = ChunkerSpec::default();
    let splitter = spec
        .splitter()
        .expect("the engine's default chunker spec is valid");
    let ranges: Vec<Range<usize>> = splitter.cut_all(data).collect();
    let frames = |compression| -> Vec<Frame> {
        ranges
            .iter()
            .map(|r| Frame::encode(&data[r.clone()], compression).expect("encoding a chunk"))
            .collect()
    };
    let lz4_frames = frames(Compression::Lz4);
    let zstd_frames = frames(Compression::Zstd(3));

    let mut group = c.benchmark_group(format!("chunking/{series}"));
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));

    group.bench_function("blake3", |b| b.iter(|| blake3::hash(black_box(data))));
    // The default, plus the neighbours the `measure` binary compares it with.
    let mut cut_avgs = vec![spec.avg, 16 * 1024, 32 * 1024, 64 * 1024];
    cut_avgs.sort_unstable();
    cut_avgs.dedup();
    for avg in cut_avgs {
        let cutter = ChunkerSpec::fastcdc(avg)
            .splitter()
            .expect("16-64 KiB averages are valid");
        group.bench_function(format!("fastcdc_cut/{}KiB", avg / 1024), |b| {
            b.iter(|| cutter.cut_all(black_box(data)).count())
        });
    }
    group.bench_function("chunk_hash", |b| {
        b.iter(|| {
            splitter
                .cut_all(black_box(data))
                .map(|r| ChunkId::of(&data[r]))
                .fold(0u8, |acc, id| acc ^ id.as_bytes()[0])
        })
    });
    group.bench_function("chunk_hash_lz4", |b| {
        b.iter(|| {
            splitter
                .cut_all(black_box(data))
                .map(|r| {
                    let raw = &data[r];
                    let id = ChunkId::of(raw);
                    let frame = Frame::encode(raw, Compression::Lz4).expect("lz4 encode");
                    id.as_bytes()[0] as usize ^ frame.stored_len()
                })
                .fold(0usize, |acc, x| acc ^ x)
        })
    });
    for (name, compression, encoded) in [
        ("lz4", Compression::Lz4, &lz4_frames),
        ("zstd3", Compression::Zstd(3), &zstd_frames),
    ] {
        group.bench_function(format!("{name}_encode"), |b| {
            b.iter(|| {
                ranges
                    .iter()
                    .map(|r| {
                        Frame::encode(black_box(&data[r.clone()]), compression)
                            .expect("encode")
                            .stored_len()
                    })
                    .sum::<usize>()
            })
        });
        group.bench_function(format!("{name}_decode"), |b| {
            b.iter(|| {
                encoded
                    .iter()
                    .map(|f| black_box(f).decode(MAX_CHUNK_LEN).expect("decode").len())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_series_a, bench_series_b);
criterion_main!(benches);
