//! Commits and uploads are bounded in memory. A commit naming millions of chunks the daemon
//! lacks costs it a small multiple of the commit's wire size and is answered
//! `FAILED_PRECONDITION` with a bounded listing; the shared `--request-memory` budget makes an
//! upload beyond it wait and then fail with `RESOURCE_EXHAUSTED`, refuses at once a commit
//! larger than the whole budget, and lets pushes within it work.
//!
//! Memory is the daemon's `VmHWM` (peak resident set). It also counts LMDB map pages the
//! daemon touched, but looking up absent ids in a fresh data dir touches only a few.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use prost::Message;
use scipcache_proto::pb;
use scipcache_proto::pb::blobs_client::BlobsClient;
use scipcache_proto::pb::chunks_client::ChunksClient;
use scipcache_proto::pb::commit_request::Part;
use scipcache_proto::pb::info_client::InfoClient;
use scipcache_tests::{Daemon, DaemonOptions, NS, http_get, write_generated};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::common::{mib, p, str_field};

/// Absent chunks named by the large commit: the most one manifest may hold.
const ABSENT: usize = 4 << 20;
/// The daemon may hold this multiple of a commit's wire size…
const WIRE_MULTIPLE: u64 = 2;
/// …above this, which covers its own baseline (runtime, LMDB map pages, buffers).
const BASE: u64 = 128 << 20;
/// The budget of the small daemon: room for the client's three uploads in flight (about
/// 4 MiB each), not for a stalled upload's 3.5 MiB beside a 10 MiB message.
const SMALL_BUDGET: &str = "12MiB";
const STALLED_CHUNKS: usize = 56;
const SECOND_CHUNKS: usize = 160;
const CHUNK: usize = 64 << 10;
/// A hang detector for waiting on the daemon, not a speed check.
const PATIENCE: Duration = Duration::from_secs(120);

fn req<T>(token: &str, msg: T) -> Result<Request<T>> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        scipcache_proto::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(req)
}

