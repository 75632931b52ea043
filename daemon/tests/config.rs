//! The daemon's options as the real `scipcached` binary reads them from the environment: its
//! own `SCIPCACHE_*` variables are options, the CLI's (`SCIPCACHE_TOKEN`, `SCIPCACHE_SERVER`)
//! are none of its business, so a shell set up for `scipcache` can start `scipcached`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scipcache_proto::pb;
use scipcache_proto::pb::info_client::InfoClient;
use tonic::Request;
use tonic::transport::Channel;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// `scipcached` with a clean environment plus what a CI shell set up for the CLI exports.
fn scipcached_in_a_cli_shell() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scipcached"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.env(
        "SCIPCACHE_TOKEN",
        "eyJhbGciOiJIUzI1NiJ9.not-a-token.for-the-cli",
    )
    .env("SCIPCACHE_SERVER", "https://cache.example.com:7741")
    .stdin(Stdio::null());
    cmd
}

/// Kills the daemon when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The addresses of the `scipcached ready grpc=<addr> metrics=<addr>` log line.
fn ready_addrs(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = log.lines().find(|l| l.contains("scipcached ready"))?;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(|v| v.trim_end_matches(|c: char| !c.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
    };
    Some((field("grpc=")?, field("metrics=")?))
}

/// Waits for the ready line in `log`; `Err` with the log if the daemon exits or never gets
/// there.
fn wait_ready(daemon: &mut Daemon, log: &Path) -> Result<(SocketAddr, SocketAddr), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addrs) = ready_addrs(&text) {
            return Ok(addrs);
        }
        let exited = daemon.0.try_wait().map_err(|e| e.to_string())?;
        if exited.is_some() || Instant::now() > deadline {
            return Err(format!("scipcached not ready ({exited:?}):\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn a_shell_exporting_the_cli_variables_starts_and_serves_the_daemon() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let log = dir.path().join("log");
    let file = std::fs::File::create(&log)?;
    // The daemon's own options come from its variables in the same shell.
    let child = scipcached_in_a_cli_shell()
        .env("SCIPCACHE_DATA_DIR", &data)
        .env("SCIPCACHE_LISTEN", "127.0.0.1:0")
        .env("SCIPCACHE_METRICS_LISTEN", "127.0.0.1:0")
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?;
    let mut daemon = Daemon(child);
    let (grpc, metrics) = wait_ready(&mut daemon, &log)?;
    assert!(
        data.join("keys").join("hs256.key").exists(),
        "SCIPCACHE_DATA_DIR was not used"
    );

    let health = http_get(metrics, "/healthz").await?;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // `scipcached token` in the same shell, then a call with that token.
    let minted = scipcached_in_a_cli_shell()
        .env("SCIPCACHE_DATA_DIR", &data)
        .args(["token", "--tenant", "acme", "--scope", "*:read"])
        .output()?;
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout)?.trim().to_owned();
    let channel = Channel::from_shared(format!("http://{grpc}"))?
        .connect()
        .await?;
    let mut req = Request::new(pb::GetServerInfoRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let info = InfoClient::new(channel).get_server_info(req).await?;
    assert_eq!(info.get_ref().version, env!("CARGO_PKG_VERSION"));
    Ok(())
}
