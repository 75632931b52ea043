//! Chunks are stored in a few large files (LMDB, pack files, pack objects), never one file per
//! chunk: series A is thousands of chunks, and the data dir must hold only a handful of files.
//!
//! Everything under the data dir is owner-only (directories 0700, files 0600), also what the
//! cold tier's local backend writes and what an older version left open; a key file that
//! group or others can read is warned about.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, data, write_generated};

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

/// Waits until the daemon's write-behind cold queue is empty (`stat`'s `cold_queue`).
fn wait_for_cold_uploads(d: &Daemon, admin: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = d.cli(admin, &["--json", "stat"])?.success()?.json()?;
        if j["cold_queue"].as_u64().is_none_or(|q| q == 0) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "cold uploads still pending after 120 s: {j}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every entry under `dir` (itself included) whose mode is not 0700 (directories) or 0600
/// (files), with its mode; and how many entries there are.
fn open_entries(dir: &Path) -> Result<(Vec<String>, usize)> {
    let mut open = Vec::new();
    let mut count = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o777;
        count += 1;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            open.push(format!("{:o} {}", mode, path.display()));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok((open, count))
}

/// Makes every directory under `dir` 0755 and every file 0644, as an older version left them.
fn open_up(dir: &Path) -> Result<usize> {
    let mut changed = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = if meta.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        changed += 1;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

/// A push (several MiB, so warm and cold packs are written) and its cold upload.
fn push_and_upload(d: &Daemon, key: &str, seed: u64) -> Result<()> {
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let file = d.scratch().join(format!("blob-{seed}"));
    write_generated(&file, 6 << 20, seed)?;
    d.cli(&writer, &["push", NS, key, p(&file)])?.success()?;
    wait_for_cold_uploads(d, &admin)
}

#[test]
fn everything_under_the_data_dir_is_owner_only_after_a_push_and_a_cold_upload() -> Result<()> {
    let mut d = Daemon::start(DaemonOptions::new())?;
    push_and_upload(&d, "commit/modes", 31)?;
    let (running, _) = open_entries(d.data_dir())?;
    let status = d.sigterm()?;
    ensure!(status.success(), "SIGTERM: {status}");
    let (stopped, count) = open_entries(d.data_dir())?;
    ensure!(
        d.data_dir().join("cold").is_dir(),
        "no cold dir in the data dir"
    );
    eprintln!("data_dir_files: {count} entries under the data dir checked");
    ensure!(
        running.is_empty() && stopped.is_empty(),
        "entries under the data dir open to group or others (want dirs 700, files 600):\n \
         while running:\n{}\n after SIGTERM:\n{}",
        running.join("\n"),
        stopped.join("\n")
    );
    Ok(())
}

#[test]
fn an_existing_data_dir_open_to_others_is_made_owner_only_at_start() -> Result<()> {
    let mut d = Daemon::start(DaemonOptions::new())?;
    push_and_upload(&d, "commit/before", 32)?;
    let status = d.sigterm()?;
    ensure!(status.success(), "SIGTERM: {status}");
    let opened = open_up(d.data_dir())?;

    d.restart()?;
    let (open, count) = open_entries(d.data_dir())?;
    ensure!(
        open.is_empty(),
        "{} of {count} entries still open after a restart (of {opened} opened up):\n{}",
        open.len(),
        open.join("\n")
    );
    let log = d.log();
    ensure!(
        log.contains("owner-only"),
        "the daemon did not log that it fixed the data dir's modes:\n{log}"
    );
    // The local key was readable by others before the start fixed it: say so.
    ensure!(
        log.contains("hs256.key is readable by group or others"),
        "no warning about the exposed local key:\n{log}"
    );
    // Still serving, and what is written now is owner-only too.
    let reader = d.token("acme", &["web/app:read"], "1h")?;
    let dest = d.scratch().join("pulled");
    d.cli(&reader, &["pull", NS, "commit/before", "-o", p(&dest)])?
        .success()?;
    push_and_upload(&d, "commit/after", 33)?;
    let (open, _) = open_entries(d.data_dir())?;
    ensure!(
        open.is_empty(),
        "open after a new push:\n{}",
        open.join("\n")
    );
    Ok(())
}

#[test]
fn a_key_file_readable_by_others_is_warned_about_and_a_private_one_is_not() -> Result<()> {
    let keys = tempfile::tempdir_in(scipcache_tests::scratch_dir())?;
    let exposed = keys.path().join("exposed.key");
    write_generated(&exposed, 48, 34)?;
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644))?;
    let d = Daemon::start(DaemonOptions::new().arg("--jwt-key-file").arg(&exposed))?;
    let log = d.log();
    ensure!(
        log.contains(&format!(
            "--jwt-key-file {} is readable by group or others",
            exposed.display()
        )) && log.contains("chmod 600"),
        "no warning naming the world-readable --jwt-key-file:\n{log}"
    );
    drop(d);

    let private = keys.path().join("private.key");
    write_generated(&private, 48, 35)?;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))?;
    let d = Daemon::start(DaemonOptions::new().arg("--jwt-key-file").arg(&private))?;
    let log = d.log();
    ensure!(
        !log.contains("readable by group or others"),
        "a warning about a private key file:\n{log}"
    );
    Ok(())
}
