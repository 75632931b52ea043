//! # scipcache-bench: measurements and benchmarks on real SCIP indexes
//!
//! This library is the part the `measure` binary and the criterion benches share: where the
//! real test data lives and how to read it.
//!
//! The data (`shared/data/scip/`, described by its README) is two series of real SCIP
//! indexes, one file per commit, oldest first, each stored zstd-compressed with a 2^27 window:
//! series `A` (12 × ~20.5 MB) and `B` (3 × ~99 MB). It is never copied into the project. It is
//! read from `<this crate>/../../shared/data/scip`, or from the directory named by the
//! environment variable [`DATA_ENV`] (`SCIPCACHE_TEST_DATA`, pointing at the `scip` directory
//! itself).
//!
//! Absent data is normal on a machine without `shared/`: benches skip with a message. Under
//! `CI=true` absence is a failure, so a CI run that lost its data cannot pass by measuring
//! nothing; [`require_data`] applies that rule. Data that is present but unreadable, or that
//! does not match the series' `B3SUMS`, is always an error.
//!
//! ## Layout
//! - [`data_dir`], [`series_paths`]: where the files are.
//! - [`read_scip`]: one file, decompressed.
//! - [`scip_series`], [`scip_commit`]: a whole series or one commit of it, decompressed and
//!   checked against the series' `B3SUMS`.
//! - [`require_data`]: the skip-or-fail policy for absent data.
//!
//! ## Example
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! // Skips (returns) when the data is absent, panics under CI=true.
//! let Some(first) = scipcache_bench::require_data("A/01", scipcache_bench::scip_commit("A", 0))
//! else {
//!     return Ok(());
//! };
//! println!("{}: {} bytes", first.name, first.data.len());
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use memchr::memmem;

/// The environment variable that overrides where the `scip` data directory is.
pub const DATA_ENV: &str = "SCIPCACHE_TEST_DATA";

/// The suffix of every data file.
const SUFFIX: &str = ".scip.zst";

/// The largest zstd window the data files use (`--long=27`).
const WINDOW_LOG_MAX: u32 = 27;

/// One decompressed SCIP index: one commit of a series.
#[derive(Clone, Debug)]
pub struct ScipFile {
    /// The file name without `.scip.zst`, e.g. `01_b67cfcfa0`: commit number and short SHA.
    pub name: String,
    /// The uncompressed index.
    pub data: Vec<u8>,
}

/// The `scip` data directory: `$SCIPCACHE_TEST_DATA` when set, else
/// `<this crate>/../../shared/data/scip`. It may not exist.
pub fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/scip"),
    }
}

/// Whether this runs under CI (`CI=true`), where absent data is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The compressed files of `series` (`"A"`, `"B"`) in commit order, or `None` when the series
/// directory is absent or holds no `*.scip.zst` file.
pub fn series_paths(series: &str) -> Result<Option<Vec<PathBuf>>> {
    let dir = data_dir().join(series);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(SUFFIX))
        {
            paths.push(path);
        }
    }
    // Files are named `NN_<shortsha>.scip.zst`, so name order is commit order.
    paths.sort();
    Ok((!paths.is_empty()).then_some(paths))
}

/// Reads and decompresses one `.scip.zst` file.
pub fn read_scip(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let compressed_len = file
        .metadata()
        .with_context(|| format!("reading metadata of {}", path.display()))?
        .len();
    let mut decoder = zstd::stream::read::Decoder::new(BufReader::new(file))
        .with_context(|| format!("starting zstd on {}", path.display()))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .with_context(|| format!("setting the zstd window for {}", path.display()))?;
    // SCIP compresses 13-15x; one reservation avoids most regrowth.
    let hint = usize::try_from(compressed_len.saturating_mul(16)).unwrap_or(0);
    let mut data = Vec::with_capacity(hint);
    decoder
        .read_to_end(&mut data)
        .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(data)
}

/// Every commit of `series`, decompressed, oldest first; `None` when the series is absent.
/// Each file is checked against the series' `B3SUMS` when that file lists it.
pub fn scip_series(series: &str) -> Result<Option<Vec<ScipFile>>> {
    let Some(paths) = series_paths(series)? else {
        return Ok(None);
    };
    let sums = b3sums(&data_dir().join(series))?;
    paths
        .iter()
        .map(|p| load_checked(p, &sums))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Commit `index` (0 = oldest) of `series`, decompressed and checked like [`scip_series`];
/// `None` when the series is absent. An index past the end is an error.
pub fn scip_commit(series: &str, index: usize) -> Result<Option<ScipFile>> {
    let Some(paths) = series_paths(series)? else {
        return Ok(None);
    };
    let Some(path) = paths.get(index) else {
        bail!(
            "series {series} has {} commits, no commit #{index}",
            paths.len()
        );
    };
    let sums = b3sums(&data_dir().join(series))?;
    load_checked(path, &sums).map(Some)
}

/// Applies the data policy to a load result: the data when present; when absent, a message on
/// stderr and `None` so the caller skips, except under `CI=true`, where it panics. A load
/// error (data present but unreadable or damaged) always panics.
///
/// `what` names the data for the message, e.g. `"series A"`.
pub fn require_data<T>(what: &str, loaded: Result<Option<T>>) -> Option<T> {
    match loaded {
        Ok(Some(data)) => Some(data),
        Ok(None) if in_ci() => panic!(
            "SCIP test data ({what}) not found under {} (set {DATA_ENV} to the `scip` \
             directory); under CI=true missing data is a failure, not a skip",
            data_dir().display()
        ),
        Ok(None) => {
            eprintln!(
                "skipping: SCIP test data ({what}) not found under {} (set {DATA_ENV} to the \
                 `scip` directory)",
                data_dir().display()
            );
            None
        }
        Err(e) => panic!("SCIP test data ({what}) could not be loaded: {e:#}"),
    }
}

/// `NAME.scip` -> lowercase hex BLAKE3 of the uncompressed file, from `dir/B3SUMS` (empty when
/// there is no such file).
pub fn b3sums(dir: &Path) -> Result<HashMap<String, String>> {
    let path = dir.join("B3SUMS");
    if !path.is_file() {
        return Ok(HashMap::new());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (hash, name) = line.split_once(char::is_whitespace)?;
            Some((name.trim().to_owned(), hash.to_ascii_lowercase()))
        })
        .collect())
}

