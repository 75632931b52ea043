//! The `scipcached` binary as users run it: option precedence (flag > environment > file >
//! default, other `SCIPCACHE_*` variables ignored), the `token` subcommand's output, key
//! creation on first start, refusal of unusable keys, and the lifecycle (ready line,
//! `/healthz`, `/metrics`, SIGTERM → exit 0).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn scipcached() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scipcached"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null()).output()
}

#[test]
fn options_follow_flag_env_file_default_precedence() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("scipcached.toml");
    std::fs::write(
        &file,
        r#"
        data_dir = "/from/file"
        listen = "127.0.0.1:9000"
        metrics_listen = "127.0.0.1:9100"
        jwt_leeway = "3s"
        "#,
    )?;
    let out = run(scipcached()
        .arg("--print-config")
        .arg("--data-dir")
        .arg("/from/flag")
        .env("SCIPCACHE_CONFIG", &file)
        .env("SCIPCACHE_DATA_DIR", "/from/env")
        .env("SCIPCACHE_LISTEN", "127.0.0.1:9001")
        // The CLI's variables are not the daemon's business.
        .env("SCIPCACHE_TOKEN", "not-a-token")
        .env("SCIPCACHE_SERVER", "not a url"))?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: toml::Table = toml::from_str(&text(&out.stdout))?;
    let get = |k: &str| printed.get(k).map(ToString::to_string).unwrap_or_default();
    assert_eq!(get("data_dir"), "\"/from/flag\"", "flag beats env and file");
    assert_eq!(get("listen"), "\"127.0.0.1:9001\"", "env beats file");
    assert_eq!(
        get("metrics_listen"),
        "\"127.0.0.1:9100\"",
        "file beats default"
    );
    assert_eq!(get("jwt_leeway"), "\"3s\"");
    assert_eq!(get("jwt_leeway"), "\"3s\"", "file beats default");
    assert_eq!(get("cold_url"), "\"file:///from/flag/cold\"");
    Ok(())
}

#[test]
fn tier_budgets_durability_and_pins_follow_flag_env_file_precedence() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("scipcached.toml");
    std::fs::write(
        &file,
        r#"
        hot_bytes = "64MiB"
        warm_bytes = "2GiB"
        durability = "cold"
        pin_prefixes = ["branch/"]
        "#,
    )?;
    let out = run(scipcached()
        .arg("--print-config")
        .arg("--config")
        .arg(&file)
        .args(["--hot-bytes", "32MiB"])
        .env("SCIPCACHE_HOT_BYTES", "16MiB")
        .env("SCIPCACHE_WARM_BYTES", "0"))?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: toml::Table = toml::from_str(&text(&out.stdout))?;
    let get = |k: &str| printed.get(k).map(ToString::to_string).unwrap_or_default();
    assert_eq!(
        get("hot_bytes"),
        (32u64 << 20).to_string(),
        "flag beats env and file"
    );
    assert_eq!(
        get("warm_bytes"),
        "0",
        "env beats file; 0 (warm off) is allowed"
    );
    assert_eq!(get("durability"), "\"cold\"", "file beats default");
    assert_eq!(get("pin_prefixes"), "[\"branch/\"]");

    let defaults = run(scipcached().arg("--print-config"))?;
    assert!(defaults.status.success(), "{}", text(&defaults.stderr));
    let printed: toml::Table = toml::from_str(&text(&defaults.stdout))?;
    let get = |k: &str| printed.get(k).map(ToString::to_string).unwrap_or_default();
    assert_eq!(get("hot_bytes"), (1u64 << 30).to_string());
    assert_eq!(get("warm_bytes"), (10u64 << 30).to_string());
    assert_eq!(get("durability"), "\"local\"");
    Ok(())
}

