//! A 2 GiB blob goes through push and pull byte-identical while neither the daemon nor the CLI
//! holds more than a bounded amount of it in memory (streaming, bounded queues).
//!
//! How memory is measured: the CLI's peak RSS comes from `/usr/bin/time` (or `VmHWM` polling).
//! The daemon's `VmHWM` is printed but not bounded, because it counts the pages of its
//! memory-mapped LMDB hot tier that it touched (file-backed page cache the kernel can reclaim;
//! ~1.4 GiB of a 2 GiB push with the default 1 GiB hot budget). What the daemon itself holds
//! is its private memory, `RssAnon`, sampled every 20 ms during each transfer: that is bounded.

use std::time::Duration;

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, PeakSampler, blake3_file, write_generated};

use crate::common::{heavy_io, mib, p, str_field, u64_field};

const SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// Far below the blob's size: what "streams" means here.
const RSS_LIMIT: u64 = 512 * 1024 * 1024;
/// A hang detector for one 2 GiB transfer in a debug build, not a speed check.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(1800);
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

#[test]
fn two_gib_blob_round_trips_with_bounded_memory() -> Result<()> {
    let _io = heavy_io();
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let src = d.scratch().join("large.bin");
    let b3 = write_generated(&src, SIZE, 2024)?;
    let pid = d.pid().expect("running");

    let sampler = PeakSampler::start(pid, SAMPLE_EVERY);
    let (push, push_rss) = d.cli_measured(
        &writer,
        &["--json", "push", NS, "large/2gib", p(&src)],
        TRANSFER_TIMEOUT,
    )?;
    let push_peaks = sampler.stop();
    let push = push.success()?;

    let dest = d.scratch().join("large.pulled");
    let sampler = PeakSampler::start(pid, SAMPLE_EVERY);
    let (pull, pull_rss) = d.cli_measured(
        &writer,
        &["--json", "pull", NS, "large/2gib", "-o", p(&dest)],
        TRANSFER_TIMEOUT,
    )?;
    let pull_peaks = sampler.stop();
    let pull = pull.success()?;
    let daemon_hwm = d.peak_rss()?;

    eprintln!(
        "large_blob: 2 GiB push {:.1?}, pull {:.1?}\n\
         large_blob: CLI peak RSS: push {:.0} MiB, pull {:.0} MiB\n\
         large_blob: daemon VmHWM {:.0} MiB; sampled peaks during push: anon {:.0} MiB, \
         file-backed {:.0} MiB; during pull: anon {:.0} MiB, file-backed {:.0} MiB",
        push.elapsed,
        pull.elapsed,
        mib(push_rss),
        mib(pull_rss),
        mib(daemon_hwm),
        mib(push_peaks.anon),
        mib(push_peaks.file),
        mib(pull_peaks.anon),
        mib(pull_peaks.file),
    );

    let j = push.json()?;
    ensure!(str_field(&j, "blob")? == b3, "push blob id: {j}");
    ensure!(u64_field(&j, "bytes")? == SIZE, "push bytes: {j}");
    let j = pull.json()?;
    ensure!(str_field(&j, "blob")? == b3, "pull blob id: {j}");
    ensure!(
        std::fs::metadata(&dest)?.len() == SIZE,
        "pulled size differs"
    );
    ensure!(blake3_file(&dest)? == b3, "pulled 2 GiB blob differs");

    for (what, rss) in [
        ("CLI push peak RSS", push_rss),
        ("CLI pull peak RSS", pull_rss),
        (
            "daemon private memory (RssAnon) during push",
            push_peaks.anon,
        ),
        (
            "daemon private memory (RssAnon) during pull",
            pull_peaks.anon,
        ),
    ] {
        ensure!(
            rss < RSS_LIMIT,
            "{what} reached {:.0} MiB: not bounded (limit {:.0} MiB for a 2 GiB blob)",
            mib(rss),
            mib(RSS_LIMIT)
        );
    }
    ensure!(
        daemon_hwm < SIZE,
        "daemon VmHWM {:.0} MiB reached the blob's size",
        mib(daemon_hwm)
    );
    std::fs::remove_file(&src)?;
    std::fs::remove_file(&dest)?;
    Ok(())
}
