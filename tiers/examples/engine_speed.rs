//! Quick engine figures without the network: ingest of a file into a fresh store
//! (`Store::write_blob`) and a hot read of it back (`Store::read_blob_to` into a sink), best of
//! a few runs. `cargo run -p scipcache-tiers --example engine_speed -- FILE...`
//! (the criterion benchmark `cargo bench -p scipcache-bench --bench engine` is the careful one).

use std::time::{Duration, Instant};

use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::{Store, StoreConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ns: Namespace = "bench/engine/index".parse()?;
    let key: RefKey = "commit/first".parse()?;
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path)?;
        let mut ingest = Duration::MAX;
        let mut read = Duration::MAX;
        for _ in 0..3 {
            let dir = tempfile::tempdir()?;
            let store = Store::open(StoreConfig::new(dir.path())).await?;
            let t = Instant::now();
            let record = store
                .write_blob(&ns, &key, &data[..], RefOptions::default())
                .await?;
            ingest = ingest.min(t.elapsed());
            let manifest = store.manifest(ns.tenant(), record.manifest).await?;
            for _ in 0..3 {
                let t = Instant::now();
                store
                    .read_blob_to(ns.tenant(), manifest.clone(), tokio::io::sink())
                    .await?;
                read = read.min(t.elapsed());
            }
            store.shutdown().await?;
        }
        let mb = data.len() as f64 / 1e6;
        println!(
            "{path}: {mb:.1} MB  ingest {:.0} ms ({:.0} MB/s)  hot read {:.0} ms ({:.0} MB/s)",
            ingest.as_secs_f64() * 1e3,
            mb / ingest.as_secs_f64(),
            read.as_secs_f64() * 1e3,
            mb / read.as_secs_f64()
        );
    }
    Ok(())
}
