//! Push and pull through the CLI, as a CI pipeline does: series A (12 real commits) round-trips
//! byte-identical under ids equal to `b3sum`, later commits send only their new chunks, and
//! refs list newest first, fall back, expire and delete as the contract says.

use anyhow::{Result, bail, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, blake3_file, data, write_generated};

use crate::common::{
    median, mib, p, require_fields, rfc3339_utc, same_bytes, str_field, u64_field,
};

const PUSH_FIELDS: &[&str] = &[
    "ns",
    "key",
    "blob",
    "bytes",
    "chunks",
    "new_chunks",
    "bytes_sent",
    "seconds",
];
const PULL_FIELDS: &[&str] = &["ns", "key", "resolved_key", "blob", "bytes", "seconds"];

/// BLAKE3 of nothing.
const EMPTY_B3: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

#[test]
fn series_a_round_trips_byte_identical_and_sends_only_new_chunks() -> Result<()> {
    let Some(series) = data::series_a() else {
        return Ok(());
    };
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;

    // Push the 12 commits in order.
    let mut pushed = Vec::new();
    for f in &series.files {
        let key = f.key();
        let out = d
            .cli(&writer, &["--json", "push", NS, &key, p(f.path()?)])?
            .success()?;
        let j = out.json()?;
        require_fields(&j, PUSH_FIELDS, "push")?;
        ensure!(str_field(&j, "ns")? == NS, "push ns: {j}");
        ensure!(str_field(&j, "key")? == key, "push key: {j}");
        ensure!(
            str_field(&j, "blob")? == f.b3,
            "push of {key} reports blob {} but b3sum (B3SUMS) says {}",
            j["blob"],
            f.b3
        );
        ensure!(u64_field(&j, "bytes")? == f.len()?, "push bytes: {j}");
        pushed.push(j);
    }

    // Dedup: a commit whose index changed sends little; an identical index sends no chunk.
    eprintln!("push_pull: commit  bytes      chunks new_chunks bytes_sent  sent%");
    let mut changed_ratios = Vec::new();
    for (i, (f, j)) in series.files.iter().zip(&pushed).enumerate() {
        let bytes = u64_field(j, "bytes")?;
        let sent = u64_field(j, "bytes_sent")?;
        let new_chunks = u64_field(j, "new_chunks")?;
        let ratio = sent as f64 / bytes as f64;
        eprintln!(
            "push_pull: {:02}      {bytes:<10} {:<6} {new_chunks:<10} {sent:<11} {:.2}%",
            f.number,
            u64_field(j, "chunks")?,
            ratio * 100.0
        );
        let identical_to_earlier = series.files[..i].iter().any(|e| e.b3 == f.b3);
        if identical_to_earlier {
            ensure!(
                new_chunks == 0,
                "commit {:02} is byte-identical to an index already stored, yet push reports \
                 new_chunks = {new_chunks}: {j}",
                f.number
            );
        } else if i > 0 && f.number != 6 {
            // Commit 06 is the release that changes every symbol (see the data README).
            changed_ratios.push(ratio);
        }
    }
    ensure!(!changed_ratios.is_empty(), "no changed commits in series A");
    let med = median(changed_ratios.clone());
    eprintln!(
        "push_pull: median bytes_sent over {} changed commits = {:.2}% of the file",
        changed_ratios.len(),
        med * 100.0
    );
    ensure!(
        med <= 0.02,
        "median bytes_sent over changed commits is {:.2}% of the file; must be <= 2% \
         (ratios {changed_ratios:?})",
        med * 100.0
    );

    // Pull each back, byte-identical.
    for f in &series.files {
        let key = f.key();
        let dest = d.scratch().join(format!("pulled-{:02}.scip", f.number));
        let out = d
            .cli(&writer, &["--json", "pull", NS, &key, "-o", p(&dest)])?
            .success()?;
        let j = out.json()?;
        require_fields(&j, PULL_FIELDS, "pull")?;
        ensure!(
            str_field(&j, "resolved_key")? == key,
            "pull resolved_key: {j}"
        );
        ensure!(str_field(&j, "blob")? == f.b3, "pull blob: {j}");
        ensure!(u64_field(&j, "bytes")? == f.len()?, "pull bytes: {j}");
        ensure!(
            same_bytes(&dest, f.path()?)?,
            "pulled {key} differs from the pushed file"
        );
        std::fs::remove_file(&dest)?;
    }

    // ls: all 12, newest first, RFC 3339 UTC timestamps.
    let j = d
        .cli(&writer, &["--json", "ls", NS, "--prefix", "commit/"])?
        .success()?
        .json()?;
    let refs = j["refs"].as_array().cloned().unwrap_or_default();
    let keys: Vec<&str> = refs.iter().filter_map(|r| r["key"].as_str()).collect();
    let want: Vec<String> = series.files.iter().rev().map(|f| f.key()).collect();
    ensure!(
        keys == want,
        "ls must list the 12 refs newest first; got {keys:?}, want {want:?}"
    );
    let mut previous = None;
    for (r, f) in refs.iter().zip(series.files.iter().rev()) {
        require_fields(
            r,
            &["key", "blob", "bytes", "created_at", "expires_at"],
            "ls refs[]",
        )?;
        ensure!(str_field(r, "blob")? == f.b3, "ls blob: {r}");
        ensure!(u64_field(r, "bytes")? == f.len()?, "ls bytes: {r}");
        ensure!(
            r["expires_at"].is_null(),
            "a ref pushed without --ttl has expires_at: {r}"
        );
        let created = rfc3339_utc(str_field(r, "created_at")?)?;
        if let Some(prev) = previous {
            ensure!(created <= prev, "ls is not newest first by created_at: {j}");
        }
        previous = Some(created);
    }

    // A missing key falls back to the newest ref under the first prefix that has one.
    let newest = series.files.last().expect("12 files");
    let dest = d.scratch().join("fallback.scip");
    let j = d
        .cli(
            &writer,
            &[
                "--json",
                "pull",
                NS,
                "commit/0000000000",
                "--fallback",
                "branch/",
                "--fallback",
                "commit/",
                "-o",
                p(&dest),
            ],
        )?
        .success()?
        .json()?;
    ensure!(
        str_field(&j, "resolved_key")? == newest.key(),
        "fallback must resolve to the newest ref under commit/ ({}): {j}",
        newest.key()
    );
    ensure!(same_bytes(&dest, newest.path()?)?, "fallback pull differs");

    // A miss without a match is exit 3, and a failed pull leaves -o FILE as it was.
    std::fs::write(&dest, b"keep me")?;
    let out = d
        .cli(&writer, &["pull", NS, "commit/0000000000", "-o", p(&dest)])?
        .expect_code(3)?;
    ensure!(
        out.error_line().starts_with("not found: "),
        "a miss must print `not found: <message>`:\n{out}"
    );
    ensure!(
        std::fs::read(&dest)? == b"keep me",
        "a failed pull changed -o FILE"
    );

    // stat (tenant admin): every tier and the logical bytes.
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let j = d.cli(&admin, &["--json", "stat"])?.success()?.json()?;
    require_fields(&j, &["tiers", "logical_bytes"], "stat")?;
    let tiers = j["tiers"].as_array().cloned().unwrap_or_default();
    for name in ["hot", "warm", "cold"] {
        let tier = tiers.iter().find(|t| t["name"] == name);
        let Some(tier) = tier else {
            bail!("stat has no tier {name}: {j}");
        };
        require_fields(tier, &["name", "chunks", "stored_bytes"], "stat tiers[]")?;
        u64_field(tier, "chunks")?;
        u64_field(tier, "stored_bytes")?;
    }
    let total_chunks: u64 = tiers.iter().filter_map(|t| t["chunks"].as_u64()).sum();
    ensure!(
        total_chunks > 0,
        "stat counts no chunks after 12 pushes: {j}"
    );
    let mut largest = 0;
    for f in &series.files {
        largest = largest.max(f.len()?);
    }
    ensure!(
        u64_field(&j, "logical_bytes")? >= largest,
        "logical_bytes is below one file's size ({largest}): {j}"
    );
    eprintln!("push_pull: stat {j}");

    // rm, then the ref is gone: exit 3.
    let j = d
        .cli(&writer, &["--json", "rm", NS, &newest.key()])?
        .success()?
        .json()?;
    require_fields(&j, &["ns", "key", "deleted"], "rm")?;
    ensure!(j["deleted"] == true, "rm of an existing ref: {j}");
    let out = d
        .cli(&writer, &["pull", NS, &newest.key(), "-o", p(&dest)])?
        .expect_code(3)?;
    ensure!(out.error_line().starts_with("not found: "), "{out}");
    eprintln!(
        "push_pull: series A ({:.0} MiB in 12 commits) passed",
        mib(series.files.iter().map(|f| f.len().unwrap_or(0)).sum())
    );
    Ok(())
}

