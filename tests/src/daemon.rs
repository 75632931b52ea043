//! One real `scipcached` process and the CLI pointed at it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::build::binaries;
use crate::process::{CliOutput, Spawned, clean_env, scratch_dir, send_signal};
use crate::{CLI_TIMEOUT, probe};

/// How long a daemon may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to exit after SIGTERM before the harness calls it hung.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The stable line the daemon logs once it serves: `scipcached ready grpc=<addr> metrics=<addr>`.
const READY_MARKER: &str = "scipcached ready";

/// Extra arguments and environment for a [`Daemon`].
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    data_dir: Option<PathBuf>,
    open_files: Option<u32>,
}

impl DaemonOptions {
    /// No extra arguments: the harness passes only `--data-dir`, `--listen 127.0.0.1:0` and
    /// `--metrics-listen 127.0.0.1:0`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one command-line argument (e.g. `--denylist`, then the file).
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends command-line arguments (e.g. `["--hot-bytes", "4MB"]`).
    #[must_use]
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Uses `dir` as the data dir (created by the daemon; left in place on drop) instead of
    /// `<temp>/data`, e.g. a dir on a small filesystem the test mounted.
    #[must_use]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Sets an environment variable for the daemon.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts the daemon with this many file descriptors, soft and hard limit alike (as
    /// `ulimit -n N` in a shell sets both), through `sh -c 'ulimit -n N && exec …'`.
    #[must_use]
    pub fn open_file_limit(mut self, n: u32) -> Self {
        self.open_files = Some(n);
        self
    }
}

/// A token minted by `scipcached token`.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The token (stdout, trimmed).
    pub token: String,
    /// Its `jti`, as printed on stderr (checked against the token's claims).
    pub jti: String,
}

/// A running `scipcached` on its own temp data dir (deleted on drop, after the process is
/// killed).
///
/// The gRPC and metrics ports are picked by the kernel (`127.0.0.1:0`) and read from the
/// daemon's ready line, so tests run in parallel. They change on [`Daemon::restart`].
#[derive(Debug)]
pub struct Daemon {
    data_dir: PathBuf,
    opts: DaemonOptions,
    child: Option<Child>,
    grpc: SocketAddr,
    metrics: SocketAddr,
    log_path: PathBuf,
    starts: u32,
    // Last, so that it is removed after the process is gone.
    root: TempDir,
}

