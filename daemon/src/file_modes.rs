//! Owner-only files: everything under the data dir is created and kept private to the user
//! the daemon runs as (directories 0700, files 0600), because it holds every tenant's
//! indexes and the signing key.
//!
//! - [`restrict_umask`] sets the process umask to 077. `main` calls it first, before any
//!   thread exists, so that every file the engine or its libraries create (LMDB, warm packs,
//!   the cold tier's `object_store` local backend, which takes no mode) is owner-only.
//! - [`fix_data_dir`] walks an existing data dir once at start and takes group and other
//!   permissions off whatever an older version (or an operator) left open. It costs one
//!   `lstat` per entry and a `chmod` only for entries that need it, does not follow symbolic
//!   links, and skips what it cannot read with a warning.
//! - [`warn_if_exposed`] logs a warning for a key file that group or others may read.

use std::path::{Path, PathBuf};

/// Mode of every directory under the data dir.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file under the data dir.
pub const FILE_MODE: u32 = 0o600;
/// The umask that gives [`DIR_MODE`] and [`FILE_MODE`] to what is created.
pub const UMASK: u32 = 0o077;

/// Sets the process umask to [`UMASK`]. Call it before any thread starts: the umask is
/// process-wide, and a thread that creates a file meanwhile would get the old one.
#[cfg(unix)]
pub fn restrict_umask() {
    // SAFETY: umask(2) takes an integer, returns one and cannot fail; it touches no memory
    // of ours. It is called before any other thread exists, so no file creation races it.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(UMASK as libc::mode_t);
    }
}

/// No umask outside Unix.
#[cfg(not(unix))]
pub fn restrict_umask() {}

/// What [`fix_data_dir`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fixed {
    /// Entries looked at (the data dir itself included).
    pub checked: u64,
    /// Entries whose mode was changed.
    pub changed: u64,
    /// Entries that could not be read or changed (each logged).
    pub failed: u64,
}

/// Makes every directory under `dir` (and `dir` itself) [`DIR_MODE`] and every file that
/// group or others may access [`FILE_MODE`]. Blocking: run it on a blocking thread.
/// Symbolic links are neither followed nor changed.
#[cfg(unix)]
pub fn fix_data_dir(dir: &Path) -> Fixed {
    use std::os::unix::fs::PermissionsExt;

    let mut fixed = Fixed::default();
    let mut pending: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Removed meanwhile (a temp file renamed into place): nothing to fix.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                fixed.failed += 1;
                tracing::warn!("cannot check the mode of {}: {e}", path.display());
                continue;
            }
        };
        fixed.checked += 1;
        let mode = meta.permissions().mode() & 0o777;
        let wanted = if meta.is_dir() {
            (mode != DIR_MODE).then_some(DIR_MODE)
        } else if meta.is_file() {
            (mode & UMASK != 0).then_some(FILE_MODE)
        } else {
            None
        };
        if let Some(wanted) = wanted {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted)) {
                Ok(()) => {
                    fixed.changed += 1;
                    tracing::debug!("{}: mode {mode:o} -> {wanted:o}", path.display());
                }
                Err(e) => {
                    fixed.failed += 1;
                    tracing::warn!(
                        "cannot make {} owner-only (mode {mode:o}): {e}; fix it with chmod \
                         {wanted:o}",
                        path.display()
                    );
                }
            }
        }
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => pending.extend(entries.filter_map(|e| e.ok().map(|e| e.path()))),
                Err(e) => {
                    fixed.failed += 1;
                    tracing::warn!("cannot list {}: {e}", path.display());
                }
            }
        }
    }
    fixed
}

/// Nothing to fix outside Unix.
#[cfg(not(unix))]
pub fn fix_data_dir(_dir: &Path) -> Fixed {
    Fixed::default()
}

/// The mode of `path` when group or others may read (or write) it, else `None` (also when
/// it cannot be read: whoever opens it reports that).
#[cfg(unix)]
pub fn exposed_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & UMASK != 0).then_some(mode)
}

/// Modes are not checked outside Unix.
#[cfg(not(unix))]
pub fn exposed_mode(_path: &Path) -> Option<u32> {
    None
}

/// Logs a warning when group or others may read the key file `path` (`what` names the
/// option it comes from). Blocking (one `stat`).
pub fn warn_if_exposed(path: &Path, what: &str) {
    if let Some(mode) = exposed_mode(path) {
        tracing::warn!(
            "{what} {} is readable by group or others (mode {mode:o}): anyone who can read it \
             can forge tokens or impersonate this server; restrict it with `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> std::io::Result<u32> {
        Ok(std::fs::symlink_metadata(path)?.permissions().mode() & 0o777)
    }

    fn chmod(path: &Path, mode: u32) -> std::io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    #[test]
    fn open_dirs_and_files_become_owner_only_and_private_ones_stay() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        let data = root.path().join("data");
        let packs = data.join("warm").join("packs");
        std::fs::create_dir_all(&packs)?;
        let pack = packs.join("0001.pack");
        let lmdb = data.join("data.mdb");
        let readonly = data.join("readonly");
        std::fs::write(&pack, b"p")?;
        std::fs::write(&lmdb, b"m")?;
        std::fs::write(&readonly, b"r")?;
        for dir in [&data, &data.join("warm"), &packs] {
            chmod(dir, 0o755)?;
        }
        chmod(&pack, 0o644)?;
        chmod(&lmdb, 0o600)?;
        chmod(&readonly, 0o400)?;
        // A link to a file outside the data dir is not followed.
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"o")?;
        chmod(&outside, 0o644)?;
        std::os::unix::fs::symlink(&outside, data.join("link"))?;

        let fixed = fix_data_dir(&data);
        assert_eq!(fixed.failed, 0);
        assert_eq!(fixed.changed, 4, "three dirs and the pack: {fixed:?}");
        for dir in [&data, &data.join("warm"), &packs] {
            assert_eq!(mode(dir)?, DIR_MODE, "{}", dir.display());
        }
        assert_eq!(mode(&pack)?, FILE_MODE);
        assert_eq!(mode(&lmdb)?, FILE_MODE);
        assert_eq!(mode(&readonly)?, 0o400, "owner-only files keep their mode");
        assert_eq!(mode(&outside)?, 0o644, "links are not followed");
        assert_eq!(
            fix_data_dir(&data).changed,
            0,
            "a second walk changes nothing"
        );
        Ok(())
    }

    #[test]
    fn key_files_readable_by_others_are_found() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("key");
        std::fs::write(&key, b"k")?;
        chmod(&key, 0o644)?;
        assert_eq!(exposed_mode(&key), Some(0o644));
        chmod(&key, 0o640)?;
        assert_eq!(exposed_mode(&key), Some(0o640));
        chmod(&key, 0o600)?;
        assert_eq!(exposed_mode(&key), None);
        assert_eq!(exposed_mode(&dir.path().join("missing")), None);
        Ok(())
    }
}
