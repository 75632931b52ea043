//! SCIP-aware storage end to end: every shared index round-trips through document-aligned
//! cutting and version normalization; both series go through the CLI byte-identical, with
//! next commits sending little even where every symbol changed; ranged and chunk reads restore
//! the real versions, on the server or (for a client that says it restores them) on the
//! client; a malformed index is stored as plain bytes, and lookups on it fail their
//! precondition.

use std::io::Read;

use anyhow::{Context, Result, ensure};
use scipcache_proto::{convert, pb};
use scipcache_tests::{Daemon, DaemonOptions, NS, data};
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::codec::Frame;
use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::scip::{Cut, CutMode, Cutter, VersionTable};

use crate::bad_input::Raw;
use crate::common::{heavy_io, p, same_bytes, str_field, u64_field};
use crate::hostile_reads::read_range;

/// Cuts the file at `path` as the CLI does (normalized, 4 MiB reads) and hands every cut on.
fn cut_file(path: &std::path::Path, mut each: impl FnMut(&Cut)) -> Result<Cutter> {
    let mut file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut cutter = Cutter::new(ChunkerSpec::default(), CutMode::Normalized)?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = file.read(&mut buf)?;
        cutter.push(&buf[..n]);
        while let Some(cut) = cutter.next_cut(n == 0)? {
            each(&cut);
        }
        if n == 0 {
            return Ok(cutter);
        }
    }
}

#[test]
fn every_shared_index_round_trips_through_cutting_and_normalization() -> Result<()> {
    let (Some(a), Some(b)) = (data::series_a(), data::series_b()) else {
        return Ok(());
    };
    for f in a.files.iter().chain(&b.files) {
        let path = f.path()?;
        // The restored bytes are hashed as they come: the table is complete only at the end,
        // so the stored form is kept (it is the size of the index) and restored after.
        let mut cuts = Vec::new();
        let cutter = cut_file(path, |c| cuts.push(c.clone()))?;
        let table = cutter.finish();
        let mut hasher = blake3::Hasher::new();
        let (mut normalized, mut bytes) = (0usize, 0u64);
        for c in &cuts {
            ensure!(c.data.len() <= ChunkerSpec::default().max as usize);
            bytes += c.data.len() as u64;
            if c.normalized {
                normalized += 1;
                hasher.update(&table.restore(&c.data)?);
            } else {
                hasher.update(&c.data);
            }
        }
        ensure!(
            bytes == f.len()?,
            "{}: the chunks hold {bytes} bytes",
            f.key()
        );
        ensure!(
            hasher.finalize().to_hex().as_str() == f.b3,
            "{} does not restore byte-identical",
            f.key()
        );
        // Every index here stamps a version into its symbols: most chunks carry placeholders.
        ensure!(
            normalized * 10 >= cuts.len() * 8,
            "{}: only {normalized} of {} chunks normalized",
            f.key(),
            cuts.len()
        );
    }
    Ok(())
}

#[tokio::test]
async fn both_series_round_trip_through_the_cli_and_next_commits_send_little() -> Result<()> {
    let (Some(a), Some(b)) = (data::series_a(), data::series_b()) else {
        return Ok(());
    };
    let io = heavy_io();
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let mut report = Vec::new();
    for f in a.files.iter().chain(&b.files) {
        let out = d
            .cli(&writer, &["--json", "push", NS, &f.key(), p(f.path()?)])?
            .success()?;
        let j = out.json()?;
        ensure!(str_field(&j, "blob")? == f.b3, "push of {}: {j}", f.key());
        report.push((f, u64_field(&j, "bytes_sent")? as f64 / f.len()? as f64));
    }
    for (f, share) in &report {
        eprintln!(
            "scip_storage: {} sent {:.3}% of the file",
            f.key(),
            share * 100.0
        );
    }
    // Series A: commits 07-10 and 12 repeat an earlier index; 06 is the release that changes
    // the version in every symbol, and sends as little as the others now.
    for (f, share) in report.iter().take(a.files.len()).skip(1) {
        ensure!(
            *share <= 0.03,
            "A {} sent {:.2}% (want ≤ 3%)",
            f.key(),
            share * 100.0
        );
    }
    // Series B: the commit's SHA is in every project-local symbol; commits 02 and 03 send
    // well under 1% (02 changes no Python file).
    for (f, share) in report.iter().skip(a.files.len() + 1) {
        ensure!(
            *share <= 0.01,
            "B {} sent {:.2}% (want ≤ 1%)",
            f.key(),
            share * 100.0
        );
    }
    // Pulls give every byte back.
    for f in [&a.files[5], &a.files[11], &b.files[1], &b.files[2]] {
        let dest = d.scratch().join(format!("pulled-{}", f.sha));
        d.cli(&writer, &["--json", "pull", NS, &f.key(), "-o", p(&dest)])?
            .success()?;
        ensure!(same_bytes(&dest, f.path()?)?, "pull of {} differs", f.key());
        std::fs::remove_file(&dest)?;
    }

    drop(io);

    // Ranged reads and chunk reads restore the real versions.
    let f = &b.files[1];
    let original = std::fs::read(f.path()?)?;
    let raw = Raw::connect(&d, writer.clone()).await?;
    let size = original.len() as u64;
    for (offset, length) in [
        (0, 100),
        (12_345, 1 << 20),
        (size / 2, 300_000),
        (size - 7, 7),
    ] {
        let got = read_range(&raw, &f.key(), offset, length).await?;
        let want = &original[offset as usize..(offset + length) as usize];
        ensure!(
            got == want,
            "range {offset}+{length} of {} differs",
            f.key()
        );
    }
    // A client that restores versions itself gets normalized chunks as stored, with the
    // table; one that does not gets none of them unrestored.
    let (got, stored) = read_frames(&raw, &f.key(), true).await?;
    ensure!(got == original, "a read restored by the client differs");
    ensure!(stored > 0, "no normalized chunk came as stored");
    let (got, stored) = read_frames(&raw, &f.key(), false).await?;
    ensure!(got == original, "a read restored by the server differs");
    ensure!(
        stored == 0,
        "{stored} chunks came unrestored to a client that did not ask"
    );
    let mut at = 0usize;
    let mut picked = Vec::new();
    cut_file(f.path()?, |c| {
        if c.normalized && picked.len() < 3 {
            picked.push((*blake3::hash(&c.data).as_bytes(), at, c.data.len()));
        }
        at += c.data.len();
    })?;
    ensure!(picked.len() == 3, "no normalized chunks in {}", f.key());
    let mut frames = raw
        .chunks()
        .read(raw.req(pb::ReadChunksRequest {
            namespace: NS.into(),
            key: f.key(),
            ids: picked.iter().map(|(id, ..)| id.to_vec().into()).collect(),
        }))
        .await?
        .into_inner();
    let mut seen = 0;
    while let Some(frame) = frames.message().await? {
        let (_, start, len) = picked
            .iter()
            .find(|(id, ..)| id[..] == frame.id[..])
            .context("a chunk not asked for")?;
        ensure!(frame.restored, "a normalized chunk came back unrestored");
        let bytes = Frame::from_bytes(frame.frame)?.decode(1 << 22)?;
        ensure!(
            bytes[..] == original[*start..start + len],
            "chunk at {start} differs"
        );
        seen += 1;
    }
    ensure!(seen == 3, "{seen} of 3 chunks read");
    Ok(())
}

