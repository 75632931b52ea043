//! The tier budgets, admission, pins, warm-ups and `--durability`, through the real binaries:
//!
//! - under tiny `--hot-bytes`/`--warm-bytes`, the evictor brings both tiers under their
//!   budgets (as `stat` reports them) and keeps them there while idle, warm holds what hot
//!   gave up, and every ref still pulls byte-identical;
//! - a pinned ref (`pin_prefixes`) keeps its chunks in hot through the push and the pull of
//!   an index larger than the hot budget;
//! - `scipcache warm` brings an evicted ref's chunks back into hot, within the budget, and a
//!   ref that fits the budget wholly;
//! - `--durability cold` acknowledges a push only once the object store holds its packs,
//!   manifest and ref object, and refuses pushes with `unavailable` (setting no ref) while the
//!   cold tier is broken; `--durability local` keeps accepting them and catches up later.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, data, scratch_dir, write_generated};
use serde_json::Value;

use crate::common::{p, require_fields, same_bytes, str_field, u64_field};

/// The contract's `warm --json` fields.
const WARM_FIELDS: &[&str] = &["ns", "key", "chunks", "promoted_bytes", "seconds"];
/// How long the evictor gets to bring the tiers under their budgets.
const SETTLE: Duration = Duration::from_secs(60);
/// How long an idle daemon is watched staying under its budgets.
const IDLE_WATCH: Duration = Duration::from_secs(5);
/// More than the engine's access-time resolution (whole seconds): chunks touched before such a
/// pause count as less recently used than chunks touched after it.
const ACCESS_TICK: Duration = Duration::from_millis(1100);

/// Byte budgets as given to the daemon.
#[derive(Clone, Copy, Debug)]
struct Budgets {
    hot: u64,
    warm: u64,
}

impl Budgets {
    /// Daemon options giving these budgets (as plain bytes).
    fn options(self) -> DaemonOptions {
        DaemonOptions::new()
            .arg("--hot-bytes")
            .arg(self.hot.to_string())
            .arg("--warm-bytes")
            .arg(self.warm.to_string())
    }
}

/// `stat --json` with the operator's token (budgets cover every tenant).
fn stat(d: &Daemon, operator: &str) -> Result<Value> {
    let j = d.cli(operator, &["--json", "stat"])?.success()?.json()?;
    require_fields(&j, &["tiers", "logical_bytes", "cold_queue"], "stat")?;
    Ok(j)
}

/// `(chunks, stored_bytes)` of one tier in a `stat --json` object.
fn tier(stat: &Value, name: &str) -> Result<(u64, u64)> {
    let t = stat["tiers"]
        .as_array()
        .and_then(|tiers| tiers.iter().find(|t| t["name"] == name))
        .with_context(|| format!("stat names no {name} tier: {stat}"))?;
    Ok((u64_field(t, "chunks")?, u64_field(t, "stored_bytes")?))
}

/// Whether hot and warm hold at most their budgets.
fn within(stat: &Value, budgets: Budgets) -> Result<bool> {
    Ok(tier(stat, "hot")?.1 <= budgets.hot && tier(stat, "warm")?.1 <= budgets.warm)
}

