//! The shared real SCIP series (`shared/data/scip/README.md`).
//!
//! Series A: 12 consecutive commits of vuejs/core (~20.5 MB each). Series B: 3 commits of
//! sqlalchemy (~99 MB each). Files are `NN_<shortsha>.scip.zst`, zstd with a 2^27 window;
//! `B3SUMS` holds the BLAKE3 of each decompressed file.
//!
//! The data dir is `$SCIPCACHE_TEST_DATA` or `<tests crate>/../../shared/data/scip`. When it is
//! absent, [`series_a`]/[`series_b`] print why and return `None` (the test returns early), and
//! under `CI=true` they panic: CI must not pass by skipping.
//!
//! Each file is decompressed on first use into `<scratch>/scipcache-test-data/` under its
//! BLAKE3 name, verified, and reused by later test runs (verified again, once per process).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use crate::process::scratch_dir;

/// One series: its files oldest first.
#[derive(Debug)]
pub struct Series {
    /// `A` or `B`.
    pub name: String,
    /// The commits, oldest first.
    pub files: Vec<SeriesFile>,
}

/// One commit's index.
#[derive(Debug)]
pub struct SeriesFile {
    /// Position in the series, from 1.
    pub number: u32,
    /// The short SHA from the file name (`b67cfcfa0`).
    pub sha: String,
    /// The BLAKE3 (lowercase hex) of the decompressed file, from `B3SUMS`.
    pub b3: String,
    zst: PathBuf,
    decompressed: OnceLock<Result<(PathBuf, u64), String>>,
}

impl SeriesFile {
    /// The ref key tests use for it: `commit/<shortsha>`.
    pub fn key(&self) -> String {
        format!("commit/{}", self.sha)
    }

    /// The decompressed file (decompressing and verifying it on first use).
    pub fn path(&self) -> Result<&Path> {
        Ok(&self.ready()?.0)
    }

    /// Its length in bytes.
    pub fn len(&self) -> Result<u64> {
        Ok(self.ready()?.1)
    }

    /// Whether the decompressed file is empty (never, for real data).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    fn ready(&self) -> Result<&(PathBuf, u64)> {
        self.decompressed
            .get_or_init(|| self.decompress().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn decompress(&self) -> Result<(PathBuf, u64)> {
        let dir = scratch_dir().join("scipcache-test-data");
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(format!("{}.scip", self.b3));
        if target.is_file() && crate::blake3_file(&target)? == self.b3 {
            let len = std::fs::metadata(&target)?.len();
            return Ok((target, len));
        }
        // Decompress to a temp name beside the target, then rename: concurrent test
        // processes never see a partial file.
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        let mut decoder = zstd::stream::read::Decoder::new(BufReader::new(
            File::open(&self.zst).with_context(|| format!("cannot open {}", self.zst.display()))?,
        ))?;
        decoder.window_log_max(27)?;
        let mut hasher = blake3::Hasher::new();
        let len = {
            let mut out = Tee {
                file: BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
                hasher: &mut hasher,
            };
            let len = std::io::copy(&mut decoder, &mut out)
                .with_context(|| format!("cannot decompress {}", self.zst.display()))?;
            out.flush()?;
            len
        };
        let actual = hasher.finalize().to_hex().to_string();
        if actual != self.b3 {
            bail!(
                "{} decompresses to BLAKE3 {actual}, but B3SUMS says {}",
                self.zst.display(),
                self.b3
            );
        }
        tmp.persist(&target)?;
        Ok((target, len))
    }
}

struct Tee<'a, W: Write> {
    file: W,
    hasher: &'a mut blake3::Hasher,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The `scip` data dir: `$SCIPCACHE_TEST_DATA` or `<tests crate>/../../shared/data/scip`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("SCIPCACHE_TEST_DATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/scip"),
        PathBuf::from,
    )
}

/// Series A (vuejs/core, 12 × ~20.5 MB), or `None` with a message when the data is absent.
///
/// # Panics
/// Under `CI=true` when the data is absent or unreadable.
pub fn series_a() -> Option<&'static Series> {
    static A: OnceLock<Option<Series>> = OnceLock::new();
    A.get_or_init(|| load("A")).as_ref()
}

/// Series B (sqlalchemy, 3 × ~99 MB), like [`series_a`].
///
/// # Panics
/// Under `CI=true` when the data is absent or unreadable.
pub fn series_b() -> Option<&'static Series> {
    static B: OnceLock<Option<Series>> = OnceLock::new();
    B.get_or_init(|| load("B")).as_ref()
}

fn load(name: &str) -> Option<Series> {
    let dir = data_dir().join(name);
    match read_series(name, &dir) {
        Ok(series) => Some(series),
        Err(e) => {
            let msg = format!(
                "SCIP series {name} unavailable at {} ({e:#}); set SCIPCACHE_TEST_DATA to the \
                 `scip` data dir (shared/data/scip)",
                dir.display()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}; CI=true requires it");
            }
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

fn read_series(name: &str, dir: &Path) -> Result<Series> {
    let sums_path = dir.join("B3SUMS");
    let sums = std::fs::read_to_string(&sums_path)
        .with_context(|| format!("cannot read {}", sums_path.display()))?;
    let sums: HashMap<String, String> = sums
        .lines()
        .filter_map(|l| {
            let (hash, file) = l.split_once(char::is_whitespace)?;
            Some((
                file.trim().trim_start_matches('*').to_owned(),
                hash.to_owned(),
            ))
        })
        .collect();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = file_name.strip_suffix(".scip.zst") else {
            continue;
        };
        let (number, sha) = stem
            .split_once('_')
            .with_context(|| format!("unexpected file name {file_name}"))?;
        let b3 = sums
            .get(&format!("{stem}.scip"))
            .with_context(|| format!("{stem}.scip is not in {}", sums_path.display()))?;
        files.push(SeriesFile {
            number: number.parse()?,
            sha: sha.to_owned(),
            b3: b3.clone(),
            zst: path.clone(),
            decompressed: OnceLock::new(),
        });
    }
    if files.is_empty() {
        bail!("no *.scip.zst files");
    }
    files.sort_by_key(|f| f.number);
    Ok(Series {
        name: name.to_owned(),
        files,
    })
}