/// A whole-blob read with frames accepted (`restores` versions or not), decoded and
/// restored as a client does; and how many frames came as stored normalized chunks.
async fn read_frames(raw: &Raw, key: &str, restores: bool) -> Result<(Vec<u8>, usize)> {
    use pb::read_blob_response::Part;
    let mut stream = raw
        .blobs()
        .read(raw.req(pb::ReadBlobRequest {
            namespace: NS.into(),
            key: key.into(),
            accept_frames: true,
            restores_versions: restores,
            ..pb::ReadBlobRequest::default()
        }))
        .await?
        .into_inner();
    let mut table = VersionTable::new();
    let (mut out, mut normalized) = (Vec::new(), 0);
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(Part::Ref(info)) => table = convert::version_table(&info.versions)?,
            Some(Part::Data(bytes)) => out.extend_from_slice(&bytes),
            Some(Part::Frame(f)) => {
                let id = ChunkId::from_slice(&f.id)?;
                let mut bytes = Frame::from_bytes(f.frame)?
                    .decode_verified(&id, 1 << 22)?
                    .to_vec();
                if f.normalized {
                    table.restore_in_place(&mut bytes)?;
                    normalized += 1;
                }
                out.extend_from_slice(&bytes);
            }
            None => {}
        }
    }
    Ok((out, normalized))
}

#[test]
fn a_malformed_index_is_stored_as_plain_bytes_and_pulls_back_identical() -> Result<()> {
    let Some(a) = data::series_a() else {
        return Ok(());
    };
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let mut index = std::fs::read(a.files[0].path()?)?;
    // Cut off in the middle of a document, and a document's length prefix made to lie.
    index.truncate(index.len() / 2 + 12_345);
    index[5_000_000] ^= 0x5a;
    let mut wrong_field = index.clone();
    wrong_field[0] = 0x0b; // a group start: not the wire format of an Index at all
    for (name, bytes) in [("cut", &index), ("not-an-index", &wrong_field)] {
        let path = d.scratch().join(format!("{name}.scip"));
        std::fs::write(&path, bytes)?;
        let key = format!("commit/{name}");
        d.cli(&writer, &["--json", "push", NS, &key, p(&path)])?
            .success()?;
        let dest = d.scratch().join(format!("{name}.pulled"));
        d.cli(&writer, &["--json", "pull", NS, &key, "-o", p(&dest)])?
            .success()?;
        ensure!(
            same_bytes(&dest, &path)?,
            "{name} did not pull back identical"
        );
        // Lookups say the blob is no SCIP index (once the server has looked at it).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let out = loop {
            let out = d.cli(&writer, &["doc", NS, &key, "src/index.ts"])?;
            if !out.stderr.starts_with("unavailable: ") || std::time::Instant::now() > deadline {
                break out;
            }
        };
        ensure!(
            out.code() == Some(1)
                && out.stderr.starts_with("failed precondition: ")
                && out.stderr.contains("not a SCIP index"),
            "a document lookup on the {name} blob:\n{out}"
        );
    }
    Ok(())
}
