//! Chunks are stored in a few large files (LMDB, pack files, pack objects), never one file per
//! chunk: series A is thousands of chunks, and the data dir must hold only a handful of files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, data};

use crate::common::{mib, p};

/// Files outside the cold dir: keys, lock, LMDB, warm packs, queues.
const MAX_FILES: usize = 50;
/// Pack objects in the default cold tier (`<data-dir>/cold`).
const MAX_COLD_OBJECTS: usize = 50;

#[test]
fn series_a_is_stored_in_a_few_files_not_one_per_chunk() -> Result<()> {
    let Some(series) = data::series_a() else {
        return Ok(());
    };
    let mut d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let mut chunks = 0;
    for f in &series.files {
        let j = d
            .cli(&writer, &["--json", "push", NS, &f.key(), p(f.path()?)])?
            .success()?
            .json()?;
        chunks += j["new_chunks"].as_u64().unwrap_or(0);
    }
    // Let the write-behind cold uploads finish, so that the cold objects are counted too
    // (`cold_queue` is the daemon's count of pending uploads, beside the contract's fields).
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = d.cli(&admin, &["--json", "stat"])?.success()?.json()?;
        if j["cold_queue"].as_u64().is_none_or(|q| q == 0) || Instant::now() >= deadline {
            eprintln!("data_dir_files: stat {j}");
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Stop cleanly so that everything the daemon persists at shutdown is counted too.
    let status = d.sigterm()?;
    ensure!(status.success(), "SIGTERM: {status}");

    let cold = d.data_dir().join("cold");
    let mut files = Vec::new();
    walk(d.data_dir(), &mut files)?;
    let (cold_files, other): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(path, _)| path.starts_with(&cold));
    let show = |list: &[(PathBuf, u64)]| -> String {
        list.iter()
            .map(|(path, len)| {
                let rel = path.strip_prefix(d.data_dir()).unwrap_or(path);
                format!("  {:>10.2} MiB  {}", mib(*len), rel.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    eprintln!(
        "data_dir_files: {chunks} new chunks stored in {} files (+{} cold objects):\n{}\n{}",
        other.len(),
        cold_files.len(),
        show(&other),
        show(&cold_files),
    );
    ensure!(
        other.len() < MAX_FILES,
        "{} files outside cold/ for {chunks} chunks: looks like a file per chunk",
        other.len()
    );
    ensure!(
        cold_files.len() < MAX_COLD_OBJECTS,
        "{} cold objects for {chunks} chunks: looks like an object per chunk",
        cold_files.len()
    );
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), out)?;
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    Ok(())
}