#[test]
fn gc_audit_retention_and_quota_options_follow_flag_env_file_precedence() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("scipcached.toml");
    std::fs::write(
        &file,
        r#"
        gc_interval = "12h"
        gc_grace = "3h"
        compact_below = 0.3
        audit_log = "/from/file/audit.log"

        [[retention]]
        prefix = "commit/"
        keep_last = 20

        [[retention]]
        prefix = "pr/"
        ttl = "7d"

        [quotas]
        acme = "50GiB"
        "#,
    )?;
    let out = run(scipcached()
        .arg("--print-config")
        .arg("--config")
        .arg(&file)
        .args(["--gc-grace", "10m"])
        .env("SCIPCACHE_GC_GRACE", "20m")
        .env("SCIPCACHE_COMPACT_BELOW", "0.9")
        .env("SCIPCACHE_AUDIT_LOG", "-"))?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: toml::Table = toml::from_str(&text(&out.stdout))?;
    let get = |k: &str| printed.get(k).map(ToString::to_string).unwrap_or_default();
    assert_eq!(get("gc_grace"), "\"10m\"", "flag beats env and file");
    assert_eq!(get("compact_below"), "0.9", "env beats file");
    assert_eq!(get("audit_log"), "\"-\"", "env beats file");
    assert_eq!(get("gc_interval"), "\"12h\"", "file beats default");
    let retention = printed
        .get("retention")
        .and_then(toml::Value::as_array)
        .ok_or("no retention tables printed")?;
    assert_eq!(retention.len(), 2);
    assert_eq!(
        retention[0]
            .get("keep_last")
            .and_then(toml::Value::as_integer),
        Some(20)
    );
    assert_eq!(
        printed
            .get("quotas")
            .and_then(|q| q.get("acme"))
            .and_then(toml::Value::as_integer),
        Some(50 << 30)
    );

    let defaults = run(scipcached().arg("--print-config"))?;
    assert!(defaults.status.success(), "{}", text(&defaults.stderr));
    let printed: toml::Table = toml::from_str(&text(&defaults.stdout))?;
    let get = |k: &str| printed.get(k).map(ToString::to_string).unwrap_or_default();
    assert_eq!(get("gc_grace"), "\"1h\"");
    assert_eq!(get("compact_below"), "0.5");
    assert!(
        printed.get("gc_interval").is_none(),
        "no scheduled GC by default"
    );
    assert!(
        printed.get("audit_log").is_none(),
        "no audit log by default"
    );
    Ok(())
}

#[test]
fn bad_retention_tables_and_quotas_refuse_to_start_naming_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (body, wants) in [
        (
            "[[retention]]\nprefix = \"commit/\"\nkeep_last = 5\nttl = \"1d\"\n",
            "[[retention]] table with prefix \"commit/\": give exactly one of",
        ),
        (
            "[[retention]]\nprefix = \"pr/\"\nkeep = \"sometimes\"\n",
            "the only value is \"forever\"",
        ),
        ("[quotas]\nacme = \"a lot\"\n", "invalid size"),
        ("[quotas]\n\"Acme Inc\" = 10\n", "[quotas] \"Acme Inc\""),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, body)?;
        let out = run(scipcached()
            .arg("--print-config")
            .arg("--config")
            .arg(&file))?;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{body} was accepted");
        assert!(stderr.contains(wants), "{body}: {stderr}");
    }
    Ok(())
}

#[test]
fn a_hot_budget_of_zero_refuses_to_start_saying_what_to_do() -> TestResult {
    let out = run(scipcached()
        .arg("--print-config")
        .env("SCIPCACHE_HOT_BYTES", "0"))?;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--hot-bytes must be more than 0"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_relative_data_dir_is_made_absolute() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = run(scipcached().current_dir(dir.path()).arg("--print-config"))?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: toml::Table = toml::from_str(&text(&out.stdout))?;
    let data_dir = printed
        .get("data_dir")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(Path::new(&data_dir).is_absolute(), "{data_dir}");
    assert!(data_dir.ends_with("scipcache-data"), "{data_dir}");
    Ok(())
}

