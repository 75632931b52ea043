//! An expired server certificate (`--tls-cert`) still loads, since clients are the ones that
//! refuse it, but the daemon says so: a warning in its log at start and a `warning:` line in
//! the `/healthz` body, while a valid certificate gets neither.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, http_get};

/// The daemon crate's test PKI (see `daemon/tests/fixtures/README.md`).
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../daemon/tests/fixtures")
        .join(name)
}

fn tls_daemon(cert: &str, key: &str) -> Result<Daemon> {
    Daemon::start(
        DaemonOptions::new()
            .arg("--tls-cert")
            .arg(fixture(cert))
            .arg("--tls-key")
            .arg(fixture(key)),
    )
}

#[test]
fn an_expired_server_certificate_is_reported_at_start_and_by_healthz() -> Result<()> {
    let expired = tls_daemon("expired.crt", "expired.key")?;
    let log = expired.log();
    ensure!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("expired.crt")
            && l.contains("expired at 2021-01-01T00:00:00Z")),
        "no start-up warning naming the expired certificate; log:\n{log}"
    );
    let health = http_get(expired.metrics_addr(), "/healthz")?;
    ensure!(health.status == 200, "/healthz: {health:?}");
    ensure!(
        health
            .body
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains("expired.crt")),
        "/healthz does not report the expired certificate: {:?}",
        health.body
    );

    let valid = tls_daemon("server.crt", "server.key")?;
    let health = http_get(valid.metrics_addr(), "/healthz")?;
    ensure!(
        health.status == 200 && !health.body.contains("warning"),
        "a valid certificate is reported: {health:?}"
    );
    ensure!(
        !valid.log().contains("expired"),
        "a valid certificate is reported:\n{}",
        valid.log()
    );
    Ok(())
}
