//! Failures below gRPC, and how the client reports them: a server whose connections break in
//! the middle of a push (through a relay the test cuts, as a daemon killed with SIGKILL cuts
//! them), and TLS files that cannot be used.
//!
//! Before these were mapped, a cut push failed as `unknown: transport error` or `unknown: h2
//! protocol error`, and a bad `--key` as `invalid argument: cannot use the TLS files:
//! transport error`, naming neither the file nor the cause.

mod fake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scipcache_client::{Client, ClientConfig, Namespace, PullOptions, PushOptions, RefKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A TCP relay in front of the fake server that counts the bytes the client sends and can cut
/// every connection at once.
struct Relay {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    cuts: watch::Sender<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let (cuts, cut) = watch::channel(0);
        let counter = Arc::clone(&sent);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, Arc::clone(&counter), cut.clone()));
            }
        });
        Ok(Self {
            addr,
            sent,
            cuts,
            accept,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the client has sent `bytes` through the relay.
    async fn wait_for(&self, bytes: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.sent.load(Ordering::SeqCst) < bytes {
            if Instant::now() > deadline {
                return Err(format!("the client sent fewer than {bytes} bytes in 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Cuts every open connection; new ones are still relayed.
    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Cuts every connection and stops listening, as a killed daemon does: new connections
    /// are refused.
    fn kill(&self) {
        self.accept.abort();
        self.cut();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    sent: Arc<AtomicU64>,
    mut cut: watch::Receiver<u64>,
) {
    cut.mark_unchanged();
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return server_write.shutdown().await;
            }
            sent.fetch_add(n as u64, Ordering::SeqCst);
            server_write.write_all(&buf[..n]).await?;
        }
    };
    let down = tokio::io::copy(&mut server_read, &mut client_write);
    // Dropping the sockets with unread bytes in them resets the connections.
    tokio::select! {
        _ = futures::future::join(up, down) => {}
        _ = cut.changed() => {}
    }
}

/// Incompressible bytes, so that what the client sends tracks the blob's size.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn names(key: &str) -> Result<(Namespace, RefKey), scipcache_client::Error> {
    Ok(("acme/web/app".parse()?, key.parse()?))
}

const BLOB: usize = 48 << 20;
/// Bytes through the relay before the cut: the push is then well into its uploads.
const CUT_AFTER: u64 = 10 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_push_fails_the_push_as_unavailable() -> TestResult {
    let fake = fake::start().await?;
    let relay = Relay::start(fake.addr).await?;
    let client = Client::connect(ClientConfig {
        token: Some(fake::TOKEN.into()),
        ..ClientConfig::new(relay.url())
    })
    .await?;
    let (ns, key) = names("commit/killed")?;
    let push = tokio::spawn(async move {
        client
            .push(&ns, &key, &noise(BLOB, 3)[..], &PushOptions::default())
            .await
    });
    relay.wait_for(CUT_AFTER).await?;
    relay.kill();
    let err = push
        .await?
        .err()
        .ok_or("the push succeeded after the kill")?;
    assert_eq!(err.code_words(), "unavailable", "{err}");
    assert_eq!(err.exit_code(), 1);
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "the connection to scipcached at {} failed: ",
            relay.url()
        )),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_once_mid_push_are_retried_and_the_push_completes() -> TestResult {
    let fake = fake::start().await?;
    let relay = Relay::start(fake.addr).await?;
    let client = Client::connect(ClientConfig {
        token: Some(fake::TOKEN.into()),
        ..ClientConfig::new(relay.url())
    })
    .await?;
    let (ns, key) = names("commit/cut")?;
    let blob = noise(BLOB, 5);
    let pusher = client.clone();
    let data = blob.clone();
    let push = tokio::spawn(async move {
        let (ns, key) = names("commit/cut")?;
        pusher
            .push(&ns, &key, &data[..], &PushOptions::default())
            .await
    });
    relay.wait_for(CUT_AFTER).await?;
    relay.cut();
    let report = push.await??;
    assert_eq!(report.bytes, BLOB as u64);
    let mut out = Vec::new();
    client
        .pull(&ns, &key, &[], &mut out, &PullOptions::default())
        .await?;
    assert!(out == blob, "the retried push pulls other bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_unavailable_when_the_server_dies_mid_push() -> TestResult {
    let fake = fake::start().await?;
    let relay = Relay::start(fake.addr).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("index.scip");
    std::fs::write(&file, noise(BLOB, 7))?;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scipcache"));
    cmd.args(["push", "acme/web/app", "commit/cli-killed"])
        .arg(&file)
        .env("SCIPCACHE_SERVER", relay.url())
        .env("SCIPCACHE_TOKEN", fake::TOKEN);
    let run = tokio::process::Command::from(cmd).output();
    relay.wait_for(CUT_AFTER).await?;
    relay.kill();
    let out = run.await?;
    let line = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(out.status.code(), Some(1), "{line}");
    assert!(line.starts_with("unavailable: "), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    Ok(())
}

/// Runs `scipcache ls` against an https URL with the given global TLS options.
async fn ls_with(tls: &[&std::ffi::OsStr]) -> std::io::Result<std::process::Output> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scipcache"));
    cmd.args(["--server", "https://localhost:1"])
        .args(tls)
        .args(["ls", "acme/web/app"])
        .env_remove("SCIPCACHE_SERVER")
        .env_remove("SCIPCACHE_TOKEN");
    tokio::process::Command::from(cmd).output().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_tls_files_are_bad_usage_naming_the_file_and_the_cause() -> TestResult {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let dir = tempfile::tempdir()?;
    let not_pem = dir.path().join("notes.txt");
    std::fs::write(&not_pem, "not a certificate\n")?;
    let missing = dir.path().join("missing.pem");
    let (ca, cert, key) = (
        data.join("ca.pem"),
        data.join("client.pem"),
        data.join("client.key"),
    );
    let os = |p: &std::path::Path| p.as_os_str().to_owned();
    let cases: Vec<(Vec<std::ffi::OsString>, String)> = vec![
        (
            vec!["--ca".into(), os(&missing)],
            format!("--ca {}: cannot read it: ", missing.display()),
        ),
        (
            vec!["--ca".into(), os(&not_pem)],
            format!("--ca {}: holds no PEM certificate", not_pem.display()),
        ),
        (
            vec![
                "--ca".into(),
                os(&ca),
                "--cert".into(),
                os(dir.path()),
                "--key".into(),
                os(&key),
            ],
            format!("--cert {}: cannot read it: ", dir.path().display()),
        ),
        (
            vec![
                "--ca".into(),
                os(&ca),
                "--cert".into(),
                os(&key),
                "--key".into(),
                os(&key),
            ],
            format!("--cert {}: holds no PEM certificate", key.display()),
        ),
        (
            vec![
                "--ca".into(),
                os(&ca),
                "--cert".into(),
                os(&cert),
                "--key".into(),
                os(&not_pem),
            ],
            format!("--key {}: holds no PEM private key", not_pem.display()),
        ),
        (
            vec![
                "--ca".into(),
                os(&ca),
                "--cert".into(),
                os(&cert),
                "--key".into(),
                os(&data.join("server.key")),
            ],
            format!(
                "--key {}: the key does not belong to the certificate in --cert {}",
                data.join("server.key").display(),
                cert.display()
            ),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let out = ls_with(&args).await?;
        let line = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {line}");
        assert!(
            line.starts_with(&format!("invalid argument: {expected}")),
            "{args:?}: {line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
    }
    Ok(())
}