/// Polls `stat` until hot and warm are within their budgets; fails with the last figures
/// after [`SETTLE`].
fn wait_within(d: &Daemon, operator: &str, budgets: Budgets, after: &str) -> Result<Value> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = stat(d, operator)?;
        if within(&s, budgets)? {
            return Ok(s);
        }
        if Instant::now() >= deadline {
            bail!(
                "{SETTLE:?} after {after}, the tiers are still over their budgets {budgets:?} \
                 (the evictor must get them under within about one pass); last stat: {s}\n\
                 the daemon's last warnings and eviction lines:\n{}",
                tier_log(d)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last 20 lines of the daemon's log that are warnings, errors or about eviction.
fn tier_log(d: &Daemon) -> String {
    let log = d.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("evict"))
        .collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Watches an idle daemon for [`IDLE_WATCH`]: hot and warm must stay within their budgets.
fn stays_within(d: &Daemon, operator: &str, budgets: Budgets) -> Result<Value> {
    let until = Instant::now() + IDLE_WATCH;
    loop {
        let s = stat(d, operator)?;
        ensure!(
            within(&s, budgets)?,
            "an idle daemon went over its budgets {budgets:?}: {s}"
        );
        if Instant::now() >= until {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `scipcache --json warm NS KEY`, checked for the contract's fields, `ns` and `key`.
fn warm(d: &Daemon, token: &str, key: &str) -> Result<Value> {
    let j = d
        .cli(token, &["--json", "warm", NS, key])?
        .success()?
        .json()?;
    require_fields(&j, WARM_FIELDS, "warm")?;
    ensure!(
        str_field(&j, "ns")? == NS && str_field(&j, "key")? == key,
        "warm --json names another ref: {j}"
    );
    Ok(j)
}

/// `push --json`, returning its object.
fn push(d: &Daemon, token: &str, key: &str, file: &Path) -> Result<Value> {
    d.cli(token, &["--json", "push", NS, key, p(file)])?
        .success()?
        .json()
}

/// Pulls `key` and checks it is byte-identical to `file`.
fn pulls_identical(d: &Daemon, token: &str, key: &str, file: &Path) -> Result<()> {
    let out = d.scratch().join("pulled.scip");
    d.cli(token, &["pull", NS, key, "-o", p(&out)])?.success()?;
    ensure!(
        same_bytes(&out, file)?,
        "{key} does not pull byte-identical to {}",
        file.display()
    );
    std::fs::remove_file(&out)?;
    Ok(())
}

#[test]
fn tiny_budgets_keep_hot_and_warm_under_them_and_every_ref_still_pulls_byte_identical() -> Result<()>
{
    let Some(series) = data::series_a() else {
        return Ok(());
    };
    let budgets = Budgets {
        hot: 4_000_000,
        warm: 16_000_000,
    };
    let d = Daemon::start(
        DaemonOptions::new()
            .args(["--hot-bytes", "4MB", "--warm-bytes", "16MB"])
            .args(["--cold-flush-after", "1s"]),
    )?;
    let operator = d.token("*", &["*:admin"], "1h")?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    for f in &series.files {
        push(&d, &writer, &f.key(), f.path()?)?;
    }
    let settled = wait_within(&d, &operator, budgets, "the last push of series A")?;
    let idle = stays_within(&d, &operator, budgets)?;
    let (warm_chunks, warm_bytes) = tier(&idle, "warm")?;
    ensure!(
        warm_chunks > 0 && warm_bytes > 0,
        "hot gave up chunks, so warm must hold some: {idle}"
    );
    ensure!(
        u64_field(&idle["movement"], "demoted")? > 0,
        "stat counts no demotion: {idle}"
    );
    // Nothing has been read by a caller yet: the daemon's own passes over the pushed blobs
    // (checking each commit, building its lookup tables) must not have promoted anything.
    ensure!(
        u64_field(&idle["movement"], "promoted")? == 0,
        "the daemon's own scans promoted chunks into hot before any caller read: {idle}"
    );
    eprintln!("tiering: series A under hot 4MB / warm 16MB settled at {settled}");
    for f in &series.files {
        pulls_identical(&d, &writer, &f.key(), f.path()?)?;
    }
    Ok(())
}

#[test]
fn a_pinned_ref_keeps_its_chunks_hot_through_the_push_and_pull_of_an_index_larger_than_hot()
-> Result<()> {
    let (Some(a), Some(b)) = (data::series_a(), data::series_b()) else {
        return Ok(());
    };
    let small = &a.files[0];
    let big = b
        .files
        .iter()
        .max_by_key(|f| f.len().unwrap_or(0))
        .context("series B is empty")?;
    // In hot (lz4) A/01 takes about 3.6 MB and a B index about 15.5 MB: the pinned index
    // fits a 16 MiB budget with room to spare, both together do not, and a B index is far
    // more than an eighth of it (a read that large is not admitted into hot on its first
    // pass).
    let budgets = Budgets {
        hot: 16 << 20,
        warm: 10 << 30,
    };
    let config_dir = tempfile::tempdir_in(scratch_dir())?;
    let config = config_dir.path().join("scipcached.toml");
    std::fs::write(&config, "pin_prefixes = [\"branch/\"]\n")?;
    let d = Daemon::start(
        budgets
            .options()
            .arg("--config")
            .arg(&config)
            .args(["--cold-flush-after", "1s"]),
    )?;
    let operator = d.token("*", &["*:admin"], "1h")?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;

    let pinned = push(&d, &writer, "branch/main", small.path()?)?;
    let after_small = stat(&d, &operator)?;
    let pinned_hot = tier(&after_small, "hot")?.1;
    ensure!(
        pinned_hot < budgets.hot / 10 * 9,
        "the pinned index must fit the hot budget for this test: {after_small}"
    );
    let big_key = big.key();
    push(&d, &writer, &big_key, big.path()?)?;
    let after_big = wait_within(&d, &operator, budgets, "the push of the large index")?;
    ensure!(
        u64_field(&after_big["movement"], "demoted")? > 0,
        "the large index must have pushed chunks out of hot: {after_big}"
    );
    pulls_identical(&d, &writer, &big_key, big.path()?)?;
    let after_pull = wait_within(&d, &operator, budgets, "the pull of the large index")?;

    let warmed = warm(&d, &writer, "branch/main")?;
    ensure!(
        u64_field(&warmed, "chunks")? == u64_field(&pinned, "new_chunks")?,
        "warm counts the ref's distinct chunks (the first push uploaded each once): \
         warm {warmed}, push {pinned}"
    );
    ensure!(
        u64_field(&warmed, "promoted_chunks")? == 0
            && u64_field(&warmed, "promoted_bytes")? == 0
            && u64_field(&warmed, "hot_chunks")? == u64_field(&warmed, "chunks")?,
        "the pinned ref's chunks must all have stayed hot through the large push and pull: \
         warm {warmed}; stat after the pull {after_pull}"
    );
    stays_within(&d, &operator, budgets)?;
    Ok(())
}

/// A daemon with a 6 MiB hot budget holding series A's commit 01, whose chunks were partly
/// pushed out of hot by commit 06.
struct Evicted {
    d: Daemon,
    operator: String,
    reader: String,
    budgets: Budgets,
    key: String,
    file: PathBuf,
    /// `push --json` of commit 01 into the empty daemon: `new_chunks` counts its distinct
    /// chunks.
    pushed: Value,
}

impl Evicted {
    fn start() -> Result<Option<Self>> {
        let Some(a) = data::series_a() else {
            return Ok(None);
        };
        // Commit 01 takes about 3.6 MB in hot (lz4), and so does a generated 6 MB blob (half
        // of it incompressible) that shares no chunk with it: one fits a 6 MiB budget, both
        // do not. (Commit 06, the release, no longer serves: with versions normalized it
        // shares every chunk with 01.)
        let first = &a.files[0];
        let budgets = Budgets {
            hot: 6 << 20,
            warm: 10 << 30,
        };
        let d = Daemon::start(budgets.options().args(["--cold-flush-after", "1s"]))?;
        let operator = d.token("*", &["*:admin"], "1h")?;
        let writer = d.token("acme", &["web/app:write"], "1h")?;
        let reader = d.token("acme", &["web/app:read"], "1h")?;
        let pushed = push(&d, &writer, &first.key(), first.path()?)?;
        let alone = stat(&d, &operator)?;
        ensure!(
            tier(&alone, "hot")?.1 < budgets.hot / 10 * 9,
            "the first index must fit the hot budget for this test: {alone}"
        );
        // Pushed later, so more recently used: the evictor demotes the first index's chunks.
        // Access times are kept in whole seconds; the pause makes "later" unambiguous.
        std::thread::sleep(ACCESS_TICK);
        let other = d.scratch().join("other-index");
        write_generated(&other, 6_000_000, 66)?;
        push(&d, &writer, "commit/other", &other)?;
        let evicted = wait_within(&d, &operator, budgets, "the second push")?;
        ensure!(
            u64_field(&evicted["movement"], "demoted")? > 0,
            "the second index must have pushed chunks out of hot: {evicted}"
        );
        // The warm-up stamps the first index's chunks as used after the second's.
        std::thread::sleep(ACCESS_TICK);
        Ok(Some(Self {
            d,
            operator,
            reader,
            budgets,
            key: first.key(),
            file: first.path()?.to_path_buf(),
            pushed,
        }))
    }

    /// `scipcache warm` of the first index, checked for its distinct chunk count.
    fn warm(&self) -> Result<Value> {
        let warmed = warm(&self.d, &self.reader, &self.key)?;
        ensure!(
            u64_field(&warmed, "chunks")? == u64_field(&self.pushed, "new_chunks")?,
            "warm counts the ref's distinct chunks (the first push uploaded each once): \
             warm {warmed}, push {}",
            self.pushed
        );
        Ok(warmed)
    }
}

#[test]
fn warm_brings_an_evicted_refs_chunks_back_into_hot_within_the_budget() -> Result<()> {
    let Some(e) = Evicted::start()? else {
        return Ok(());
    };
    let warmed = e.warm()?;
    ensure!(
        u64_field(&warmed, "promoted_bytes")? > 0 && u64_field(&warmed, "promoted_chunks")? > 0,
        "warm must promote the evicted chunks: {warmed}"
    );
    wait_within(&e.d, &e.operator, e.budgets, "the warm-up")?;
    stays_within(&e.d, &e.operator, e.budgets)?;
    pulls_identical(&e.d, &e.reader, &e.key, &e.file)?;
    Ok(())
}

#[test]
fn warm_makes_an_evicted_ref_that_fits_the_hot_budget_wholly_hot_and_keeps_it_there() -> Result<()>
{
    let Some(e) = Evicted::start()? else {
        return Ok(());
    };
    let warmed = e.warm()?;
    let after = wait_within(&e.d, &e.operator, e.budgets, "the warm-up")?;
    ensure!(
        u64_field(&warmed, "hot_chunks")? == u64_field(&warmed, "chunks")?,
        "the ref (about 3.6 MB in hot) fits 90% of the 6 MiB hot budget, so a warm-up must \
         bring all its chunks into hot: {warmed}; stat after: {after}"
    );
    // The evictor made room by demoting the other index, not the one just warmed.
    let again = e.warm()?;
    ensure!(
        u64_field(&again, "promoted_chunks")? == 0,
        "a second warm-up found chunks of the warmed ref out of hot again: {again}"
    );
    Ok(())
}

/// Files under `dir` (recursively); 0 when it does not exist.
fn files_under(dir: &Path) -> Result<usize> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in
            std::fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// A cold tier folder the test can break (replace by a plain file) and restore.
struct ColdFolder {
    dir: PathBuf,
    saved: PathBuf,
    _root: tempfile::TempDir,
}

impl ColdFolder {
    fn new() -> Result<Self> {
        let root = tempfile::tempdir_in(scratch_dir())?;
        let dir = root.path().join("cold");
        std::fs::create_dir(&dir)?;
        Ok(Self {
            saved: root.path().join("cold.saved"),
            dir,
            _root: root,
        })
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    /// Moves the folder away and puts a plain file in its place: every write under it fails
    /// (also for root, which file modes would not stop).
    fn break_it(&self) -> Result<()> {
        std::fs::rename(&self.dir, &self.saved)?;
        std::fs::write(&self.dir, b"not a directory\n")?;
        Ok(())
    }

    fn restore(&self) -> Result<()> {
        std::fs::remove_file(&self.dir)?;
        std::fs::rename(&self.saved, &self.dir)?;
        Ok(())
    }
}

/// Refs under `key` as `ls --json` lists them.
fn listed(d: &Daemon, token: &str, key: &str) -> Result<usize> {
    let j = d
        .cli(token, &["--json", "ls", NS, "--prefix", key])?
        .success()?
        .json()?;
    Ok(j["refs"]
        .as_array()
        .with_context(|| format!("ls --json has no refs array: {j}"))?
        .len())
}

#[test]
fn durability_cold_acknowledges_once_the_object_store_holds_the_push_and_refuses_while_it_is_down()
-> Result<()> {
    let cold = ColdFolder::new()?;
    let d = Daemon::start(
        DaemonOptions::new()
            .args(["--durability", "cold", "--cold-url"])
            .arg(cold.url()),
    )?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let first = d.scratch().join("first.bin");
    write_generated(&first, 3 << 20, 21)?;
    push(&d, &writer, "commit/1", &first)?;
    // Acknowledged: the object store already holds everything, without waiting.
    for (folder, what) in [
        ("packs", "pack objects"),
        ("manifests", "the manifest object"),
        ("refs", "the ref object"),
    ] {
        let n = files_under(&cold.dir.join(folder))?;
        ensure!(
            n > 0,
            "a push acknowledged under --durability cold left no {what} under {}/{folder}",
            cold.dir.display()
        );
    }

    cold.break_it()?;
    let second = d.scratch().join("second.bin");
    write_generated(&second, 3 << 20, 22)?;
    let out = d.cli(&writer, &["--json", "push", NS, "commit/2", p(&second)])?;
    let restore = cold.restore();
    ensure!(
        out.code() == Some(1) && out.stderr.trim().starts_with("unavailable: "),
        "a push while the cold tier is down must fail `unavailable` (exit 1):\n{out}"
    );
    ensure!(
        listed(&d, &writer, "commit/2")? == 0,
        "the refused push set its ref"
    );
    d.cli(
        &writer,
        &["pull", NS, "commit/2", "-o", p(&d.scratch().join("x"))],
    )?
    .expect_code(3)?;
    restore?;

    // Once the cold tier works again, the same push succeeds.
    push(&d, &writer, "commit/2", &second)?;
    pulls_identical(&d, &writer, "commit/2", &second)?;
    pulls_identical(&d, &writer, "commit/1", &first)?;
    Ok(())
}

#[test]
fn durability_local_accepts_pushes_while_the_cold_tier_is_down_and_catches_up_after() -> Result<()>
{
    let cold = ColdFolder::new()?;
    let d = Daemon::start(
        DaemonOptions::new()
            .args([
                "--durability",
                "local",
                "--cold-flush-after",
                "1s",
                "--cold-url",
            ])
            .arg(cold.url()),
    )?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let file = d.scratch().join("blob.bin");
    write_generated(&file, 3 << 20, 23)?;

    cold.break_it()?;
    let broken = push_while_broken(&d, &writer, &admin, &file);
    let restore = cold.restore();
    broken?;
    restore?;
    d.wait_cold_drained(&admin)?;
    ensure!(
        files_under(&cold.dir.join("packs"))? > 0,
        "the cold queue drained but {} holds no pack",
        cold.dir.display()
    );
    pulls_identical(&d, &writer, "commit/1", &file)?;
    Ok(())
}

/// With the cold tier broken: a push succeeds, its chunks wait in the cold queue, and the
/// write-behind's failure is logged (so the catching up after the repair is real).
fn push_while_broken(d: &Daemon, writer: &str, admin: &str, file: &Path) -> Result<()> {
    d.cli(writer, &["--json", "push", NS, "commit/1", p(file)])?
        .success()
        .context("--durability local must accept a push while the cold tier is down")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log().contains("cold upload failed") {
        ensure!(
            Instant::now() < deadline,
            "the write-behind logged no failed cold upload within 30 s of a push to a broken \
             cold tier; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let queued = d.cold_queue(admin)?;
    ensure!(
        queued > 0,
        "with the cold tier down the pushed chunks must wait in the cold queue, which says {queued}"
    );
    Ok(())
}
