//! The daemon's life: SIGTERM mid-push exits 0 and leaves no half-written ref, kill -9 loses
//! no acknowledged write, a second daemon cannot share a data dir, the first start makes a
//! signing key, and `/healthz` and `/metrics` answer.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_tests::{
    Daemon, DaemonOptions, NS, Spawned, blake3_file, daemon_command, data, http_get,
    write_generated,
};

use crate::common::{heavy_io, mib, p, str_field};

/// How long a daemon may take to exit after SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(15);

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn sigterm_during_push_exits_0_and_leaves_the_ref_whole_or_absent() -> Result<()> {
    let Some(series) = data::series_b() else {
        return Ok(());
    };
    let (first, second) = (&series.files[0], &series.files[1]);
    // Decompress before queueing for the I/O lock.
    first.path()?;
    second.path()?;
    let _io = heavy_io();
    let mut d = Daemon::start(DaemonOptions::new())?;
    let acme = d.token("acme", &["web/app:write"], "1h")?;
    let globex = d.token("globex", &["web/app:write"], "1h")?;

    // How long an uninterrupted push of a ~99 MB index takes here (another tenant, so the
    // interrupted push below dedups nothing against it).
    let calibration = d
        .cli(
            &globex,
            &["push", "globex/web/app", &second.key(), p(second.path()?)],
        )?
        .success()?;
    let half = calibration.elapsed / 2;

    let push =
        Spawned::spawn(d.cli_command(Some(&acme), &["push", NS, &first.key(), p(first.path()?)]))?;
    std::thread::sleep(half);
    let stopping = Instant::now();
    let status = d.sigterm()?;
    let stop_time = stopping.elapsed();
    let push = push.wait(Duration::from_secs(120))?;
    eprintln!(
        "lifecycle: SIGTERM {half:.1?} into a {:.0} MiB push (uninterrupted: {:.1?}): daemon \
         exited {status} after {stop_time:.1?}; push exited {:?}: {}",
        mib(first.len()?),
        calibration.elapsed,
        push.code(),
        push.error_line()
    );
    ensure!(
        status.success(),
        "SIGTERM must end the daemon with exit 0, got {status}; log:\n{}",
        d.log()
    );
    if stop_time > Duration::from_secs(3) {
        eprintln!("lifecycle: slow stop; daemon log:\n{}", tail(&d.log(), 25));
    }
    // "Within seconds" (contract): the default in-flight grace is 5 s; 15 s leaves room for
    // persisting queues on a loaded CI machine. A bound against hangs, not a speed check.
    ensure!(
        stop_time < STOP_BOUND,
        "the daemon took {stop_time:.1?} to exit after SIGTERM during a push (contract: exit 0 \
         within seconds; bound {STOP_BOUND:?}); log:\n{}",
        tail(&d.log(), 25)
    );

    d.restart()?;
    let dest = d.scratch().join("pulled");
    let pull = d.cli(&acme, &["pull", NS, &first.key(), "-o", p(&dest)])?;
    match pull.code() {
        Some(0) => {
            ensure!(
                blake3_file(&dest)? == first.b3,
                "after SIGTERM and restart the ref exists but pulls other bytes"
            );
            eprintln!("lifecycle: the interrupted push's ref exists and is whole");
        }
        Some(3) => {
            ensure!(
                push.code() != Some(0),
                "the push was acknowledged (exit 0) but its ref is gone after restart:\n{push}"
            );
            eprintln!("lifecycle: the interrupted push left no ref");
        }
        _ => bail!(
            "pull after SIGTERM and restart must exit 0 or 3:\n{pull}\nlog:\n{}",
            d.all_logs()
        ),
    }
    // The push acknowledged before the SIGTERM survives it.
    d.cli(
        &globex,
        &["pull", "globex/web/app", &second.key(), "-o", p(&dest)],
    )?
    .success()?;
    ensure!(
        blake3_file(&dest)? == second.b3,
        "acknowledged push lost over SIGTERM"
    );

    // And the restarted daemon stops cleanly too.
    let status = d.sigterm()?;
    ensure!(
        status.success(),
        "second SIGTERM: {status}; log:\n{}",
        d.log()
    );
    Ok(())
}

#[test]
fn kill_9_after_an_acknowledged_push_loses_nothing() -> Result<()> {
    let mut d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let mut pushed = Vec::new();
    for (key, len, seed) in [
        ("commit/big", 48 << 20, 31),
        ("commit/small", 200 << 10, 32),
    ] {
        let file = d.scratch().join(key.replace('/', "-"));
        let b3 = write_generated(&file, len, seed)?;
        let j = d
            .cli(&writer, &["--json", "push", NS, key, p(&file)])?
            .success()?
            .json()?;
        ensure!(str_field(&j, "blob")? == b3, "{j}");
        pushed.push((key, b3));
    }
    // Acknowledged: the CLI exited 0. Now the hard stop.
    d.kill9()?;

    // Meanwhile the CLI fails with exit 1 and the contract's one-line cause.
    let out = d.cli(&writer, &["ls", NS])?;
    ensure!(
        out.code() == Some(1)
            && out.stderr.trim().lines().count() == 1
            && out.error_line().starts_with("unavailable: "),
        "with the daemon down the CLI must exit 1 with one line `unavailable: <message>`:\n{out}"
    );

    d.restart()?;

    let dest = d.scratch().join("pulled");
    for (key, b3) in &pushed {
        let out = d.cli(&writer, &["pull", NS, key, "-o", p(&dest)])?;
        if out.code() != Some(0) {
            bail!(
                "acknowledged {key} lost after kill -9:\n{out}\nlogs:\n{}",
                d.all_logs()
            );
        }
        ensure!(
            blake3_file(&dest)? == *b3,
            "{key} pulls other bytes after kill -9"
        );
    }
    let status = d.sigterm()?;
    ensure!(
        status.success(),
        "SIGTERM after recovery: {status}; log:\n{}",
        d.log()
    );
    Ok(())
}