#[test]
fn empty_blob_round_trips() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let empty = d.scratch().join("empty");
    std::fs::write(&empty, b"")?;
    let j = d
        .cli(&writer, &["--json", "push", NS, "empty/zero", p(&empty)])?
        .success()?
        .json()?;
    require_fields(&j, PUSH_FIELDS, "push")?;
    ensure!(str_field(&j, "blob")? == EMPTY_B3, "blob of 0 bytes: {j}");
    ensure!(u64_field(&j, "bytes")? == 0, "{j}");

    let dest = d.scratch().join("empty.pulled");
    let j = d
        .cli(
            &writer,
            &["--json", "pull", NS, "empty/zero", "-o", p(&dest)],
        )?
        .success()?
        .json()?;
    ensure!(
        str_field(&j, "blob")? == EMPTY_B3 && u64_field(&j, "bytes")? == 0,
        "{j}"
    );
    ensure!(
        std::fs::read(&dest)?.is_empty(),
        "pulled 0-byte blob is not empty"
    );

    // Without -o the blob goes to stdout: nothing at all.
    let out = d.cli(&writer, &["pull", NS, "empty/zero"])?.success()?;
    ensure!(
        out.stdout.is_empty(),
        "pull to stdout of a 0-byte blob:\n{out}"
    );
    Ok(())
}