#[test]
fn unknown_keys_in_the_config_file_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listne = \"127.0.0.1:1\"\n")?;
    let out = run(scipcached()
        .arg("--config")
        .arg(&file)
        .arg("--print-config"))?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("listne"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[test]
fn token_prints_only_the_token_on_stdout_and_its_jti_on_stderr() -> TestResult {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("hs256");
    std::fs::write(&key, [7u8; 40])?;
    let out = run(scipcached()
        .args(["token", "--jwt-key-file"])
        .arg(&key)
        .args([
            "--tenant",
            "acme",
            "--scope",
            "web/app:write",
            "--scope",
            "*:read",
        ])
        .args(["--ttl", "2h", "--sub", "ci-web"]))?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3);
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)?;
    let jti = claims["jti"].as_str().unwrap_or_default();
    assert!(!jti.is_empty());
    assert_eq!(text(&out.stderr).trim(), jti);
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["sub"], "ci-web");
    assert_eq!(
        claims["scopes"],
        serde_json::json!(["web/app:write", "*/*:read"])
    );
    let ttl = claims["exp"].as_u64().unwrap_or(0) - claims["iat"].as_u64().unwrap_or(0);
    assert_eq!(ttl, 7200);
    Ok(())
}

#[test]
fn token_refuses_bad_scopes_and_missing_keys_with_a_hint() -> TestResult {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("hs256");
    std::fs::write(&key, [7u8; 40])?;
    let out = run(scipcached()
        .args(["token", "--jwt-key-file"])
        .arg(&key)
        .args(["--tenant", "acme", "--scope", "web:write"]))?;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("web:write"),
        "{}",
        text(&out.stderr)
    );

    let out = run(scipcached()
        .args(["token", "--data-dir"])
        .arg(dir.path().join("nowhere"))
        .args(["--tenant", "acme", "--scope", "*:read"]))?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--jwt-key-file"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_short_key_file_refuses_to_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("short");
    std::fs::write(&key, b"0123456789")?;
    let out = run(scipcached()
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--jwt-key-file")
        .arg(&key))?;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("at least 32"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

/// A daemon whose log goes to a file, killed on drop.
struct Daemon {
    child: Child,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(data: &Path, log: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(log)?;
        let child = scipcached()
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--shutdown-grace", "2s"])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| text(&b))
            .unwrap_or_default()
    }

    /// Waits until `pred` holds for the log or the process exits; returns whether it held.
    fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> std::io::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if pred(&self.log()) {
                return Ok(true);
            }
            if self.child.try_wait()?.is_some() {
                return Ok(pred(&self.log()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(false)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn first_start_creates_the_key_serves_and_stops_on_sigterm() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(&data, &dir.path().join("log"))?;
    let ready = daemon.wait_for(|log| log.contains("scipcached ready"))?;
    let log = daemon.log();
    assert!(ready, "no ready line:\n{log}");
    assert!(log.contains("mint a token with"), "{log}");
    let key = data.join("keys").join("hs256.key");
    assert!(std::fs::metadata(&key)?.len() >= 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    }
    // The token subcommand works while the daemon runs.
    let out = run(scipcached()
        .args(["token", "--data-dir"])
        .arg(&data)
        .args(["--tenant", "acme", "--scope", "*:write"]))?;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (_grpc, metrics) =
        ready_addrs(&log).ok_or_else(|| format!("the ready line names no addresses:\n{log}"))?;
    let health = http_get(metrics, "/healthz")?;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let scrape = http_get(metrics, "/metrics")?;
    assert!(scrape.contains("scipcache_tier_chunks"), "{scrape}");

    // A second daemon on the same data dir refuses to start.
    let mut second = Daemon::start(&data, &dir.path().join("log2"))?;
    let status = second.child.wait()?;
    assert!(
        !status.success(),
        "second daemon started:\n{}",
        second.log()
    );

    let pid = daemon.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = daemon.child.try_wait()? {
            assert!(
                status.success(),
                "exit {status} on SIGTERM:\n{}",
                daemon.log()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
