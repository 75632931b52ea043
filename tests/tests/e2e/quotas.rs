//! `[quotas]`: a push that would take a tenant over its quota fails (`resource exhausted:`
//! naming the quota, exit 1) and sets no ref; another tenant is unaffected. `/metrics` shows
//! the quota and the tenant's usage.

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, http_get, write_generated};

use crate::common::p;

#[test]
fn a_push_over_the_tenants_quota_is_resource_exhausted_and_sets_no_ref() -> Result<()> {
    let scratch = tempfile::tempdir_in(scipcache_tests::scratch_dir())?;
    let config = scratch.path().join("scipcached.toml");
    std::fs::write(&config, "[quotas]\nacme = \"1MiB\"\n")?;
    let d = Daemon::start(DaemonOptions::new().arg("--config").arg(&config))?;
    let acme = d.token("acme", &["*:write"], "1h")?;
    let globex = d.token("globex", &["*:write"], "1h")?;

    let small = d.scratch().join("small.bin");
    write_generated(&small, 100 * 1024, 1)?;
    d.cli(&acme, &["push", NS, "commit/small", p(&small)])?
        .success()?;

    let large = d.scratch().join("large.bin");
    write_generated(&large, 4 << 20, 2)?;
    let refused = d.cli(&acme, &["push", NS, "commit/large", p(&large)])?;
    let stderr = refused.stderr.trim();
    ensure!(
        refused.code() == Some(1)
            && stderr.lines().count() == 1
            && stderr.starts_with("resource exhausted: ")
            && stderr.contains("quota"),
        "a push over the 1 MiB quota must fail with one `resource exhausted:` line naming the \
         quota:\n{refused}"
    );
    let listed = d.cli(&acme, &["--json", "ls", NS])?.success()?.json()?;
    let keys: Vec<&str> = listed["refs"]
        .as_array()
        .map(|refs| refs.iter().filter_map(|r| r["key"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        keys == ["commit/small"],
        "the refused push set a ref: {keys:?}"
    );

    d.cli(
        &globex,
        &["push", "globex/web/app", "commit/large", p(&large)],
    )?
    .success()?;

    let page = http_get(d.metrics_addr(), "/metrics")?.body;
    ensure!(
        page.contains("scipcache_tenant_quota_bytes{tenant=\"acme\"} 1048576"),
        "/metrics shows the quota:\n{page}"
    );
    ensure!(
        page.lines()
            .any(|l| l.starts_with("scipcache_tenant_stored_bytes{tenant=\"acme\"} ")),
        "/metrics shows the tenant's usage"
    );
    Ok(())
}