#[test]
fn expired_refs_stop_resolving() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let file = d.scratch().join("small.bin");
    let b3 = write_generated(&file, 300 * 1024, 3)?;

    d.cli(&writer, &["push", NS, "ttl/long", p(&file), "--ttl", "1h"])?
        .success()?;
    d.cli(&writer, &["push", NS, "ttl/short", p(&file), "--ttl", "1s"])?
        .success()?;
    let pushed = std::time::Instant::now();
    let j = d
        .cli(&writer, &["--json", "ls", NS, "--prefix", "ttl/"])?
        .success()?
        .json()?;
    let refs = j["refs"].as_array().cloned().unwrap_or_default();
    for r in &refs {
        let created = rfc3339_utc(str_field(r, "created_at")?)?;
        let expires = rfc3339_utc(str_field(r, "expires_at")?)?;
        ensure!(expires > created, "expires_at must follow created_at: {r}");
    }

    std::thread::sleep(std::time::Duration::from_millis(2500).saturating_sub(pushed.elapsed()));
    let dest = d.scratch().join("pulled");
    let out = d
        .cli(&writer, &["pull", NS, "ttl/short", "-o", p(&dest)])?
        .expect_code(3)?;
    ensure!(out.error_line().starts_with("not found: "), "{out}");

    // The long-lived ref still resolves, also as the fallback past the expired one.
    let j = d
        .cli(
            &writer,
            &[
                "--json",
                "pull",
                NS,
                "ttl/none",
                "--fallback",
                "ttl/",
                "-o",
                p(&dest),
            ],
        )?
        .success()?
        .json()?;
    ensure!(
        str_field(&j, "resolved_key")? == "ttl/long",
        "fallback must skip the expired ttl/short: {j}"
    );
    ensure!(blake3_file(&dest)? == b3, "pulled bytes differ");
    Ok(())
}

#[test]
fn cli_reads_server_and_token_from_the_environment() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let file = d.scratch().join("env.bin");
    let b3 = write_generated(&file, 50 * 1024, 12)?;
    let mut cmd = scipcache_tests::cli_command();
    cmd.env("SCIPCACHE_SERVER", d.url())
        .env("SCIPCACHE_TOKEN", &writer)
        .args(["--json", "push", NS, "env/key", p(&file)]);
    let out = scipcache_tests::Spawned::spawn(cmd)?
        .wait(scipcache_tests::CLI_TIMEOUT)?
        .success()?;
    ensure!(str_field(&out.json()?, "blob")? == b3, "{out}");
    Ok(())
}