#[test]
fn second_daemon_on_the_same_data_dir_refuses_to_start() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let mut cmd = daemon_command();
    cmd.arg("--data-dir").arg(d.data_dir()).args([
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let second = Spawned::spawn(cmd)?
        .wait(Duration::from_secs(30))
        .context("a second scipcached on a data dir in use must exit, not run")?;
    ensure!(
        !second.status.success(),
        "a second daemon on the same data dir exited 0:\n{second}"
    );
    let said = format!("{}{}", second.stdout_str(), second.stderr).to_lowercase();
    let dir = d.data_dir().to_string_lossy().to_lowercase();
    ensure!(
        said.contains("lock") || said.contains(&dir),
        "the refusal must mention the lock or the data dir:\n{second}"
    );
    eprintln!("lifecycle: second daemon refused: {}", second.error_line());

    // The first daemon is unharmed.
    ensure!(http_get(d.metrics_addr(), "/healthz")?.status == 200);
    let reader = d.token("acme", &["web/app:read"], "1h")?;
    d.cli(&reader, &["ls", NS])?.success()?;
    Ok(())
}

#[test]
fn first_start_creates_keys_and_serves_healthz_and_metrics() -> Result<()> {
    // The CLI's variables are ignored, and a flag beats the environment (--data-dir is set).
    let elsewhere = tempfile::tempdir_in(scipcache_tests::scratch_dir())?;
    let env_data_dir = elsewhere.path().join("from-env");
    let mut d = Daemon::start(
        DaemonOptions::new()
            .env("SCIPCACHE_TOKEN", "not-a-token")
            .env("SCIPCACHE_SERVER", "http://127.0.0.1:1")
            .env("SCIPCACHE_DATA_DIR", &env_data_dir),
    )?;
    ensure!(
        !env_data_dir.exists(),
        "SCIPCACHE_DATA_DIR beat --data-dir (contract: flag > env > file > default)"
    );
    let keys = d.data_dir().join("keys");
    ensure!(keys.is_dir(), "first start must create {}", keys.display());
    let key_files = list(&keys)?;
    ensure!(!key_files.is_empty(), "{} is empty", keys.display());
    ensure!(
        d.log().contains("scipcached token"),
        "the first start must log how to mint a token (`scipcached token ...`); log:\n{}",
        d.log()
    );

    let health = http_get(d.metrics_addr(), "/healthz")?;
    ensure!(health.status == 200, "/healthz: {health:?}");
    let metrics = http_get(d.metrics_addr(), "/metrics")?;
    ensure!(
        metrics.status == 200,
        "/metrics: {} {:?}",
        metrics.status,
        metrics.headers
    );
    ensure!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "/metrics content type must be Prometheus text: {:?}",
        metrics.headers
    );
    ensure!(
        metrics.body.contains("# TYPE ") && metrics.body.contains("# HELP "),
        "/metrics is not Prometheus text:\n{}",
        metrics.body
    );

    // A token minted now still works after a restart: the key is kept, not regenerated.
    let token = d.token("acme", &["web/app:read"], "1h")?;
    let before: Vec<_> = key_files
        .iter()
        .map(std::fs::read)
        .collect::<Result<_, _>>()?;
    d.restart()?;
    let after: Vec<_> = key_files
        .iter()
        .map(std::fs::read)
        .collect::<Result<_, _>>()?;
    ensure!(before == after, "the signing key changed on restart");
    d.cli(&token, &["ls", NS])?.success()?;
    Ok(())
}

fn list(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[tokio::test]
async fn grpc_health_and_reflection_answer_without_a_token() -> Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let d = Daemon::start(DaemonOptions::new())?;
    let channel = tonic::transport::Channel::from_shared(d.url())?
        .connect()
        .await?;

    let health = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    ensure!(
        health.status == ServingStatus::Serving as i32,
        "grpc.health.v1 says {health:?}"
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await?
        .into_inner();
    let response = responses
        .message()
        .await?
        .context("reflection answered nothing")?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        bail!("reflection did not list services: {response:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "scipcache.v1.Info",
        "scipcache.v1.Chunks",
        "scipcache.v1.Blobs",
        "scipcache.v1.Refs",
        "scipcache.v1.Admin",
    ] {
        ensure!(
            names.contains(&want),
            "reflection lists {names:?}, not {want}"
        );
    }
    Ok(())
}
