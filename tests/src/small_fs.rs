//! A small filesystem the test mounts itself: a size-limited tmpfs, for what the daemon does
//! when its disk is full.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::process::scratch_dir;

/// A tmpfs of a given size mounted on a fresh temp dir, unmounted (and the dir removed) when
/// dropped. Drop everything that has files open on it (a daemon) before it.
#[derive(Debug)]
pub struct SmallFs {
    /// The mount point; declared before `_dir` so that the unmount runs first.
    mount_point: PathBuf,
    _dir: TempDir,
}

/// What `mount` prints when this process may not mount (not root, no `CAP_SYS_ADMIN`, a
/// container that forbids it), lowercased.
const REFUSALS: [&str; 4] = [
    "permission denied",
    "operation not permitted",
    "must be superuser",
    "only root",
];

impl SmallFs {
    /// Mounts a tmpfs of `bytes` (mode 0700). `Ok(None)`, with the reason on stderr, where
    /// mounting is refused, so that a test can skip; under `CI=true` (CI runs as root and can
    /// mount) a refusal is an error instead. Any other failure is an error.
    pub fn tmpfs(bytes: u64) -> Result<Option<Self>> {
        let dir = tempfile::Builder::new()
            .prefix("scipcache-small-fs-")
            .tempdir_in(scratch_dir())?;
        let mount_point = dir.path().join("mnt");
        std::fs::create_dir(&mount_point)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700"))
            .arg("tmpfs")
            .arg(&mount_point)
            .output()
            .context("cannot run `mount` (util-linux)")?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            let refused = REFUSALS.iter().any(|r| stderr.to_lowercase().contains(r));
            if refused && std::env::var("CI").as_deref() != Ok("true") {
                eprintln!(
                    "SKIPPED: this test mounts a small tmpfs, and mounting is refused here \
                     ({stderr}); run it as root (CI does, and fails instead of skipping)"
                );
                return Ok(None);
            }
            bail!(
                "`mount -t tmpfs -o size={bytes} tmpfs {}` failed ({}): {stderr}",
                mount_point.display(),
                out.status
            );
        }
        Ok(Some(Self {
            mount_point,
            _dir: dir,
        }))
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Bytes an unprivileged writer may still use there (`f_bavail` × block size, as `df`
    /// reports them).
    pub fn available(&self) -> Result<u64> {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.mount_point)
            .output()
            .context("cannot run `stat -f`")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace().map(str::parse::<u64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(blocks)), Some(Ok(size))) => Ok(blocks * size),
            _ => bail!("`stat -f` printed {text:?}"),
        }
    }

    /// Grows (or shrinks) the filesystem to `bytes` in place (`mount -o remount,size=`).
    pub fn resize(&self, bytes: u64) -> Result<()> {
        let status = Command::new("mount")
            .arg("-o")
            .arg(format!("remount,size={bytes}"))
            .arg(&self.mount_point)
            .status()
            .context("cannot run `mount -o remount`")?;
        if !status.success() {
            bail!("`mount -o remount,size={bytes}` failed: {status}");
        }
        Ok(())
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // A process that has just exited may still hold the mount busy for a moment.
        for _ in 0..50 {
            let unmounted = Command::new("umount")
                .arg(&self.mount_point)
                .status()
                .is_ok_and(|s| s.success());
            if unmounted {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Still busy: detach it now; the kernel frees it once the last user is gone.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}
