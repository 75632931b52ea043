//! Running child processes: a clean environment, outputs captured to files, deadlines.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where temp dirs and decompressed test data go: `SCIPCACHE_TEST_SCRATCH` or the system's
/// temp dir.
pub fn scratch_dir() -> PathBuf {
    std::env::var_os("SCIPCACHE_TEST_SCRATCH").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// Removes every `SCIPCACHE_*` variable (and `RUST_LOG`) from a child's environment and
/// turns colours off, so that the outer environment cannot change what a test observes.
pub(crate) fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SCIPCACHE_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd.env("NO_COLOR", "1");
    cmd.env_remove("CLICOLOR_FORCE");
    cmd.stdin(Stdio::null());
}

/// A process running in the background; killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    args: Vec<OsString>,
    stdout: File,
    stderr: File,
    started: Instant,
}

impl Spawned {
    /// Starts `cmd` with stdout and stderr captured to anonymous temp files.
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let stdout = tempfile::tempfile()?;
        let stderr = tempfile::tempfile()?;
        let args = std::iter::once(cmd.get_program().to_owned())
            .chain(cmd.get_args().map(ToOwned::to_owned))
            .collect();
        cmd.stdout(stdout.try_clone()?).stderr(stderr.try_clone()?);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        Ok(Self {
            child,
            args,
            stdout,
            stderr,
            started: Instant::now(),
        })
    }

    /// Starts `cmd` like [`Spawned::spawn`], with its stdin a pipe: the caller writes the
    /// returned end at its own pace (a push reading `/dev/stdin` then sees a slow producer),
    /// and dropping it closes the pipe.
    pub fn spawn_with_stdin(mut cmd: Command) -> Result<(Self, ChildStdin)> {
        cmd.stdin(Stdio::piped());
        let mut spawned = Self::spawn(cmd)?;
        let stdin = spawned
            .child
            .stdin
            .take()
            .context("the child has no stdin pipe")?;
        Ok((spawned, stdin))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the process has exited (without reaping more than `try_wait` does).
    pub fn has_exited(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) -> Result<()> {
        send_signal(self.pid(), "TERM")
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(mut self) -> Result<CliOutput> {
        // The child may have exited already; that is not an error.
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits at most `timeout` for the process to exit; kills it and fails after that.
    pub fn wait(self, timeout: Duration) -> Result<CliOutput> {
        let mut this = self;
        let deadline = Instant::now() + timeout;
        loop {
            if this.child.try_wait()?.is_some() {
                return this.finish();
            }
            if Instant::now() >= deadline {
                let _ = this.child.kill();
                let out = this.finish()?;
                bail!("still running after {timeout:.0?}, killed:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(&mut self) -> Result<CliOutput> {
        let status = self.child.wait()?;
        let mut stdout = Vec::new();
        self.stdout.seek(SeekFrom::Start(0))?;
        self.stdout.read_to_end(&mut stdout)?;
        let mut stderr = Vec::new();
        self.stderr.seek(SeekFrom::Start(0))?;
        self.stderr.read_to_end(&mut stderr)?;
        Ok(CliOutput {
            args: self
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            status,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal (a name `kill` knows, e.g. `TERM`) to a process.
pub(crate) fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed: {status}");
    }
    Ok(())
}

/// One finished run of a command (usually the CLI).
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Program and arguments (the token is shown as given: tests use throwaway keys).
    pub args: Vec<String>,
    /// How it exited.
    pub status: ExitStatus,
    /// Raw stdout.
    pub stdout: Vec<u8>,
    /// Stderr, lossily decoded.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl CliOutput {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout, lossily decoded.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stdout parsed as the one JSON object `--json` promises (nothing else on stdout).
    pub fn json(&self) -> Result<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&self.stdout)
            .with_context(|| format!("stdout is not one JSON value:\n{self}"))?;
        if !v.is_object() {
            bail!("--json printed a JSON value that is not an object:\n{self}");
        }
        Ok(v)
    }

    /// Fails (showing everything) unless the exit code is 0.
    pub fn success(self) -> Result<Self> {
        self.expect_code(0)
    }

    /// Fails (showing everything) unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Result<Self> {
        if self.code() != Some(code) {
            bail!("expected exit code {code}, got {:?}:\n{self}", self.code());
        }
        Ok(self)
    }

    /// The contract's one-line cause: stderr's last non-empty line (progress output or
    /// warnings may come before it).
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.args.join(" "))?;
        writeln!(f, "  status: {} (after {:.1?})", self.status, self.elapsed)?;
        let stdout = self.stdout_str();
        let stdout = if stdout.len() > 4000 {
            let cut = (0..=4000)
                .rev()
                .find(|&i| stdout.is_char_boundary(i))
                .unwrap_or(0);
            format!("{}… ({} bytes)", &stdout[..cut], stdout.len())
        } else {
            stdout
        };
        writeln!(f, "  stdout: {stdout}")?;
        write!(f, "  stderr: {}", self.stderr)
    }
}