fn blobs(channel: &Channel) -> BlobsClient<Channel> {
    BlobsClient::new(channel.clone())
        .max_decoding_message_size(scipcache_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(scipcache_proto::MAX_MESSAGE_BYTES)
}

fn chunks(channel: &Channel) -> ChunksClient<Channel> {
    ChunksClient::new(channel.clone())
        .max_decoding_message_size(scipcache_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(scipcache_proto::MAX_MESSAGE_BYTES)
}

async fn chunker(channel: &Channel, token: &str) -> Result<pb::ChunkerSpec> {
    let info = InfoClient::new(channel.clone())
        .get_server_info(req(token, pb::GetServerInfoRequest {})?)
        .await?
        .into_inner();
    info.chunker.context("ServerInfo has no chunker")
}

/// A commit header for `count` chunks of `len` bytes each.
fn header(key: &str, spec: pb::ChunkerSpec, count: usize, len: u32) -> pb::CommitRequest {
    pb::CommitRequest {
        part: Some(Part::Header(pb::CommitHeader {
            namespace: NS.to_owned(),
            key: key.to_owned(),
            blob: blake3::hash(key.as_bytes()).as_bytes().to_vec().into(),
            size: count as u64 * u64::from(len),
            chunker: Some(spec),
            chunk_count: count as u64,
            ttl_seconds: 0,
            labels: Default::default(),
            scip_splitter: 0,
            versions: Vec::new(),
        })),
    }
}

/// A distinct id per index and seed, of no chunk anyone stored.
fn absent_id(seed: u64, i: usize) -> [u8; 32] {
    let mut id = [0xA5u8; 32];
    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
    id[8..16].copy_from_slice(&seed.to_le_bytes());
    id
}

/// `Blobs/Commit` of `count` absent chunks of `len` bytes, built as the stream is read;
/// returns the answer and the bytes it sent.
async fn commit_absent(
    channel: &Channel,
    token: &str,
    key: &str,
    count: usize,
    seed: u64,
) -> Result<(Result<pb::CommitResponse, Status>, u64)> {
    let spec = chunker(channel, token).await?;
    let len = spec.avg;
    let batch = scipcache_proto::ENTRIES_PER_BATCH;
    let batches = futures::stream::iter((0..count).step_by(batch)).map(move |start| {
        let entries = (start..(start + batch).min(count))
            .map(|i| pb::ManifestEntry {
                id: absent_id(seed, i).to_vec().into(),
                len,
                normalized: false,
            })
            .collect();
        pb::CommitRequest {
            part: Some(Part::Entries(pb::EntryBatch { entries })),
        }
    });
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let messages = futures::stream::iter([header(key, spec, count, len)])
        .chain(batches)
        .inspect(move |m| {
            counter.fetch_add(m.encoded_len() as u64, Ordering::Relaxed);
        });
    let answer = blobs(channel)
        .commit(req(token, messages)?)
        .await
        .map(tonic::Response::into_inner);
    Ok((answer, sent.load(Ordering::Relaxed)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_naming_four_mi_absent_chunks_costs_a_small_multiple_of_its_wire_size() -> Result<()>
{
    let d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let channel = Channel::from_shared(d.url())?.connect().await?;
    let started = d.peak_rss()?;
    let (answer, wire) = commit_absent(&channel, &token, "commit/absent", ABSENT, 1).await?;
    let peak = d.peak_rss()?;
    eprintln!(
        "request_memory: commit of {ABSENT} absent chunks: {:.0} MiB on the wire; daemon VmHWM \
         {:.0} MiB at start, {:.0} MiB after",
        mib(wire),
        mib(started),
        mib(peak)
    );
    let status = match answer {
        Ok(done) => bail!("a commit of absent chunks succeeded: {done:?}"),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::FailedPrecondition,
        "expected FAILED_PRECONDITION, got {status:?}"
    );
    ensure!(
        status.message().len() < 8 << 10,
        "the status message lists too much: {} bytes",
        status.message().len()
    );
    ensure!(
        status
            .message()
            .starts_with(&format!("{ABSENT} chunks are missing (first 64 listed)")),
        "{}",
        status.message()
    );
    let listed = status
        .metadata()
        .get_bin(scipcache_proto::MISSING_CHUNKS_METADATA)
        .context("no missing-chunks metadata")?
        .to_bytes()?;
    let listed = scipcache_proto::convert::decode_missing_chunks(&listed)?;
    ensure!(listed.total == ABSENT as u64, "total {}", listed.total);
    ensure!(
        listed.listed.len() == scipcache_proto::MAX_LISTED_MISSING,
        "{} ids listed",
        listed.listed.len()
    );
    ensure!(
        *listed.listed[0].as_bytes() == absent_id(1, 0),
        "the listing starts with the manifest's first absent chunk"
    );
    let bound = WIRE_MULTIPLE * wire + BASE;
    ensure!(
        peak < bound,
        "the daemon's peak RSS reached {:.0} MiB for a commit of {:.0} MiB (bound {:.0} MiB: \
         {WIRE_MULTIPLE}× the wire size + {:.0} MiB)",
        mib(peak),
        mib(wire),
        mib(bound),
        mib(BASE)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_commits_of_four_mi_absent_chunks_share_the_budget_within_one_commits_bound()
-> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let channel = Channel::from_shared(d.url())?.connect().await?;
    let started = d.peak_rss()?;
    let commits = (0..4u64).map(|i| {
        let (channel, token) = (channel.clone(), token.clone());
        tokio::spawn(async move {
            commit_absent(
                &channel,
                &token,
                &format!("commit/absent-{i}"),
                ABSENT,
                10 + i,
            )
            .await
        })
    });
    let mut wire = 0;
    let mut codes = Vec::new();
    for commit in futures::future::join_all(commits).await {
        let (answer, sent) = commit??;
        wire = wire.max(sent);
        match answer {
            Ok(done) => bail!("a commit of absent chunks succeeded: {done:?}"),
            Err(status) => codes.push(status.code()),
        }
    }
    let peak = d.peak_rss()?;
    eprintln!(
        "request_memory: four concurrent commits of {ABSENT} absent chunks ({:.0} MiB on the \
         wire each): answers {codes:?}; daemon VmHWM {:.0} MiB at start, {:.0} MiB after",
        mib(wire),
        mib(started),
        mib(peak)
    );
    // Each reserves its manifest (about 350 MB) from the 512 MiB budget before it reads its
    // entries, so they run one at a time; one that waits past --request-memory-wait is told
    // so.
    ensure!(
        codes
            .iter()
            .all(|c| matches!(c, Code::FailedPrecondition | Code::ResourceExhausted)),
        "every commit is answered missing chunks or resource exhausted: {codes:?}"
    );
    ensure!(
        codes.contains(&Code::FailedPrecondition),
        "at least one commit ran: {codes:?}"
    );
    let bound = WIRE_MULTIPLE * wire + BASE;
    ensure!(
        peak < bound,
        "four concurrent commits took the daemon's peak RSS to {:.0} MiB, beyond one commit's \
         bound of {:.0} MiB",
        mib(peak),
        mib(bound)
    );
    Ok(())
}

/// A chunk of `CHUNK` pseudo-random bytes, distinct per `i`, as an uncompressed frame.
fn chunk_frame(i: usize) -> pb::ChunkFrame {
    let mut raw = vec![0u8; CHUNK];
    blake3::Hasher::new()
        .update(&(i as u64).to_le_bytes())
        .finalize_xof()
        .fill(&mut raw);
    let mut frame = vec![0xC1, 0];
    frame.extend_from_slice(&u32::try_from(CHUNK).unwrap_or(u32::MAX).to_le_bytes());
    frame.extend_from_slice(&raw);
    pb::ChunkFrame {
        id: blake3::hash(&raw).as_bytes().to_vec().into(),
        frame: frame.into(),
        restored: false,
        normalized: false,
    }
}

fn upload_message(range: std::ops::Range<usize>) -> pb::UploadRequest {
    pb::UploadRequest {
        namespace: NS.to_owned(),
        chunks: range.map(chunk_frame).collect(),
    }
}

/// The daemon's `request_memory_reserved_bytes` gauge.
fn reserved(d: &Daemon) -> Result<u64> {
    let metrics = http_get(d.metrics_addr(), "/metrics")?;
    metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("scipcache_request_memory_reserved_bytes "))
        .context("no scipcache_request_memory_reserved_bytes in /metrics")?
        .trim()
        .parse()
        .context("reserved bytes is not a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_request_memory_budget_wait_then_fail_while_pushes_within_it_work()
-> Result<()> {
    let d = Daemon::start(
        DaemonOptions::new()
            .arg("--request-memory")
            .arg(SMALL_BUDGET)
            .env("SCIPCACHE_REQUEST_MEMORY_WAIT", "1s"),
    )?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let channel = Channel::from_shared(d.url())?.connect().await?;

    // An upload that sends 3.5 MiB of chunks (less than one store batch) and stalls holds
    // them, and the budget for them.
    let (tx, rx) = mpsc::channel(1);
    let mut stalled_client = chunks(&channel);
    let stalled_req = req(&token, ReceiverStream::new(rx))?;
    let stalled = tokio::spawn(async move { stalled_client.upload(stalled_req).await });
    tx.send(upload_message(0..STALLED_CHUNKS)).await?;
    let held = (STALLED_CHUNKS * CHUNK) as u64;
    let deadline = Instant::now() + PATIENCE;
    while reserved(&d)? < held {
        ensure!(
            Instant::now() < deadline,
            "the stalled upload never reserved its chunks"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A second upload of 10 MiB does not fit beside it: it waits, then is refused.
    let second = upload_message(1000..1000 + SECOND_CHUNKS);
    let refused = chunks(&channel)
        .upload(req(&token, futures::stream::iter([second]))?)
        .await;
    let status = match refused {
        Ok(done) => bail!("an upload beyond the budget succeeded: {done:?}"),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::ResourceExhausted,
        "expected RESOURCE_EXHAUSTED, got {status:?}"
    );
    for words in ["request-memory budget", "waited 1s", "--request-memory"] {
        ensure!(status.message().contains(words), "{}", status.message());
    }

    // A commit larger than the whole budget is refused at once, from its header.
    let spec = chunker(&channel, &token).await?;
    let big = blobs(&channel)
        .commit(req(
            &token,
            futures::stream::iter([header("commit/big", spec, 1 << 20, spec.avg)]),
        )?)
        .await;
    let status = match big {
        Ok(done) => bail!("a commit beyond the budget succeeded: {done:?}"),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::ResourceExhausted && status.message().contains("larger than"),
        "{status:?}"
    );

    // The stalled upload completes once its stream ends, and gives its budget back.
    drop(tx);
    let done = stalled.await??.into_inner();
    ensure!(
        done.stored == STALLED_CHUNKS as u64,
        "stalled upload: {done:?}"
    );

    // Pushes within the budget work: a 24 MiB blob goes out and comes back.
    let src = d.scratch().join("within.bin");
    let b3 = write_generated(&src, 24 << 20, 7)?;
    d.cli(&token, &["push", NS, "within/budget", p(&src)])?
        .success()?;
    let pulled = d.scratch().join("within.pulled");
    let pull = d
        .cli(
            &token,
            &["--json", "pull", NS, "within/budget", "-o", p(&pulled)],
        )?
        .success()?;
    ensure!(
        str_field(&pull.json()?, "blob")? == b3,
        "pulled blob differs"
    );
    ensure!(reserved(&d)? == 0, "budget still reserved after the calls");
    Ok(())
}
