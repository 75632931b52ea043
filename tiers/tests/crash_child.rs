//! Crash consistency with a real process: a child process writes blobs and moves their chunks
//! into warm pack files, printing each acknowledged blob; the parent kills it with SIGKILL
//! mid-stream, reopens the store, and checks that every acknowledged blob reads back intact.
//! Guards against index entries that point at bytes which were not durable, and against
//! recovery that loses acknowledged writes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use scipcache_tiers::ids::BlobId;
use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::{Store, StoreConfig};

const CHILD_ENV: &str = "SCIPCACHE_CRASH_CHILD_DIR";

fn blob(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..50_000 + i as usize * 3_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"abcdefgh"[(x % 8) as usize]
        })
        .collect()
}

/// The child: runs only when the parent sets the environment variable.
#[tokio::test]
async fn child_writer() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let store = Store::open(StoreConfig::new(dir)).await?;
    let ns: Namespace = "acme/web/app".parse()?;
    for i in 0.. {
        let data = blob(i);
        let key: RefKey = format!("commit/{i}").parse()?;
        let record = store
            .write_blob(&ns, &key, &data[..], RefOptions::default())
            .await?;
        let manifest = store.manifest(ns.tenant(), record.manifest).await?;
        let ids = manifest.entries().iter().map(|e| e.id).collect();
        store.demote(ns.tenant(), ids, true).await?;
        println!("ack {key} {}", record.blob);
    }
    Ok(())
}

#[tokio::test]
async fn acknowledged_blobs_survive_sigkill_of_the_writer() -> Result<(), Box<dyn std::error::Error>>
{
    if std::env::var(CHILD_ENV).is_ok() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let mut parts = line.split_whitespace();
        if parts.next() == Some("ack") {
            let key: RefKey = parts.next().ok_or("key")?.parse()?;
            let id: BlobId = parts.next().ok_or("id")?.parse()?;
            acked.push((key, id));
            if acked.len() == 25 {
                child.kill()?;
                break;
            }
        }
    }
    child.wait()?;
    assert_eq!(
        acked.len(),
        25,
        "the child acknowledged writes before it was killed"
    );

    let store = Store::open(StoreConfig::new(dir.path())).await?;
    let ns: Namespace = "acme/web/app".parse()?;
    for (key, id) in acked {
        let record = store
            .get_ref(&ns, &key)
            .await?
            .ok_or("acknowledged ref lost")?;
        assert_eq!(record.blob, id);
        let manifest = store.manifest(ns.tenant(), record.manifest).await?;
        let mut out = Vec::new();
        store.read_blob_to(ns.tenant(), manifest, &mut out).await?;
        assert_eq!(BlobId::of(&out), id, "{key} reads back intact");
        let i: u64 = key.as_str().trim_start_matches("commit/").parse()?;
        assert_eq!(out, blob(i));
    }
    store.shutdown().await?;
    Ok(())
}
