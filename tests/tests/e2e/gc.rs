//! Deleting refs and collecting what they leave, through the real binaries:
//!
//! - `rm NS --prefix P` deletes every ref under the prefix, counts them, and leaves the
//!   others; `rm` with a key and `--prefix`, or with neither, is bad usage;
//! - `gc --grace 0s` sweeps the chunks only a deleted ref held and the other ref still pulls
//!   byte-identical; `gc --dry-run` reports the same sweep and deletes nothing;
//! - a read or write token may not run gc (exit 4); a tenant admin's gc sweeps only its
//!   tenant, the operator's sweeps every tenant;
//! - `scipcached rebuild` after a gc restores exactly the live refs.
//!
//! The tests that count chunks in `stat` let the cold write-behind drain before they collect
//! first: a GC while a swept chunk still waits for its cold copy leaves that
//! copy to be written after the sweep, for the next GC to sweep (reported to the engine).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, write_generated};
use serde_json::Value;

use crate::common::{p, require_fields, same_bytes, u64_field};

/// The contract's `gc --json` fields, and the rest of the report this CLI prints.
const GC_FIELDS: &[&str] = &[
    "live_chunks",
    "swept_chunks",
    "swept_bytes",
    "seconds",
    "dry_run",
    "live_refs",
    "swept_manifests",
    "expired_refs",
    "retention",
    "compacted_packs",
    "compacted_bytes",
    "deleted_objects",
    "kept_young_chunks",
];

/// `scipcache --json gc ARGS`, checked for its fields.
fn gc(d: &Daemon, token: &str, args: &[&str]) -> Result<Value> {
    let mut all = vec!["--json", "gc"];
    all.extend_from_slice(args);
    let j = d.cli(token, &all)?.success()?.json()?;
    require_fields(&j, GC_FIELDS, "gc")?;
    ensure!(j["retention"].is_array(), "retention is not an array: {j}");
    Ok(j)
}

/// Chunks of every tier, as `stat --json` with `token` reports them.
fn stored_chunks(d: &Daemon, token: &str) -> Result<u64> {
    let j = d.cli(token, &["--json", "stat"])?.success()?.json()?;
    j["tiers"]
        .as_array()
        .with_context(|| format!("stat has no tiers: {j}"))?
        .iter()
        .map(|t| u64_field(t, "chunks"))
        .sum()
}

/// The keys `ls --json` lists under `prefix`.
fn keys(d: &Daemon, token: &str, ns: &str, prefix: &str) -> Result<Vec<String>> {
    let j = d
        .cli(token, &["--json", "ls", ns, "--prefix", prefix])?
        .success()?
        .json()?;
    let mut keys: Vec<String> = j["refs"]
        .as_array()
        .with_context(|| format!("ls has no refs: {j}"))?
        .iter()
        .filter_map(|r| r["key"].as_str().map(str::to_owned))
        .collect();
    keys.sort();
    Ok(keys)
}

/// Writes a generated blob of `len` bytes from `seed` into the scratch dir.
fn blob(d: &Daemon, name: &str, len: u64, seed: u64) -> Result<PathBuf> {
    let path = d.scratch().join(name);
    write_generated(&path, len, seed)?;
    Ok(path)
}

/// Pulls `key` from `ns` and checks it is byte-identical to `file`.
fn pulls_identical(d: &Daemon, token: &str, ns: &str, key: &str, file: &Path) -> Result<()> {
    let out = d.scratch().join("pulled.out");
    d.cli(token, &["pull", ns, key, "-o", p(&out)])?.success()?;
    ensure!(
        same_bytes(file, &out)?,
        "{ns} {key} pulled other bytes than were pushed"
    );
    Ok(())
}

