//! The engine without a network: ingest and read of real SCIP indexes straight into a
//! [`Store`] (real LMDB with fsync'd commits, real pack files, a local-folder cold tier).
//!
//! - `ceiling/chunk_hash_lz4`: FastCDC + BLAKE3 + lz4 on one core over the same bytes, measured
//!   in the same run, so `ingest / ceiling` is a ratio taken under the same machine noise;
//! - `ingest`: `Store::write_blob` of a whole index into a fresh store (chunk, hash, compress,
//!   group-committed LMDB puts, ref commit). Only the write is timed;
//! - `read_hot`: `Store::read_blob_to` into a sink: LMDB reads, lz4 decode, BLAKE3 verify.
//!
//! The ~20 MB index is series A's first commit, the ~99 MB one series B's first. Run with
//! `cargo bench -p scipcache-bench --bench engine`. Without the data it prints why and skips;
//! under `CI=true` missing data fails.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use scipcache_bench::{require_data, scip_commit};
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::codec::{Compression, Frame};
use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::{Store, StoreConfig};

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    for (series, label) in [("A", "20MB"), ("B", "99MB")] {
        let Some(file) = require_data(
            &format!("series {series}, first commit"),
            scip_commit(series, 0),
        ) else {
            continue;
        };
        let data = file.data;
        let ns: Namespace = "bench/engine/index".parse().expect("namespace");
        let key: RefKey = "commit/first".parse().expect("key");
        let mut group = c.benchmark_group(format!("engine/{label}"));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(8))
            .throughput(Throughput::Bytes(data.len() as u64));

        group.bench_function("ceiling/chunk_hash_lz4", |b| {
            let splitter = ChunkerSpec::default().splitter().expect("default spec");
            b.iter(|| {
                for r in splitter.cut_all(&data) {
                    let chunk = &data[r];
                    black_box(ChunkId::of(chunk));
                    black_box(Frame::encode(chunk, Compression::Lz4).expect("lz4"));
                }
            });
        });

        group.bench_function("ingest", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    total += rt.block_on(async {
                        let store = Store::open(StoreConfig::new(dir.path()))
                            .await
                            .expect("open");
                        let started = Instant::now();
                        store
                            .write_blob(&ns, &key, &data[..], RefOptions::default())
                            .await
                            .expect("ingest");
                        let took = started.elapsed();
                        store.shutdown().await.expect("shutdown");
                        took
                    });
                }
                total
            });
        });

        let dir = tempfile::tempdir().expect("tempdir");
        let store = rt.block_on(async {
            let store = Store::open(StoreConfig::new(dir.path()))
                .await
                .expect("open");
            store
                .write_blob(&ns, &key, &data[..], RefOptions::default())
                .await
                .expect("ingest");
            store
        });
        group.bench_function("read_hot", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let record = store
                        .get_ref(&ns, &key)
                        .await
                        .expect("ref")
                        .expect("present");
                    let manifest = store
                        .manifest(ns.tenant(), record.manifest)
                        .await
                        .expect("manifest");
                    let n = store
                        .read_blob_to(ns.tenant(), manifest, tokio::io::sink())
                        .await
                        .expect("read");
                    assert_eq!(n, data.len() as u64);
                });
            });
        });
        rt.block_on(store.shutdown()).expect("shutdown");
        group.finish();
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