impl Daemon {
    /// Starts a daemon on a fresh data dir (`<temp>/data`, created by the daemon, unless
    /// [`DaemonOptions::data_dir`] names one) and waits for its ready line (60 s at most; the
    /// panic-free error then carries the log).
    pub fn start(opts: DaemonOptions) -> Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("scipcache-e2e-")
            .tempdir_in(scratch_dir())?;
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| root.path().join("data"));
        let mut daemon = Self {
            data_dir,
            opts,
            child: None,
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_path: PathBuf::new(),
            starts: 0,
            root,
        };
        daemon.spawn()?;
        Ok(daemon)
    }

    fn spawn(&mut self) -> Result<()> {
        self.launch()?;
        self.wait_ready()
    }

    /// Starts the process, without waiting for it.
    fn launch(&mut self) -> Result<()> {
        self.starts += 1;
        self.log_path = self.root.path().join(format!("daemon-{}.log", self.starts));
        let log = File::create(&self.log_path)?;
        let mut cmd = match self.opts.open_files {
            Some(n) => limited_daemon_command(n),
            None => daemon_command(),
        };
        if let Some(filter) = std::env::var_os("SCIPCACHE_TEST_RUST_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(&self.opts.args)
            .envs(self.opts.envs.iter().map(|(k, v)| (k, v)))
            // Both streams: the ready line is looked for wherever the logger writes.
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("cannot start scipcached")?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the stopped daemon again on the same data dir and options, expecting it to
    /// refuse: waits (60 s at most) for it to exit, and returns its exit status and log.
    /// Fails if it gets ready instead.
    pub fn start_refused(&mut self) -> Result<(ExitStatus, String)> {
        if self.child.is_some() {
            bail!("start_refused needs a stopped daemon");
        }
        self.launch()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log();
            let child = self.child.as_mut().context("no daemon process")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok((status, self.log()));
            }
            if parse_ready_line(&log).is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                bail!("scipcached started instead of refusing; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `scipcached rebuild --data-dir <dir>` with this daemon's options and environment (the
    /// daemon must be stopped), run to completion (120 s at most).
    pub fn rebuild(&self) -> Result<CliOutput> {
        let mut cmd = daemon_command();
        cmd.arg("rebuild")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.opts.args)
            .envs(self.opts.envs.iter().map(|(k, v)| (k, v)));
        Spawned::spawn(cmd)?.wait(Duration::from_secs(120))
    }

    /// Entries waiting for their cold copy, as `stat` (with an admin token) reports them.
    pub fn cold_queue(&self, admin: &str) -> Result<u64> {
        let j = self.cli(admin, &["--json", "stat"])?.success()?.json()?;
        j["cold_queue"]
            .as_u64()
            .with_context(|| format!("stat has no cold_queue count: {j}"))
    }

    /// Waits until the cold write-behind has drained (`stat`'s `cold_queue` is 0); fails with
    /// the last count after 120 s.
    pub fn wait_cold_drained(&self, admin: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let queued = self.cold_queue(admin)?;
            if queued == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the cold queue still holds {queued} entries after 120 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log();
            if let Some((grpc, metrics)) = parse_ready_line(&log) {
                self.grpc = grpc;
                self.metrics = metrics;
                return Ok(());
            }
            let child = self.child.as_mut().context("no daemon process")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!(
                    "scipcached exited with {status} before its ready line \
                     `{READY_MARKER} grpc=<addr> metrics=<addr>`; log:\n{log}"
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "scipcached printed no `{READY_MARKER} grpc=<addr> metrics=<addr>` line \
                     within {READY_TIMEOUT:?}; log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The data dir given with `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A scratch dir next to the data dir, removed with the daemon (for files to push).
    pub fn scratch(&self) -> &Path {
        self.root.path()
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The bound metrics/health address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// `http://<grpc addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The log (stdout and stderr) of the current (or last) run.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The logs of every run so far, oldest first.
    pub fn all_logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                let path = self.root.path().join(format!("daemon-{n}.log"));
                let text = std::fs::read(&path)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                format!("--- run {n} ---\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Peak resident set size of the running daemon (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        probe::vm_hwm_bytes(self.pid().context("daemon not running")?)
    }

    /// `scipcached token --data-dir <dir> --tenant T --scope S... --ttl D`: the token.
    pub fn token(&self, tenant: &str, scopes: &[&str], ttl: &str) -> Result<String> {
        Ok(self.mint(tenant, scopes, ttl)?.token)
    }

    /// Like [`Daemon::token`], also returning the `jti` printed on stderr.
    pub fn mint(&self, tenant: &str, scopes: &[&str], ttl: &str) -> Result<Minted> {
        mint(
            [OsStr::new("--data-dir"), self.data_dir.as_os_str()],
            tenant,
            scopes,
            ttl,
        )
    }

    /// A `scipcache --server http://<grpc addr> [--token T]` command, for callers that need
    /// to spawn it themselves (e.g. to kill it midway).
    pub fn cli_command(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut cmd = cli_command();
        cmd.arg("--server").arg(self.url());
        if let Some(token) = token {
            cmd.arg("--token").arg(token);
        }
        cmd.args(args);
        cmd
    }

    /// Runs `scipcache --server http://<grpc addr> --token <token> <args>` to completion
    /// ([`CLI_TIMEOUT`] at most).
    pub fn cli(&self, token: &str, args: &[&str]) -> Result<CliOutput> {
        Spawned::spawn(self.cli_command(Some(token), args))?.wait(CLI_TIMEOUT)
    }

    /// Chunks the daemon holds in its hot tier, as `stat` (run with the `admin` token) reports
    /// them: how tests see that a push has got under way.
    pub fn hot_chunks(&self, admin: &str) -> Result<u64> {
        let j = self.cli(admin, &["--json", "stat"])?.success()?.json()?;
        j["tiers"]
            .as_array()
            .and_then(|tiers| tiers.iter().find(|t| t["name"] == "hot"))
            .and_then(|t| t["chunks"].as_u64())
            .with_context(|| format!("stat names no hot tier chunk count: {j}"))
    }

    /// Runs the CLI with no `--token` at all.
    pub fn cli_without_token(&self, args: &[&str]) -> Result<CliOutput> {
        Spawned::spawn(self.cli_command(None, args))?.wait(CLI_TIMEOUT)
    }

    /// Runs the CLI like [`Daemon::cli`] with a deadline of `timeout`, measuring its peak
    /// RSS in bytes: with `/usr/bin/time -f %M` when present, else by polling the child's
    /// `VmHWM` (which can miss a last-moment peak).
    pub fn cli_measured(
        &self,
        token: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<(CliOutput, u64)> {
        let gnu_time = Path::new("/usr/bin/time");
        if gnu_time.is_file() {
            let report = tempfile::NamedTempFile::new()?;
            let inner = self.cli_command(Some(token), args);
            let mut cmd = Command::new(gnu_time);
            clean_env(&mut cmd);
            cmd.args(["-f", "%M", "-o"])
                .arg(report.path())
                .arg(inner.get_program())
                .args(inner.get_args());
            let out = Spawned::spawn(cmd)?.wait(timeout)?;
            let text = std::fs::read_to_string(report.path())?;
            // GNU time prepends "Command exited with non-zero status N" on failures.
            let kib: u64 = text
                .lines()
                .rev()
                .find_map(|l| l.trim().parse().ok())
                .with_context(|| format!("no max RSS in /usr/bin/time's report {text:?}"))?;
            return Ok((out, kib * 1024));
        }
        let mut child = Spawned::spawn(self.cli_command(Some(token), args))?;
        let deadline = Instant::now() + timeout;
        let mut peak = 0;
        while !child.has_exited()? {
            if let Ok(hwm) = probe::vm_hwm_bytes(child.pid()) {
                peak = peak.max(hwm);
            }
            if Instant::now() >= deadline {
                let out = child.kill9()?;
                bail!("CLI still running after {timeout:?}, killed:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok((child.wait(timeout)?, peak))
    }

    /// Sends SIGTERM and waits for the process to exit (60 s at most, then it is killed and
    /// this fails with the log). Returns how it exited.
    pub fn sigterm(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("daemon not running")?;
        send_signal(child.id(), "TERM")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "scipcached did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("daemon not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts the daemon again on the same data dir and options (stopping it with SIGTERM
    /// first if it still runs) and waits for its ready line. The ports change.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            let status = self.sigterm()?;
            if !status.success() {
                bail!(
                    "scipcached exited with {status} on SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
        self.spawn()
    }

    /// Stops the daemon with SIGTERM (it must exit 0), lets `damage` change the data dir, and
    /// starts it again, expecting it to refuse: returns how it exited and its log. Fails if it
    /// prints its ready line instead, or does not exit within the ready timeout.
    pub fn restart_refused(
        &mut self,
        damage: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<(ExitStatus, String)> {
        if self.child.is_some() {
            let status = self.sigterm()?;
            if !status.success() {
                bail!(
                    "scipcached exited with {status} on SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
        damage(&self.data_dir)?;
        self.starts += 1;
        self.log_path = self.root.path().join(format!("daemon-{}.log", self.starts));
        let log = File::create(&self.log_path)?;
        let mut cmd = daemon_command();
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(&self.opts.args)
            .envs(self.opts.envs.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = cmd.spawn().context("cannot start scipcached")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, self.log()));
            }
            if parse_ready_line(&self.log()).is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "scipcached did not refuse to start on a damaged data dir; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `scipcache` command with a clean environment and no arguments (no `--server`).
pub fn cli_command() -> Command {
    let mut cmd = Command::new(&binaries().cli);
    clean_env(&mut cmd);
    cmd
}

/// A `scipcached` command with a clean environment and no arguments.
pub fn daemon_command() -> Command {
    let mut cmd = Command::new(&binaries().daemon);
    clean_env(&mut cmd);
    cmd
}

/// A `scipcached` command (clean environment, no arguments) that runs with `n` file
/// descriptors, soft and hard limit: `sh` lowers both, then `exec`s the daemon (same pid).
fn limited_daemon_command(n: u32) -> Command {
    let mut cmd = Command::new("sh");
    clean_env(&mut cmd);
    cmd.arg("-c")
        .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
        .arg(&binaries().daemon);
    cmd
}

/// `scipcached token <key source> --tenant T --scope S... --ttl D`.
///
/// `key_source` is `["--data-dir", dir]` or `["--jwt-key-file", file]`; the latter mints
/// tokens with any HS256 secret, e.g. one no daemon trusts.
pub fn mint(key_source: [&OsStr; 2], tenant: &str, scopes: &[&str], ttl: &str) -> Result<Minted> {
    let mut cmd = daemon_command();
    cmd.arg("token").args(key_source).args(["--tenant", tenant]);
    for scope in scopes {
        cmd.args(["--scope", scope]);
    }
    cmd.args(["--ttl", ttl]);
    let out = Spawned::spawn(cmd)?.wait(Duration::from_secs(60))?;
    let out = out
        .success()
        .context("`scipcached token` failed (contract: prints the token, exit 0)")?;
    let token = out.stdout_str().trim().to_owned();
    if token.is_empty() || token.lines().count() != 1 || token.split('.').count() != 3 {
        bail!("`scipcached token` must print only a JWT on stdout:\n{out}");
    }
    let claims = jwt_claims(&token)?;
    let jti = claims
        .get("jti")
        .and_then(|v| v.as_str())
        .with_context(|| format!("token has no jti claim: {claims}"))?
        .to_owned();
    if !out.stderr.contains(&jti) {
        bail!("`scipcached token` must print the token's jti {jti} on stderr:\n{out}");
    }
    Ok(Minted { token, jti })
}

/// The claims (payload) of a JWT, not verified.
pub fn jwt_claims(token: &str) -> Result<serde_json::Value> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let bytes = base64url_decode(payload).context("JWT payload is not base64url")?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Finds `scipcached ready grpc=<addr> metrics=<addr>` in a log, ignoring ANSI colours and
/// quoting (plain or JSON log formats).
fn parse_ready_line(log: &str) -> Option<(SocketAddr, SocketAddr)> {
    log.lines().find_map(|line| {
        let line = strip_ansi(line);
        let rest = &line[line.find(READY_MARKER)? + READY_MARKER.len()..];
        let field = |name: &str| -> Option<SocketAddr> {
            rest.split(|c: char| c.is_whitespace() || c == ',' || c == '"')
                .find_map(|word| word.strip_prefix(name))
                .and_then(|v| v.parse().ok())
        };
        Some((field("grpc=")?, field("metrics=")?))
    })
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_found_in_plain_coloured_and_json_logs() {
        let plain = "2026-01-01T00:00:00Z  INFO scipcached ready grpc=127.0.0.1:4000 metrics=127.0.0.1:4001";
        let coloured = "\u{1b}[32m INFO\u{1b}[0m scipcached ready \u{1b}[3mgrpc\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4000 \u{1b}[3mmetrics\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4001";
        let json = r#"{"fields":{"message":"scipcached ready grpc=127.0.0.1:4000 metrics=127.0.0.1:4001"}}"#;
        let want = Some((
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.1:4001".parse().unwrap(),
        ));
        for log in [plain, coloured, json] {
            assert_eq!(
                parse_ready_line(&format!("starting\n{log}\n")),
                want,
                "{log}"
            );
        }
        assert_eq!(parse_ready_line("scipcached ready grpc=nope"), None);
    }

    #[test]
    fn jwt_payload_decodes() {
        // {"jti":"abc"} base64url without padding.
        let claims = jwt_claims("e30.eyJqdGkiOiJhYmMifQ.sig").unwrap();
        assert_eq!(claims["jti"], "abc");
    }
}