#[test]
fn rm_prefix_deletes_and_counts_every_ref_under_the_prefix_and_leaves_the_others() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let file = blob(&d, "small.bin", 64 * 1024, 1)?;
    for key in ["pr/1/a", "pr/1/b", "pr/2", "prx", "commit/1"] {
        d.cli(&writer, &["push", NS, key, p(&file)])?.success()?;
    }
    let j = d
        .cli(&writer, &["--json", "rm", NS, "--prefix", "pr/"])?
        .success()?
        .json()?;
    require_fields(&j, &["ns", "prefix", "deleted"], "rm --prefix")?;
    ensure!(
        j["ns"] == NS && j["prefix"] == "pr/" && u64_field(&j, "deleted")? == 3,
        "rm --prefix pr/ must delete the 3 refs under it: {j}"
    );
    ensure!(
        keys(&d, &writer, NS, "")? == ["commit/1", "prx"],
        "only the refs outside pr/ stay"
    );
    let again = d
        .cli(&writer, &["--json", "rm", NS, "--prefix", "pr/"])?
        .success()?
        .json()?;
    ensure!(u64_field(&again, "deleted")? == 0, "{again}");
    let human = d.cli(&writer, &["rm", NS, "--prefix", "prx"])?.success()?;
    ensure!(
        human.stdout_str().contains("deleted 1 refs under prx"),
        "{human}"
    );

    // Bad usage, before any connection: both a key and --prefix, neither, an empty prefix.
    for args in [
        &["rm", NS, "commit/1", "--prefix", "commit/"][..],
        &["rm", NS],
        &["rm", NS, "--prefix", ""],
    ] {
        let out = d.cli(&writer, args)?;
        ensure!(
            out.code() == Some(2) && out.stderr.starts_with("invalid argument: "),
            "{args:?} must be bad usage:\n{out}"
        );
    }
    // Write access is needed, refused like rm of one ref.
    let reader = d.token("acme", &["web/app:read"], "1h")?;
    let refused = d.cli(&reader, &["rm", NS, "--prefix", "commit/"])?;
    ensure!(
        refused.code() == Some(4)
            && refused
                .stderr
                .starts_with("permission denied: token has no write access to acme/web/app"),
        "{refused}"
    );
    ensure!(keys(&d, &writer, NS, "")? == ["commit/1"]);
    Ok(())
}

#[test]
fn gc_sweeps_what_only_a_deleted_ref_held_and_a_dry_run_deletes_nothing() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let kept = blob(&d, "kept.bin", 3 << 20, 21)?;
    let gone = blob(&d, "gone.bin", 3 << 20, 22)?;
    d.cli(&writer, &["push", NS, "commit/kept", p(&kept)])?
        .success()?;
    d.cli(&writer, &["push", NS, "commit/gone", p(&gone)])?
        .success()?;
    d.cli(&writer, &["rm", NS, "commit/gone"])?.success()?;
    // With the write-behind drained, every tier's copies are in place: the counts below
    // compare settled states (see the module docs).
    d.wait_cold_drained(&admin)?;
    let before = stored_chunks(&d, &admin)?;

    let dry = gc(&d, &admin, &["--dry-run", "--grace", "0s"])?;
    ensure!(dry["dry_run"] == true, "{dry}");
    ensure!(
        u64_field(&dry, "swept_chunks")? > 0,
        "a dry run reports what would go: {dry}"
    );
    ensure!(
        stored_chunks(&d, &admin)? == before,
        "gc --dry-run deleted chunks"
    );

    let real = gc(&d, &admin, &["--grace", "0s"])?;
    ensure!(real["dry_run"] == false, "{real}");
    let swept = u64_field(&real, "swept_chunks")?;
    ensure!(
        swept > 0 && u64_field(&real, "swept_bytes")? > 0,
        "gc --grace 0s must sweep the deleted ref's chunks: {real}"
    );
    ensure!(
        swept == u64_field(&dry, "swept_chunks")?,
        "the dry run said {} chunks would go, the run swept {swept}",
        dry["swept_chunks"]
    );
    ensure!(
        u64_field(&real, "live_chunks")? > 0 && u64_field(&real, "live_refs")? == 1,
        "{real}"
    );
    ensure!(
        stored_chunks(&d, &admin)? < before,
        "stat still counts the swept chunks"
    );
    pulls_identical(&d, &writer, NS, "commit/kept", &kept)?;
    // Nothing left to sweep.
    let again = gc(&d, &admin, &["--grace", "0s"])?;
    ensure!(u64_field(&again, "swept_chunks")? == 0, "{again}");

    // The human summary.
    let human = d.cli(&admin, &["gc", "--dry-run"])?.success()?;
    ensure!(
        human
            .stdout_str()
            .starts_with("gc (dry run, nothing deleted) of acme"),
        "{human}"
    );
    Ok(())
}

