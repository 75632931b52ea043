//! Free space on the filesystems the engine writes to, and what a failed write there means.
//!
//! # Recognising a full disk
//!
//! A full filesystem does not always say so. A write may fail with `ENOSPC` (or `EDQUOT` for a
//! quota), but LMDB reports a page write that comes back short as `EIO`, and a short write is
//! exactly what a disk that fills in the middle of a commit produces. So every failed write of
//! the engine's local files (LMDB commits, warm packs, a `file://` cold tier) passes through
//! [`classify`] with the path it wrote to:
//!
//! - `ENOSPC` and `EDQUOT` always mean a full disk;
//! - `EIO` means a full disk when the filesystem holding the path has no more than its
//!   [`reserve`] free (`statvfs`: `f_bavail` × `f_frsize`, what an unprivileged writer may still
//!   use). A short write leaves the filesystem with almost nothing free, so a real I/O error on
//!   a disk with room is still reported as one.
//!
//! Either way the result is [`Error::DiskFull`], which names the path, the free space and what
//! to do (free space there or give the filesystem more room); the daemon answers it with
//! `RESOURCE_EXHAUSTED`. Nothing is retried on the request path: the caller decides.
//!
//! # The reserve
//!
//! Copies the engine makes on its own (warm pack writes, cold packs and manifests written to a
//! local folder) are written only while the filesystem keeps [`reserve`] bytes free after them
//! ([`ensure_room`]). They are copies of data the index already holds, so refusing them loses
//! nothing (the write-behind keeps its queue and retries), and the last free space stays for
//! the index: commits of pushes, and the small commits that drop queue entries or persist
//! access times at shutdown. LMDB writes are not refused early: LMDB survives a half-written
//! page (a failed commit never writes the meta page, so the last committed state stays whole,
//! and the pages it wrote are rewritten by the next commit), and its file may hold free pages
//! that a commit reuses without needing room on the filesystem at all.

use std::path::Path;

use crate::error::{Error, human_bytes as human};

/// The least and the most free space kept for the index.
const RESERVE_MIN: u64 = 1 << 20;
const RESERVE_MAX: u64 = 64 << 20;

/// What `statvfs` says of a filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Space {
    /// Bytes an unprivileged writer may still use.
    pub(crate) available: u64,
    /// The filesystem's size.
    pub(crate) total: u64,
}

/// The free space of the filesystem holding `path` (or its nearest existing ancestor, for a
/// path not created yet); `None` if even that cannot be asked.
pub(crate) fn space(path: &Path) -> Option<Space> {
    let mut at = Some(path);
    while let Some(p) = at {
        match rustix::fs::statvfs(p) {
            Ok(s) => {
                return Some(Space {
                    available: s.f_bavail.saturating_mul(s.f_frsize),
                    total: s.f_blocks.saturating_mul(s.f_frsize),
                });
            }
            Err(e) if e == rustix::io::Errno::NOENT => at = p.parent(),
            Err(_) => return None,
        }
    }
    None
}

/// The free space kept for the index on a filesystem of `total` bytes: 1/64 of it, at least
/// 1 MiB and at most 64 MiB.
pub(crate) fn reserve(total: u64) -> u64 {
    (total / 64).clamp(RESERVE_MIN, RESERVE_MAX)
}

/// Whether a write to `path` that failed with `err` failed because the disk is full, and if so
/// the free space there (see the module docs).
fn full(path: &Path, err: &std::io::Error) -> Option<Space> {
    use std::io::ErrorKind;
    let always = matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            err.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        );
    let eio = err.raw_os_error() == Some(libc::EIO);
    if !always && !eio {
        return None;
    }
    match space(path) {
        Some(s) if always || s.available <= reserve(s.total) => Some(s),
        Some(_) => None,
        None if always => Some(Space {
            available: 0,
            total: 0,
        }),
        None => None,
    }
}