fn load_checked(path: &Path, sums: &HashMap<String, String>) -> Result<ScipFile> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no UTF-8 file name", path.display()))?;
    let name = file_name
        .strip_suffix(SUFFIX)
        .unwrap_or(file_name)
        .to_owned();
    let data = read_scip(path)?;
    if let Some(expected) = sums.get(&format!("{name}.scip")) {
        let actual = blake3::hash(&data).to_hex();
        if actual.as_str() != expected {
            bail!(
                "{} decompresses to BLAKE3 {actual}, but B3SUMS says {expected}",
                path.display()
            );
        }
    }
    Ok(ScipFile { name, data })
}

/// Bytes of every file under `dir` (0 for a folder that is absent).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The fixed "version" a pinned series gets in place of each file's commit SHA.
pub const DEFAULT_PIN: &str = "5f3c9a0e7b21d4c86e0f9b3a2d7c41e85a6b0f92";

/// Replaces every occurrence of the one 40-hex SHA of `data` that starts with `prefix` (and
/// has no hex digit on either side) by `fixed`; returns the SHA and how many were replaced.
pub fn pin_sha(data: &mut [u8], prefix: &str, fixed: &str) -> Result<(String, usize)> {
    const SHA_LEN: usize = 40;
    let is_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    ensure!(fixed.len() == SHA_LEN, "the pin must be {SHA_LEN} bytes");
    ensure!(
        !prefix.is_empty() && prefix.len() < SHA_LEN && prefix.bytes().all(is_hex),
        "the file name's part after `NN_` ({prefix:?}) is not a SHA prefix"
    );
    let mut shas = BTreeSet::new();
    for at in memmem::find_iter(data, prefix.as_bytes()) {
        let end = at + SHA_LEN;
        if end > data.len() {
            continue;
        }
        let clear_before = at == 0 || !is_hex(data[at - 1]);
        let clear_after = end == data.len() || !is_hex(data[end]);
        if clear_before && clear_after && data[at..end].iter().all(|&b| is_hex(b)) {
            shas.insert(data[at..end].to_vec());
        }
    }
    ensure!(
        shas.len() == 1,
        "expected one 40-hex SHA starting with {prefix}, found {}",
        shas.len()
    );
    let sha = shas.pop_first().unwrap_or_default();
    let at: Vec<usize> = memmem::find_iter(data, &sha).collect();
    for &i in &at {
        data[i..i + SHA_LEN].copy_from_slice(fixed.as_bytes());
    }
    Ok((String::from_utf8_lossy(&sha).into_owned(), at.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_replaces_every_copy_of_the_one_sha() -> Result<()> {
        let sha = "eb5ef2ac708a6e70ec253d78955d04e20c3c9784";
        let mut data = format!("x {sha} y/{sha}#z eb5ef2ac70 short").into_bytes();
        let (found, n) = pin_sha(&mut data, "eb5ef2ac70", DEFAULT_PIN)?;
        assert_eq!((found.as_str(), n), (sha, 2));
        let text = String::from_utf8(data)?;
        assert_eq!(
            text,
            format!("x {DEFAULT_PIN} y/{DEFAULT_PIN}#z eb5ef2ac70 short")
        );
        Ok(())
    }

    #[test]
    fn pinning_refuses_two_candidate_shas() {
        let mut data =
            b"eb5ef2ac70aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa eb5ef2ac70bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
                .to_vec();
        assert!(pin_sha(&mut data, "eb5ef2ac70", DEFAULT_PIN).is_err());
    }

    #[test]
    fn b3sums_lines_map_names_to_hashes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("B3SUMS"),
            "ABCD  01_x.scip\nef01  02_y.scip\n\n",
        )?;
        let sums = b3sums(dir.path())?;
        assert_eq!(sums.get("01_x.scip").map(String::as_str), Some("abcd"));
        assert_eq!(sums.get("02_y.scip").map(String::as_str), Some("ef01"));
        assert_eq!(sums.len(), 2);
        Ok(())
    }

    #[test]
    fn a_damaged_file_is_refused_by_its_checksum() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("01_x.scip.zst");
        std::fs::write(&path, zstd::bulk::compress(b"index bytes", 3)?)?;
        let good = blake3::hash(b"index bytes").to_hex().to_string();
        let sums = HashMap::from([("01_x.scip".to_owned(), good)]);
        assert_eq!(load_checked(&path, &sums)?.data, b"index bytes");
        let bad = HashMap::from([("01_x.scip".to_owned(), "00".repeat(32))]);
        assert!(load_checked(&path, &bad).is_err());
        Ok(())
    }
}