#[test]
fn gc_needs_admin_and_a_tenant_admin_sweeps_only_its_tenant_while_the_operator_sweeps_all()
-> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let operator = d.token("*", &["*:admin"], "1h")?;
    let acme_admin = d.token("acme", &["*:admin"], "1h")?;
    let globex_admin = d.token("globex", &["*:admin"], "1h")?;
    let acme_ns = NS;
    let globex_ns = "globex/web/app";
    let acme_file = blob(&d, "acme.bin", 2 << 20, 31)?;
    let globex_file = blob(&d, "globex.bin", 2 << 20, 32)?;
    d.cli(&acme_admin, &["push", acme_ns, "commit/1", p(&acme_file)])?
        .success()?;
    d.cli(
        &globex_admin,
        &["push", globex_ns, "commit/1", p(&globex_file)],
    )?
    .success()?;

    for (what, scopes) in [("read", "*:read"), ("write", "*:write")] {
        let token = d.token("acme", &[scopes], "1h")?;
        let out = d.cli(&token, &["gc", "--grace", "0s"])?;
        ensure!(
            out.code() == Some(4) && out.stderr.starts_with("permission denied: "),
            "gc with a {what} token must be refused (exit 4):\n{out}"
        );
    }

    d.cli(&acme_admin, &["rm", acme_ns, "commit/1"])?
        .success()?;
    d.cli(&globex_admin, &["rm", globex_ns, "commit/1"])?
        .success()?;
    // The operator's stat covers both tenants' write-behind.
    d.wait_cold_drained(&operator)?;
    let globex_before = stored_chunks(&d, &globex_admin)?;
    ensure!(globex_before > 0);

    let acme_run = gc(&d, &acme_admin, &["--grace", "0s"])?;
    ensure!(
        acme_run["tenant"] == "acme" && u64_field(&acme_run, "swept_chunks")? > 0,
        "{acme_run}"
    );
    ensure!(
        stored_chunks(&d, &acme_admin)? == 0,
        "acme's gc left acme chunks"
    );
    ensure!(
        stored_chunks(&d, &globex_admin)? == globex_before,
        "a tenant admin's gc swept another tenant's unreferenced chunks"
    );

    let all = gc(&d, &operator, &["--grace", "0s"])?;
    ensure!(
        all["tenant"].is_null(),
        "an operator's gc covers every tenant: {all}"
    );
    ensure!(u64_field(&all, "swept_chunks")? > 0, "{all}");
    ensure!(
        stored_chunks(&d, &globex_admin)? == 0,
        "the operator's gc left globex's unreferenced chunks"
    );
    Ok(())
}

#[test]
fn rebuild_after_gc_restores_exactly_the_live_refs() -> Result<()> {
    let mut d = Daemon::start(DaemonOptions::new().arg("--cold-flush-after").arg("100ms"))?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let mut live = Vec::new();
    for i in 0..3u64 {
        let file = blob(
            &d,
            &format!("index-{i}.scip"),
            (2 << 20) + i * 70_001,
            50 + i,
        )?;
        let key = format!("commit/{i}");
        d.cli(&writer, &["push", NS, &key, p(&file)])?.success()?;
        live.push((key, file));
    }
    d.cli(&writer, &["rm", NS, "commit/1"])?.success()?;
    live.remove(1);
    d.wait_cold_drained(&admin)?;
    let swept = gc(&d, &admin, &["--grace", "0s"])?;
    ensure!(u64_field(&swept, "swept_chunks")? > 0, "{swept}");
    d.wait_cold_drained(&admin)?;

    let status = d.sigterm()?;
    ensure!(status.success(), "SIGTERM exit {status}; log:\n{}", d.log());
    let meta = d.data_dir().join("meta");
    std::fs::remove_dir_all(&meta).with_context(|| format!("removing {}", meta.display()))?;
    let rebuilt = d.rebuild()?.success()?;
    eprintln!("rebuild after gc: {}", rebuilt.stdout_str());
    d.restart()?;

    ensure!(
        keys(&d, &writer, NS, "")? == ["commit/0", "commit/2"],
        "the rebuilt index must hold exactly the live refs"
    );
    for (key, file) in &live {
        pulls_identical(&d, &writer, NS, key, file)?;
    }
    let out = d.scratch().join("gone.out");
    let code = d
        .cli(&writer, &["pull", NS, "commit/1", "-o", p(&out)])?
        .code();
    ensure!(code == Some(3), "the deleted ref came back: exit {code:?}");
    Ok(())
}
