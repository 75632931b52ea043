//! `--audit-log FILE`: one JSON object a line for pushes, deletions (a ref, a prefix), gc,
//! warm-ups and every refused call, each with `time subject tenant action ns key outcome`;
//! the file is owner-only and never holds a token.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, write_generated};
use serde_json::Value;

use crate::common::{p, rfc3339_utc};

/// The fields every line has.
const FIELDS: &[&str] = &[
    "time", "subject", "tenant", "action", "ns", "key", "outcome",
];

/// The audit lines written so far, parsed.
fn lines(path: &std::path::Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l}")))
        .collect()
}

/// The first line with `action` and `outcome`.
fn find<'a>(all: &'a [Value], action: &str, outcome: &str) -> Option<&'a Value> {
    all.iter()
        .find(|l| l["action"] == action && l["outcome"] == outcome)
}

#[test]
fn the_audit_log_has_a_line_per_push_delete_gc_warm_and_refusal_and_never_a_token() -> Result<()> {
    let scratch = tempfile::tempdir_in(scipcache_tests::scratch_dir())?;
    let path = scratch.path().join("audit.log");
    let mut d = Daemon::start(DaemonOptions::new().arg("--audit-log").arg(&path))?;
    let writer = d.mint("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let reader = d.token("acme", &["web/app:read"], "1h")?;
    let file = d.scratch().join("blob.bin");
    write_generated(&file, 300 * 1024, 3)?;

    d.cli(&writer.token, &["push", NS, "commit/1", p(&file)])?
        .success()?;
    d.cli(&writer.token, &["push", NS, "pr/1", p(&file)])?
        .success()?;
    d.cli(&reader, &["warm", NS, "commit/1"])?.success()?;
    d.cli(&writer.token, &["rm", NS, "commit/1"])?.success()?;
    d.cli(&writer.token, &["rm", NS, "--prefix", "pr/"])?
        .success()?;
    d.cli(&admin, &["gc", "--dry-run"])?.success()?;
    d.cli(&reader, &["rm", NS, "pr/2"])?.expect_code(4)?;
    d.cli_without_token(&["ls", NS])?.expect_code(4)?;
    d.cli(&reader, &["gc"])?.expect_code(4)?;

    // Written off the request path: wait for the lines to arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = lines(&path)?;
        if all.len() >= 9 {
            break all;
        }
        if Instant::now() >= deadline {
            bail!(
                "after 30 s the audit log holds {} lines:\n{all:#?}",
                all.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for line in &all {
        for field in FIELDS {
            ensure!(line.get(*field).is_some(), "a line lacks `{field}`: {line}");
        }
        rfc3339_utc(line["time"].as_str().context("time is not a string")?)?;
    }
    let push = find(&all, "push", "ok").context("no push line")?;
    ensure!(
        push["subject"].as_str().is_some_and(|s| !s.is_empty()),
        "a push names who pushed: {push}"
    );
    ensure!(
        push["tenant"] == "acme"
            && push["ns"] == NS
            && push["key"] == "commit/1"
            && push["bytes"] == 300 * 1024,
        "{push}"
    );
    let rm = find(&all, "rm", "ok").context("no rm line")?;
    ensure!(rm["key"] == "commit/1" && rm["deleted"] == true, "{rm}");
    let prefix = find(&all, "rm_prefix", "ok").context("no rm_prefix line")?;
    ensure!(prefix["key"] == "pr/" && prefix["deleted"] == 1, "{prefix}");
    let warm = find(&all, "warm", "ok").context("no warm line")?;
    ensure!(warm["key"] == "commit/1", "{warm}");
    let gc = find(&all, "gc", "ok").context("no gc line")?;
    ensure!(
        gc["tenant"] == "acme" && gc["dry_run"] == true && gc.get("swept_chunks").is_some(),
        "{gc}"
    );
    let denied = find(&all, "rm", "PERMISSION_DENIED").context("no refused rm line")?;
    ensure!(
        denied["ns"] == NS
            && denied["reason"]
                .as_str()
                .is_some_and(|r| r.contains("no write access")),
        "{denied}"
    );
    let denied_gc = find(&all, "gc", "PERMISSION_DENIED").context("no refused gc line")?;
    ensure!(denied_gc["reason"].is_string(), "{denied_gc}");
    // The CLI's first call (Info/GetServerInfo) is the one refused.
    let unauth = all
        .iter()
        .find(|l| l["outcome"] == "UNAUTHENTICATED")
        .context("no unauthenticated line")?;
    ensure!(
        unauth["subject"].is_null()
            && unauth["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("missing token")),
        "{unauth}"
    );

    // Stop the daemon so that everything is written, then look at the whole file.
    let status = d.sigterm()?;
    ensure!(status.success(), "SIGTERM exit {status}");
    let text = std::fs::read_to_string(&path)?;
    for token in [&writer.token, &admin, &reader] {
        ensure!(
            !text.contains(token.as_str()),
            "the audit log holds a token"
        );
        let signature = token.rsplit('.').next().unwrap_or_default();
        ensure!(
            !text.contains(signature),
            "the audit log holds a token's signature"
        );
    }
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "the audit log has mode {mode:o}, not 600");
    Ok(())
}
