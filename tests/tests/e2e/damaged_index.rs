//! A damaged index (`data.mdb`) never takes the daemon down with a signal and never looks like
//! an empty cache: cut to half, cut to 0 bytes, or with random bytes in its branch and leaf
//! pages, the daemon refuses to start (exit 1, not a signal) with a message naming the file
//! and `scipcached rebuild`; a record damaged while the daemon serves makes the pull that
//! meets it fail with `data loss: …` naming the ref (exit 1), never `not found` or
//! `internal`.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use anyhow::{Result, ensure};
use scipcache_tests::lmdb_pages::{
    branch_and_leaf_pages, chunk_index_leaf_pages, cut, data_mdb, flip_after, scramble_page,
};
use scipcache_tests::{Daemon, DaemonOptions, NS, write_generated};

use crate::common::p;

const KEY: &str = "commit/1";

/// A daemon holding one pushed blob of `len` bytes (its cold copy written), and an admin
/// token.
fn daemon_with_a_blob(len: u64) -> Result<(Daemon, String)> {
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let file = d.scratch().join("blob.bin");
    write_generated(&file, len, 7)?;
    d.cli(&writer, &["push", NS, KEY, p(&file)])?.success()?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    // Let the write-behind finish, so the cold tier holds the packs and the manifest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let j = d.cli(&admin, &["--json", "stat"])?.success()?.json()?;
        if j["cold_queue"].as_u64().is_none_or(|q| q == 0) {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the cold queue did not drain: {j}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok((d, admin))
}

/// The refusal is an exit with status 1 and a message that names the index and rebuild.
fn refused_naming_rebuild(status: ExitStatus, log: &str, what: &str) -> Result<()> {
    ensure!(
        status.signal().is_none(),
        "{what}: the daemon died of signal {:?} instead of refusing; log:\n{log}",
        status.signal()
    );
    ensure!(
        status.code() == Some(1),
        "{what}: the daemon must exit 1, got {status}; log:\n{log}"
    );
    ensure!(
        log.contains("data.mdb") && log.contains("scipcached rebuild"),
        "{what}: the refusal must name data.mdb and `scipcached rebuild`; log:\n{log}"
    );
    Ok(())
}

#[test]
fn a_data_mdb_cut_to_half_makes_the_start_refuse_naming_rebuild() -> Result<()> {
    let (mut d, _) = daemon_with_a_blob(4 << 20)?;
    let (status, log) = d.restart_refused(|dir| {
        let path = data_mdb(dir);
        let len = std::fs::metadata(&path)?.len();
        cut(&path, len / 2)
    })?;
    refused_naming_rebuild(status, &log, "cut to half")
}

#[test]
fn a_data_mdb_cut_to_zero_bytes_makes_the_start_refuse_not_serve_an_empty_cache() -> Result<()> {
    let (mut d, _) = daemon_with_a_blob(1 << 20)?;
    let (status, log) = d.restart_refused(|dir| cut(&data_mdb(dir), 0))?;
    refused_naming_rebuild(status, &log, "cut to 0 bytes")
}

#[test]
fn random_bytes_in_every_branch_and_leaf_page_make_the_start_refuse_naming_rebuild() -> Result<()> {
    let (mut d, _) = daemon_with_a_blob(8 << 20)?;
    let (status, log) = d.restart_refused(|dir| {
        let path = data_mdb(dir);
        let pages = branch_and_leaf_pages(&path)?;
        ensure!(
            pages.len() > 3,
            "only {} branch and leaf pages",
            pages.len()
        );
        for (i, n) in pages.into_iter().enumerate() {
            scramble_page(&path, n, 0x5eed + i as u64)?;
        }
        Ok(())
    })?;
    refused_naming_rebuild(status, &log, "random bytes in every branch and leaf page")
}

#[test]
fn random_bytes_in_the_leaf_pages_of_the_chunk_index_make_the_start_refuse() -> Result<()> {
    // Enough chunks for the chunk index to span several leaf pages. Pages that look like its
    // leaves include stale copies LMDB has freed; scrambling them all hits the live ones too.
    let (mut d, _) = daemon_with_a_blob(16 << 20)?;
    let (status, log) = d.restart_refused(|dir| {
        let path = data_mdb(dir);
        let pages = chunk_index_leaf_pages(&path)?;
        ensure!(
            pages.len() > 1,
            "{} leaf pages of the chunk index",
            pages.len()
        );
        for (i, n) in pages.into_iter().enumerate() {
            scramble_page(&path, n, 0xbad + i as u64)?;
        }
        Ok(())
    })?;
    refused_naming_rebuild(
        status,
        &log,
        "random bytes in the leaf pages of the chunk index",
    )
}

/// A pull of the ref must fail with exit 1 and `data loss: ` naming the ref.
fn pull_is_data_loss(d: &Daemon, admin: &str, what: &str) -> Result<()> {
    let out = d.cli(
        admin,
        &["pull", NS, KEY, "-o", p(&d.scratch().join("out.bin"))],
    )?;
    ensure!(
        out.code() == Some(1) && out.error_line().starts_with("data loss: "),
        "{what}: the pull must fail with `data loss: ` (exit 1):\n{out}"
    );
    ensure!(
        out.error_line().contains(NS) && out.error_line().contains(KEY),
        "{what}: the message must name the ref:\n{out}"
    );
    Ok(())
}

#[test]
fn a_ref_record_damaged_while_serving_is_data_loss_from_a_pull() -> Result<()> {
    let (d, admin) = daemon_with_a_blob(1 << 20)?;
    let mut ref_key = NS.as_bytes().to_vec();
    ref_key.push(0);
    ref_key.extend_from_slice(KEY.as_bytes());
    // Inside the record's manifest id (after the format byte and the blob id).
    let flipped = flip_after(&data_mdb(d.data_dir()), &ref_key, 40)?;
    ensure!(flipped > 0, "the ref record was not found in data.mdb");
    pull_is_data_loss(&d, &admin, "a flipped ref record")
}

#[test]
fn a_manifest_damaged_while_serving_without_a_cold_copy_is_data_loss_from_a_pull() -> Result<()> {
    let (d, admin) = daemon_with_a_blob(1 << 20)?;
    std::fs::remove_dir_all(d.data_dir().join("cold").join("manifests"))?;
    // The manifest encoding's magic and format byte (1: a plain cut; 2: SCIP-aware).
    let mdb = data_mdb(d.data_dir());
    let flipped = flip_after(&mdb, b"SCM\x01", 0)? + flip_after(&mdb, b"SCM\x02", 0)?;
    ensure!(flipped > 0, "the manifest was not found in data.mdb");
    pull_is_data_loss(&d, &admin, "a damaged manifest")
}
