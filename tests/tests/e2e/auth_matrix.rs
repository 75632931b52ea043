//! Every way a token can be refused, against every RPC-backed CLI command (push, pull, ls, rm,
//! rm --prefix, stat, warm, doc, symbol, gc, fsck): exit code 4, the stderr line `unauthenticated: …` or `permission denied: …`, and a
//! refusal that reads the same for an existing and a missing ref (names the namespace, never
//! the key), so a caller without access learns nothing about what exists. Tokens that live
//! longer than `--jwt-max-ttl` are refused, and `scipcached token` does not mint them.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use scipcache_tests::{
    CliOutput, Daemon, DaemonOptions, NS, Spawned, blake3_file, daemon_command, mint, scratch_dir,
    write_generated,
};

use crate::common::p;
use crate::lookups::synthetic_index;

/// Keys chosen so that a message naming them is easy to spot (`k3y-`).
const PRESENT: &str = "commit/k3y-present-7f1";
const ABSENT: &str = "commit/k3y-absent-9c2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Push,
    Pull,
    Ls,
    Rm,
    RmPrefix,
    Stat,
    Warm,
    Doc,
    Symbol,
    Gc,
    Fsck,
}

const ALL: [Cmd; 11] = [
    Cmd::Push,
    Cmd::Pull,
    Cmd::Ls,
    Cmd::Rm,
    Cmd::RmPrefix,
    Cmd::Stat,
    Cmd::Warm,
    Cmd::Doc,
    Cmd::Symbol,
    Cmd::Gc,
    Cmd::Fsck,
];
const NAMESPACED: [Cmd; 8] = [
    Cmd::Push,
    Cmd::Pull,
    Cmd::Ls,
    Cmd::Rm,
    Cmd::RmPrefix,
    Cmd::Warm,
    Cmd::Doc,
    Cmd::Symbol,
];
/// A symbol of the pushed index (see `synthetic_index`).
const SYMBOL: &str = "scip-typescript npm pkg 1.0.0 src/f1().";

impl Cmd {
    /// Whether the command names a namespace (a refusal then names it).
    fn namespaced(self) -> bool {
        NAMESPACED.contains(&self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Unauthenticated,
    PermissionDenied,
}

impl Refusal {
    fn prefix(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated: ",
            Self::PermissionDenied => "permission denied: ",
        }
    }
}

struct Matrix<'a> {
    d: &'a Daemon,
    file: String,
    dest: String,
    failures: Vec<String>,
    checks: usize,
}

impl Matrix<'_> {
    /// CLI arguments of `cmd` aimed at `key` (ls uses it as `--prefix`; stat ignores it).
    fn args(&self, cmd: Cmd, key: &str) -> Vec<String> {
        let v: Vec<&str> = match cmd {
            Cmd::Push => vec!["push", NS, key, &self.file],
            Cmd::Pull => vec!["pull", NS, key, "-o", &self.dest],
            Cmd::Ls => vec!["ls", NS, "--prefix", key],
            Cmd::Rm => vec!["rm", NS, key],
            Cmd::RmPrefix => vec!["rm", NS, "--prefix", key],
            Cmd::Stat => vec!["stat"],
            Cmd::Warm => vec!["warm", NS, key],
            Cmd::Doc => vec!["doc", NS, key, "src/f1.ts"],
            Cmd::Symbol => vec!["symbol", NS, key, SYMBOL],
            // A dry run: nothing changes should a refusal fail to happen.
            Cmd::Gc => vec!["gc", "--dry-run"],
            Cmd::Fsck => vec!["fsck"],
        };
        v.into_iter().map(str::to_owned).collect()
    }

    fn run(&self, token: Option<&str>, args: &[String]) -> Result<CliOutput> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match token {
            Some(t) => self.d.cli(t, &args),
            None => self.d.cli_without_token(&args),
        }
    }

    /// Runs `cmd` on the present and the absent key and checks the refusal.
    fn refused(&mut self, case: &str, token: Option<&str>, cmd: Cmd, want: Refusal) -> Result<()> {
        let present = self.run(token, &self.args(cmd, PRESENT))?;
        let absent = self.run(token, &self.args(cmd, ABSENT))?;
        self.checks += 1;
        let mut problems = Vec::new();
        for out in [&present, &absent] {
            if out.code() != Some(4) {
                problems.push(format!("exit code {:?}, want 4", out.code()));
            }
            let stderr = out.stderr.trim();
            if stderr.lines().count() != 1 {
                problems.push("stderr is not exactly one line".to_owned());
            }
            if !stderr.starts_with(want.prefix()) {
                problems.push(format!("stderr does not start with {:?}", want.prefix()));
            }
            if stderr.contains("k3y-") {
                problems.push("the refusal names the key".to_owned());
            }
            if want == Refusal::PermissionDenied && cmd.namespaced() && !stderr.contains(NS) {
                problems.push(format!("the refusal does not name the namespace {NS}"));
            }
        }
        if present.stderr != absent.stderr {
            problems.push("refusals of an existing and a missing ref differ".to_owned());
        }
        problems.dedup();
        if !problems.is_empty() {
            self.failures.push(format!(
                "[{case}] {cmd:?}: {}\n existing ref:\n{present}\n missing ref:\n{absent}",
                problems.join("; ")
            ));
        }
        Ok(())
    }

    /// Runs `cmd` on the present key and expects exit 0 (positive controls).
    fn allowed(&mut self, case: &str, token: &str, cmd: Cmd) -> Result<()> {
        let out = self.run(Some(token), &self.args(cmd, PRESENT))?;
        self.checks += 1;
        if out.code() != Some(0) {
            self.failures
                .push(format!("[{case}] {cmd:?} must succeed:\n{out}"));
        }
        Ok(())
    }
}

