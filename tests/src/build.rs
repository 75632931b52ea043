//! Building `scipcached` and `scipcache` once per test process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use escargot::format::Message;
use escargot::format::diagnostic::DiagnosticLevel;

/// Paths of the two binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `scipcached`.
    pub daemon: PathBuf,
    /// `scipcache`.
    pub cli: PathBuf,
}

/// Builds both binaries (one `cargo build`, first call only) and returns their paths.
///
/// The build uses the workspace manifest and the profile of the running test (`--release` only
/// when the tests themselves were built without debug assertions), so it reuses the test
/// run's target dir. It deliberately passes no `--target`: cargo would then build every
/// dependency a second time under `target/<triple>/`, which costs minutes on CI's two cores.
///
/// `SCIPCACHE_TEST_BIN_DIR=<dir>` skips the build and takes both binaries from `<dir>`.
///
/// # Panics
/// When the build fails, with cargo's error messages; every later call panics with the same
/// message without building again.
pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Result<Binaries, String>> = OnceLock::new();
    match BINS.get_or_init(build) {
        Ok(bins) => bins,
        Err(e) => panic!("{e}"),
    }
}

fn build() -> Result<Binaries, String> {
    if let Some(dir) = std::env::var_os("SCIPCACHE_TEST_BIN_DIR") {
        let dir = PathBuf::from(dir);
        let bins = Binaries {
            daemon: dir.join("scipcached"),
            cli: dir.join("scipcache"),
        };
        for p in [&bins.daemon, &bins.cli] {
            if !p.is_file() {
                return Err(format!(
                    "SCIPCACHE_TEST_BIN_DIR={} has no {}",
                    dir.display(),
                    p.display()
                ));
            }
        }
        return Ok(bins);
    }

    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let started = std::time::Instant::now();
    let mut build = escargot::CargoBuild::new().manifest_path(&manifest);
    if let Some(dir) = own_target_dir() {
        build = build.target_dir(dir);
    }
    let messages = build
        .package("scipcache-daemon")
        .package("scipcache-client")
        .bin("scipcached")
        .bin("scipcache")
        .current_release()
        .exec()
        .map_err(|e| format!("cannot run cargo build for scipcached and scipcache: {e}"))?;

    let (mut daemon, mut cli) = (None, None);
    let mut errors = Vec::new();
    for message in messages {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                return Err(format!(
                    "cargo build of scipcached and scipcache failed:\n{}\n{e}",
                    errors.join("\n")
                ));
            }
        };
        match message.decode() {
            Ok(Message::CompilerArtifact(artifact)) => {
                let Some(exe) = artifact.executable else {
                    continue;
                };
                match artifact.target.name.as_ref() {
                    "scipcached" => daemon = Some(exe.into_owned()),
                    "scipcache" => cli = Some(exe.into_owned()),
                    _ => {}
                }
            }
            Ok(Message::CompilerMessage(m))
                if matches!(
                    m.message.level,
                    DiagnosticLevel::Error | DiagnosticLevel::Ice
                ) =>
            {
                errors.push(
                    m.message
                        .rendered
                        .map_or_else(|| m.message.message.into_owned(), |r| r.into_owned()),
                );
            }
            _ => {}
        }
    }
    eprintln!(
        "scipcache-tests: built scipcached and scipcache in {:.1?}",
        started.elapsed()
    );
    match (daemon, cli) {
        (Some(daemon), Some(cli)) => Ok(Binaries { daemon, cli }),
        (d, c) => Err(format!(
            "cargo build reported no executable for {}{}",
            if d.is_none() { "scipcached " } else { "" },
            if c.is_none() { "scipcache" } else { "" },
        )),
    }
}

/// The target dir this test binary was built in (the nearest ancestor holding cargo's
/// `CACHEDIR.TAG`), so the binaries land beside it even when the test run was given
/// `--target-dir` rather than `CARGO_TARGET_DIR`. `None` leaves the choice to cargo.
fn own_target_dir() -> Option<PathBuf> {
    if std::env::var_os("CARGO_TARGET_DIR").is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}