/// [`Error::DiskFull`] for `path` with `space` free.
pub(crate) fn disk_full(path: &Path, space: Space, detail: impl Into<String>) -> Error {
    Error::DiskFull {
        path: path.display().to_string(),
        available: space.available,
        detail: detail.into(),
    }
}

/// The OS error inside `err`, if it carries one (directly, from LMDB, or from the object
/// store's local backend).
fn os_error(err: &Error) -> Option<&std::io::Error> {
    match err {
        Error::Io { source, .. } => Some(source),
        Error::Lmdb(heed::Error::Io(io)) => Some(io),
        Error::ObjectStore(e) => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(c) = cause {
                if let Some(io) = c.downcast_ref::<std::io::Error>() {
                    return Some(io);
                }
                cause = c.source();
            }
            None
        }
        _ => None,
    }
}

/// Turns a failed write to `path` into [`Error::DiskFull`] when the disk there is full (see
/// the module docs); any other error is returned as it is.
pub(crate) fn classify(err: Error, path: &Path) -> Error {
    let found = match &err {
        Error::Full(msg) if msg.contains("the disk is full") => space(path).or(Some(Space {
            available: 0,
            total: 0,
        })),
        other => os_error(other).and_then(|io| full(path, io)),
    };
    match found {
        Some(space) => disk_full(path, space, err.to_string()),
        None => err,
    }
}

/// Refuses a background copy of `need` bytes into `path` when it would leave the filesystem
/// with less than its [`reserve`] free.
pub(crate) fn ensure_room(path: &Path, need: u64, what: &str) -> crate::error::Result<()> {
    let Some(space) = space(path) else {
        return Ok(());
    };
    let keep = reserve(space.total);
    if space.available < need.saturating_add(keep) {
        return Err(disk_full(
            path,
            space,
            format!(
                "{what} of {} would leave less than the {} kept free for the index",
                human(need),
                human(keep)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_a_64th_of_the_filesystem_between_1_and_64_mib() {
        assert_eq!(reserve(0), 1 << 20);
        assert_eq!(reserve(32 << 20), 1 << 20);
        assert_eq!(reserve(1 << 30), 16 << 20);
        assert_eq!(reserve(1 << 40), 64 << 20);
    }

    #[test]
    fn no_space_is_a_full_disk_and_eio_only_where_little_is_free() -> crate::error::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let enospc = Error::io("writing", std::io::Error::from_raw_os_error(libc::ENOSPC));
        let e = classify(enospc, dir.path());
        assert!(matches!(e, Error::DiskFull { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
        let lmdb = Error::Lmdb(heed::Error::Io(std::io::Error::from_raw_os_error(
            libc::EDQUOT,
        )));
        assert!(matches!(classify(lmdb, dir.path()), Error::DiskFull { .. }));
        // The test machine's temp dir has more than its reserve free: EIO is an I/O error.
        let roomy = space(dir.path()).is_some_and(|s| s.available > reserve(s.total));
        let eio = Error::Lmdb(heed::Error::Io(std::io::Error::from_raw_os_error(
            libc::EIO,
        )));
        let e = classify(eio, dir.path());
        assert_eq!(matches!(e, Error::DiskFull { .. }), !roomy, "{e:?}");
        let other = Error::io("reading", std::io::Error::other("bad"));
        assert!(matches!(classify(other, dir.path()), Error::Io { .. }));
        Ok(())
    }

    #[test]
    fn free_space_of_a_path_not_created_yet_is_its_ancestors() -> crate::error::Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let here = space(dir.path());
        assert!(here.is_some());
        assert_eq!(
            space(&dir.path().join("not/yet")).map(|s| s.total),
            here.map(|s| s.total)
        );
        // A copy as large as the filesystem never fits.
        let total = here.map_or(0, |s| s.total);
        let refused = ensure_room(dir.path(), total, "a warm pack write");
        assert!(
            matches!(refused, Err(Error::DiskFull { .. })),
            "{refused:?}"
        );
        ensure_room(dir.path(), 0, "nothing")
    }
}