#[test]
fn refused_calls_exit_4_and_read_the_same_for_existing_and_missing_refs() -> Result<()> {
    let denylist_dir = tempfile::tempdir_in(scratch_dir())?;
    let denylist = denylist_dir.path().join("denylist");
    std::fs::write(&denylist, b"")?;
    let d = Daemon::start(DaemonOptions::new().arg("--denylist").arg(&denylist))?;

    // Minted first: it must be past its expiry (1 s + the daemon's 1 s leeway) when used.
    let expired = d.token("acme", &["*:admin"], "1s")?;
    let expired_at = Instant::now();

    let admin = d.token("acme", &["*:admin"], "1h")?;
    // A SCIP index, so that doc and symbol lookups have something to find.
    let file = d.scratch().join("index.scip");
    std::fs::write(&file, synthetic_index(2_000, "1.0.0"))?;
    let b3 = blake3_file(&file)?;
    d.cli(&admin, &["push", NS, PRESENT, p(&file)])?.success()?;

    // A well-formed token signed with a key this daemon does not trust.
    let foreign_key = d.scratch().join("foreign.key");
    write_generated(&foreign_key, 48, 99)?;
    let foreign = mint(
        ["--jwt-key-file".as_ref(), foreign_key.as_os_str()],
        "acme",
        &["*:admin"],
        "1h",
    )?
    .token;
    // A valid token with one signature character changed.
    let tampered = {
        let (head, sig) = admin.rsplit_once('.').expect("a JWT");
        let mut sig: Vec<char> = sig.chars().collect();
        let i = sig.len() / 2;
        sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
        format!("{head}.{}", sig.into_iter().collect::<String>())
    };

    let mut m = Matrix {
        d: &d,
        file: p(&file).to_owned(),
        dest: p(&d.scratch().join("pulled")).to_owned(),
        failures: Vec::new(),
        checks: 0,
    };

    // A revoked token works until its jti is on the denylist, then is refused.
    let revoked = d.mint("acme", &["*:admin"], "1h")?;
    m.allowed("before revocation", &revoked.token, Cmd::Ls)?;
    writeln!(
        OpenOptions::new().append(true).open(&denylist)?,
        "{}",
        revoked.jti
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = d.cli(&revoked.token, &["ls", NS])?;
        if out.code() == Some(4) {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "30 s after its jti was appended to the --denylist file, the token still \
                 gets:\n{out}\n(contract: the denylist is reloaded on change)"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Positive controls: the matrix means nothing if good tokens fail too.
    m.allowed("tenant admin", &admin, Cmd::Pull)?;
    m.allowed("tenant admin", &admin, Cmd::Ls)?;
    m.allowed("tenant admin", &admin, Cmd::Stat)?;
    let reader = d.token("acme", &["web/app:read"], "1h")?;
    m.allowed("read-only", &reader, Cmd::Pull)?;
    m.allowed("read-only", &reader, Cmd::Ls)?;
    m.allowed("read-only", &reader, Cmd::Warm)?;
    m.allowed("tenant admin", &admin, Cmd::Warm)?;
    m.allowed("read-only", &reader, Cmd::Doc)?;
    m.allowed("read-only", &reader, Cmd::Symbol)?;

    use Refusal::{PermissionDenied as Denied, Unauthenticated as Unauth};
    for cmd in ALL {
        m.refused("no token", None, cmd, Unauth)?;
        m.refused("not a JWT", Some("not-a-jwt"), cmd, Unauth)?;
        m.refused("signed by a foreign key", Some(&foreign), cmd, Unauth)?;
        m.refused("tampered signature", Some(&tampered), cmd, Unauth)?;
        m.refused("revoked jti", Some(&revoked.token), cmd, Unauth)?;
    }
    let other_tenant = d.token("globex", &["*:admin"], "1h")?;
    let other_team = d.token("acme", &["mobile/*:admin"], "1h")?;
    let other_project = d.token("acme", &["web/api:write"], "1h")?;
    for cmd in NAMESPACED {
        m.refused("other tenant", Some(&other_tenant), cmd, Denied)?;
        m.refused("scope for another team", Some(&other_team), cmd, Denied)?;
        m.refused(
            "scope for another project",
            Some(&other_project),
            cmd,
            Denied,
        )?;
    }
    m.refused("read-only writes", Some(&reader), Cmd::Push, Denied)?;
    m.refused("read-only writes", Some(&reader), Cmd::Rm, Denied)?;
    m.refused("read-only writes", Some(&reader), Cmd::RmPrefix, Denied)?;
    m.refused("read-only stat", Some(&reader), Cmd::Stat, Denied)?;
    m.refused("read-only gc", Some(&reader), Cmd::Gc, Denied)?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    m.refused("write (not admin) stat", Some(&writer), Cmd::Stat, Denied)?;
    m.refused("write (not admin) gc", Some(&writer), Cmd::Gc, Denied)?;
    m.refused("tenant admin fsck", Some(&admin), Cmd::Fsck, Denied)?;
    m.refused("write (not admin) fsck", Some(&writer), Cmd::Fsck, Denied)?;

    std::thread::sleep(Duration::from_millis(3500).saturating_sub(expired_at.elapsed()));
    for cmd in ALL {
        m.refused("expired", Some(&expired), cmd, Unauth)?;
    }

    // Refused writes changed nothing.
    let dest = d.scratch().join("after");
    let j = d
        .cli(&admin, &["--json", "pull", NS, PRESENT, "-o", p(&dest)])?
        .success()?
        .json()?;
    ensure!(blake3_file(&dest)? == b3, "the existing ref changed: {j}");
    d.cli(&admin, &["pull", NS, ABSENT, "-o", p(&dest)])?
        .expect_code(3)?;
    // A reader may learn what is missing: a warm-up of an absent ref is NOT_FOUND, like a pull.
    d.cli(&reader, &["warm", NS, ABSENT])?.expect_code(3)?;
    d.cli(&reader, &["doc", NS, ABSENT, "src/f1.ts"])?
        .expect_code(3)?;
    d.cli(&reader, &["symbol", NS, ABSENT, SYMBOL])?
        .expect_code(3)?;

    eprintln!(
        "auth_matrix: {} checks, {} failed",
        m.checks,
        m.failures.len()
    );
    if !m.failures.is_empty() {
        bail!(
            "{} of {} auth checks failed:\n\n{}",
            m.failures.len(),
            m.checks,
            m.failures.join("\n\n")
        );
    }
    Ok(())
}

/// `scipcached token … --ttl 2h` with `extra` arguments and environment.
fn mint_two_hours(d: &Daemon, args: &[&str], envs: &[(&str, &str)]) -> Result<CliOutput> {
    let mut cmd = daemon_command();
    cmd.arg("token")
        .arg("--data-dir")
        .arg(d.data_dir())
        .args(["--tenant", "acme", "--scope", "*:read", "--ttl", "2h"])
        .args(args)
        .envs(envs.iter().copied());
    Spawned::spawn(cmd)?.wait(Duration::from_secs(60))
}

#[test]
fn tokens_living_longer_than_jwt_max_ttl_are_refused_and_not_minted() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new().arg("--jwt-max-ttl").arg("1h"))?;
    let long = d.token("acme", &["*:read"], "2h")?;
    let out = d.cli(&long, &["ls", NS])?;
    let stderr = out.stderr.trim();
    ensure!(
        out.code() == Some(4)
            && stderr.starts_with("unauthenticated: token lifetime")
            && stderr.contains("--jwt-max-ttl"),
        "a 2h token against --jwt-max-ttl 1h:\n{out}"
    );
    let short = d.token("acme", &["*:read"], "1h")?;
    d.cli(&short, &["ls", NS])?.success()?;

    // `scipcached token` refuses to mint what the daemon would refuse: the limit from the
    // environment, or from the daemon's config file.
    let from_env = mint_two_hours(&d, &[], &[("SCIPCACHE_JWT_MAX_TTL", "1h")])?;
    let config = d.scratch().join("scipcached.toml");
    std::fs::write(&config, "jwt_max_ttl = \"90m\"\n")?;
    let from_file = mint_two_hours(&d, &["--config", p(&config)], &[])?;
    for (how, out) in [("environment", &from_env), ("config file", &from_file)] {
        ensure!(
            out.code() == Some(1)
                && out.stdout_str().trim().is_empty()
                && out.stderr.contains("--ttl 2h is longer than"),
            "a 2h token with the limit in the {how}:\n{out}"
        );
    }
    ensure!(from_file.stderr.contains("1h 30m"), "{from_file}");
    mint_two_hours(&d, &["--config", p(&config), "--jwt-max-ttl", "3h"], &[])?.success()?;
    Ok(())
}
