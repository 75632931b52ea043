//! Bad input is refused with the contract's codes: malformed names by the CLI itself (exit 2),
//! and crafted gRPC requests by the daemon (FAILED_PRECONDITION listing absent chunks,
//! INVALID_ARGUMENT for lying chunks and ids of the wrong length), while a stream cut off
//! midway leaves no ref and a healthy daemon, and a CLI killed midway through a push leaves
//! no ref and the chunks it uploaded, which the next push skips.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_proto::pb;
use scipcache_proto::pb::blobs_client::BlobsClient;
use scipcache_proto::pb::chunks_client::ChunksClient;
use scipcache_proto::pb::info_client::InfoClient;
use scipcache_proto::pb::refs_client::RefsClient;
use scipcache_tests::{
    Daemon, DaemonOptions, FED_BEFORE_A_STALL, NS, Spawned, blake3_file, http_get, write_generated,
};
use scipcache_tiers::chunking::ChunkerSpec;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::common::{p, u64_field};

/// Message size both sides accept (the proto crate's limit).
const MAX_MESSAGE: usize = scipcache_proto::MAX_MESSAGE_BYTES;

// ---- raw gRPC helpers -------------------------------------------------------------------

pub(crate) struct Raw {
    channel: Channel,
    token: String,
}

impl Raw {
    pub(crate) async fn connect(d: &Daemon, token: String) -> Result<Self> {
        let channel = Channel::from_shared(d.url())?.connect().await?;
        Ok(Self { channel, token })
    }

    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert(
            scipcache_proto::AUTHORIZATION,
            format!("Bearer {}", self.token)
                .parse()
                .expect("ASCII token"),
        );
        req
    }

    pub(crate) fn chunks(&self) -> ChunksClient<Channel> {
        ChunksClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub(crate) fn blobs(&self) -> BlobsClient<Channel> {
        BlobsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub(crate) async fn chunker(&self) -> Result<pb::ChunkerSpec> {
        let info = InfoClient::new(self.channel.clone())
            .get_server_info(self.req(pb::GetServerInfoRequest {}))
            .await?
            .into_inner();
        info.chunker.context("ServerInfo has no chunker")
    }

    pub(crate) async fn upload(
        &self,
        frames: Vec<pb::ChunkFrame>,
    ) -> Result<pb::UploadResponse, Status> {
        let msg = pb::UploadRequest {
            namespace: NS.to_owned(),
            chunks: frames,
        };
        self.chunks()
            .upload(self.req(futures::stream::iter([msg])))
            .await
            .map(tonic::Response::into_inner)
    }

    pub(crate) async fn commit(
        &self,
        msgs: Vec<pb::CommitRequest>,
    ) -> Result<pb::CommitResponse, Status> {
        self.blobs()
            .commit(self.req(futures::stream::iter(msgs)))
            .await
            .map(tonic::Response::into_inner)
    }

    pub(crate) async fn get_ref(&self, key: &str) -> Result<pb::RefInfo, Status> {
        RefsClient::new(self.channel.clone())
            .get(self.req(pb::GetRefRequest {
                namespace: NS.to_owned(),
                key: key.to_owned(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A blob cut the way the server cuts: its bytes, chunk ranges and ids.
pub(crate) struct Blob {
    pub(crate) data: Vec<u8>,
    pub(crate) chunks: Vec<std::ops::Range<usize>>,
}

impl Blob {
    pub(crate) fn new(data: Vec<u8>, spec: pb::ChunkerSpec) -> Result<Self> {
        let spec = ChunkerSpec::try_from(spec)?;
        let chunks = spec.splitter()?.cut_all(&data).collect();
        Ok(Self { data, chunks })
    }

    pub(crate) fn id(&self, i: usize) -> [u8; 32] {
        *blake3::hash(&self.data[self.chunks[i].clone()]).as_bytes()
    }

    pub(crate) fn frame(&self, i: usize) -> pb::ChunkFrame {
        pb::ChunkFrame {
            id: self.id(i).to_vec().into(),
            frame: raw_frame(&self.data[self.chunks[i].clone()]).into(),
            restored: false,
            normalized: false,
        }
    }

    pub(crate) fn header(&self, key: &str, spec: pb::ChunkerSpec) -> pb::CommitRequest {
        pb::CommitRequest {
            part: Some(pb::commit_request::Part::Header(pb::CommitHeader {
                namespace: NS.to_owned(),
                key: key.to_owned(),
                blob: blake3::hash(&self.data).as_bytes().to_vec().into(),
                size: self.data.len() as u64,
                chunker: Some(spec),
                chunk_count: self.chunks.len() as u64,
                ttl_seconds: 0,
                labels: Default::default(),
                scip_splitter: 0,
                versions: Vec::new(),
            })),
        }
    }

    pub(crate) fn entries(&self, range: std::ops::Range<usize>) -> pb::CommitRequest {
        pb::CommitRequest {
            part: Some(pb::commit_request::Part::Entries(pb::EntryBatch {
                entries: range
                    .map(|i| pb::ManifestEntry {
                        id: self.id(i).to_vec().into(),
                        len: u32::try_from(self.chunks[i].len()).expect("chunk < 4 GiB"),
                        normalized: false,
                    })
                    .collect(),
            })),
        }
    }
}

/// A format-1 frame storing `raw` uncompressed: `0xC1`, codec 0, raw length (u32 LE), bytes.
pub(crate) fn raw_frame(raw: &[u8]) -> Vec<u8> {
    let mut f = vec![0xC1, 0];
    f.extend_from_slice(&u32::try_from(raw.len()).expect("small").to_le_bytes());
    f.extend_from_slice(raw);
    f
}

pub(crate) fn generated(d: &Daemon, name: &str, len: u64, seed: u64) -> Result<Vec<u8>> {
    let path = d.scratch().join(name);
    write_generated(&path, len, seed)?;
    Ok(std::fs::read(path)?)
}

pub(crate) fn expect_code<T: std::fmt::Debug>(
    what: &str,
    got: Result<T, Status>,
    want: Code,
) -> Result<Status> {
    match got {
        Err(status) if status.code() == want => Ok(status),
        Err(status) => bail!(
            "{what}: want {want:?}, got {:?}: {}",
            status.code(),
            status.message()
        ),
        Ok(v) => bail!("{what}: want {want:?}, got success {v:?}"),
    }
}

// ---- tests ------------------------------------------------------------------------------

#[test]
fn cli_rejects_malformed_namespaces_and_keys_with_exit_2() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let writer = d.token("acme", &["*:write"], "1h")?;
    let file = d.scratch().join("f");
    std::fs::write(&file, b"hello")?;
    let dest = d.scratch().join("out");
    let long_part = "a".repeat(64);
    let long_key = "k".repeat(257);
    let bad_namespaces = [
        "Acme/web/app".to_owned(),
        "acme/web".to_owned(),
        "acme/web/app/extra".to_owned(),
        "acme//app".to_owned(),
        "-acme/web/app".to_owned(),
        "acme/we b/app".to_owned(),
        format!("acme/{long_part}/app"),
        String::new(),
    ];
    let bad_keys = [
        String::new(),
        "commit//abc".to_owned(),
        "commit/../abc".to_owned(),
        "./abc".to_owned(),
        "commit/abc/".to_owned(),
        "/commit".to_owned(),
        "commit/a b".to_owned(),
        "commit/ü".to_owned(),
        long_key,
    ];
    let mut failures = Vec::new();
    let mut check = |args: &[&str]| -> Result<()> {
        let out = d.cli(&writer, args)?;
        if out.code() != Some(2) || out.stderr.trim().is_empty() {
            failures.push(format!("want exit 2 and a reason on stderr:\n{out}"));
        }
        Ok(())
    };
    for ns in &bad_namespaces {
        check(&["push", ns, "commit/abc", p(&file)])?;
        check(&["pull", ns, "commit/abc", "-o", p(&dest)])?;
        check(&["ls", ns])?;
        check(&["rm", ns, "commit/abc"])?;
    }
    for key in &bad_keys {
        check(&["push", NS, key, p(&file)])?;
        check(&["pull", NS, key, "-o", p(&dest)])?;
        check(&["rm", NS, key])?;
    }
    // Without -o the blob goes to stdout, so --json (which owns stdout) needs -o.
    check(&["--json", "pull", NS, "commit/abc"])?;
    if !failures.is_empty() {
        bail!(
            "{} bad usages not refused with exit 2:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }

    // The longest legal names are accepted (the checks are not off by one).
    let ns = format!("acme/{}/app", "a".repeat(63));
    let key = format!("k/{}", "k".repeat(254));
    d.cli(&writer, &["push", &ns, &key, p(&file)])?.success()?;
    d.cli(&writer, &["pull", &ns, &key, "-o", p(&dest)])?
        .success()?;
    ensure!(std::fs::read(&dest)? == b"hello");
    Ok(())
}

#[tokio::test]
async fn commit_naming_absent_chunks_fails_precondition_listing_them() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let raw = Raw::connect(&d, d.token("acme", &["web/app:write"], "1h")?).await?;
    let spec = raw.chunker().await?;
    let blob = Blob::new(generated(&d, "blob", 400 * 1024, 5)?, spec)?;
    ensure!(
        blob.chunks.len() >= 4,
        "want several chunks, got {}",
        blob.chunks.len()
    );
    let n = blob.chunks.len();
    let all_entries = || vec![blob.header("commit/partial", spec), blob.entries(0..n)];

    // Only chunk 0 is uploaded: the commit names the others as absent.
    raw.upload(vec![blob.frame(0)]).await?;
    let status = expect_code(
        "commit naming absent chunks",
        raw.commit(all_entries()).await,
        Code::FailedPrecondition,
    )?;
    let message = status.message();
    let unlisted: Vec<String> = (1..n)
        .map(|i| hex(&blob.id(i)))
        .filter(|id| !message.contains(id.as_str()))
        .collect();
    ensure!(
        unlisted.is_empty(),
        "FAILED_PRECONDITION must list every absent chunk (lowercase hex); missing {unlisted:?} \
         in {message:?}"
    );
    ensure!(
        !message.contains(&hex(&blob.id(0))),
        "the uploaded chunk is listed as absent: {message:?}"
    );
    expect_code(
        "ref after a refused commit",
        raw.get_ref("commit/partial").await,
        Code::NotFound,
    )?;

    // Upload what was listed and retry: the commit succeeds and the blob reads back.
    raw.upload((1..n).map(|i| blob.frame(i)).collect()).await?;
    let done = raw.commit(all_entries()).await?;
    let info = done.r#ref.context("CommitResponse without ref")?;
    ensure!(info.blob.as_ref() == blake3::hash(&blob.data).as_bytes());
    let dest = d.scratch().join("pulled");
    let token = d.token("acme", &["web/app:read"], "1h")?;
    d.cli(&token, &["pull", NS, "commit/partial", "-o", p(&dest)])?
        .success()?;
    ensure!(std::fs::read(&dest)? == blob.data, "pulled bytes differ");
    Ok(())
}

#[tokio::test]
async fn chunk_whose_bytes_do_not_match_its_id_is_invalid_argument() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let raw = Raw::connect(&d, d.token("acme", &["web/app:write"], "1h")?).await?;
    let real = b"the bytes actually sent".to_vec();
    let claimed = *blake3::hash(b"the bytes the id promises").as_bytes();
    let lying = pb::ChunkFrame {
        id: claimed.to_vec().into(),
        frame: raw_frame(&real).into(),
        restored: false,
        normalized: false,
    };
    let status = expect_code(
        "upload of a chunk whose bytes do not match its id",
        raw.upload(vec![lying]).await,
        Code::InvalidArgument,
    )?;
    eprintln!("bad_input: lying chunk refused: {}", status.message());

    // A frame whose header declares more bytes than it carries.
    let mut short = raw_frame(&real);
    short[2] = short[2].wrapping_add(10);
    let status = expect_code(
        "upload of a truncated frame",
        raw.upload(vec![pb::ChunkFrame {
            id: blake3::hash(&real).as_bytes().to_vec().into(),
            frame: short.into(),
            restored: false,
            normalized: false,
        }])
        .await,
        Code::InvalidArgument,
    )?;
    eprintln!("bad_input: truncated frame refused: {}", status.message());

    // Nothing was stored under either id.
    let missing = raw
        .chunks()
        .find_missing(raw.req(pb::FindMissingRequest {
            namespace: NS.to_owned(),
            ids: vec![
                claimed.to_vec().into(),
                blake3::hash(&real).as_bytes().to_vec().into(),
            ],
        }))
        .await?
        .into_inner()
        .missing;
    ensure!(
        missing.len() == 2,
        "a refused chunk was stored: missing = {missing:?}"
    );
    Ok(())
}

#[tokio::test]
async fn ids_of_wrong_length_are_invalid_argument() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let raw = Raw::connect(&d, token.clone()).await?;
    let spec = raw.chunker().await?;
    let blob = Blob::new(generated(&d, "blob", 100 * 1024, 6)?, spec)?;

    let status = raw
        .chunks()
        .find_missing(raw.req(pb::FindMissingRequest {
            namespace: NS.to_owned(),
            ids: vec![vec![7u8; 31].into()],
        }))
        .await;
    expect_code(
        "FindMissing with a 31-byte id",
        status,
        Code::InvalidArgument,
    )?;

    let mut frame = blob.frame(0);
    frame.id = vec![7u8; 33].into();
    expect_code(
        "Upload with a 33-byte id",
        raw.upload(vec![frame]).await,
        Code::InvalidArgument,
    )?;

    raw.upload((0..blob.chunks.len()).map(|i| blob.frame(i)).collect())
        .await?;
    let mut header = blob.header("commit/short-blob-id", spec);
    if let Some(pb::commit_request::Part::Header(h)) = &mut header.part {
        h.blob = vec![1u8; 16].into();
    }
    expect_code(
        "Commit with a 16-byte blob id",
        raw.commit(vec![header, blob.entries(0..blob.chunks.len())])
            .await,
        Code::InvalidArgument,
    )?;

    let mut entries = blob.entries(0..blob.chunks.len());
    if let Some(pb::commit_request::Part::Entries(e)) = &mut entries.part {
        e.entries[0].id = vec![2u8; 31].into();
    }
    expect_code(
        "Commit with a 31-byte chunk id in the manifest",
        raw.commit(vec![blob.header("commit/short-chunk-id", spec), entries])
            .await,
        Code::InvalidArgument,
    )?;

    // Chunk reads by id of an existing blob.
    raw.commit(vec![
        blob.header("commit/ok", spec),
        blob.entries(0..blob.chunks.len()),
    ])
    .await?;
    let read = raw
        .chunks()
        .read(raw.req(pb::ReadChunksRequest {
            namespace: NS.to_owned(),
            key: "commit/ok".to_owned(),
            ids: vec![vec![3u8; 5].into()],
        }))
        .await;
    let read = match read {
        Ok(resp) => {
            // The error may come as the first stream item.
            let mut stream = resp.into_inner();
            match stream.message().await {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) => Err(Status::ok("empty stream")),
                Err(s) => Err(s),
            }
        }
        Err(s) => Err(s),
    };
    expect_code("Chunks.Read with a 5-byte id", read, Code::InvalidArgument)?;

    for key in ["commit/short-blob-id", "commit/short-chunk-id"] {
        expect_code(
            "ref of a refused commit",
            raw.get_ref(key).await,
            Code::NotFound,
        )?;
    }
    Ok(())
}

#[tokio::test]
async fn stream_cut_off_midway_leaves_no_ref_and_daemon_healthy() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let raw = Raw::connect(&d, token.clone()).await?;
    let spec = raw.chunker().await?;
    let blob = Blob::new(generated(&d, "blob", 3 * 1024 * 1024, 8)?, spec)?;
    let n = blob.chunks.len();

    // Upload: the first half of the frames, then the call is dropped (RST_STREAM).
    let (tx, rx) = mpsc::channel(4);
    let mut chunks = raw.chunks();
    let req = raw.req(ReceiverStream::new(rx));
    let call = tokio::spawn(async move { chunks.upload(req).await });
    tx.send(pb::UploadRequest {
        namespace: NS.to_owned(),
        chunks: (0..n / 2).map(|i| blob.frame(i)).collect(),
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    let _ = call.await;
    drop(tx);

    // Commit: every chunk present, the header and half of the entries, then dropped.
    raw.upload((0..n).map(|i| blob.frame(i)).collect()).await?;
    let (tx, rx) = mpsc::channel(4);
    let mut blobs = raw.blobs();
    let req = raw.req(ReceiverStream::new(rx));
    let call = tokio::spawn(async move { blobs.commit(req).await });
    tx.send(blob.header("commit/cut", spec)).await?;
    tx.send(blob.entries(0..n / 2)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    let _ = call.await;
    drop(tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    expect_code(
        "ref after a cut-off commit",
        raw.get_ref("commit/cut").await,
        Code::NotFound,
    )?;

    // The daemon is healthy: alive, /healthz 200, and a push + pull round-trips.
    let health = http_get(d.metrics_addr(), "/healthz")?;
    ensure!(
        health.status == 200,
        "/healthz after cut-off streams: {}",
        health.status
    );
    let dest = d.scratch().join("pulled");
    let small = d.scratch().join("small");
    let b3 = write_generated(&small, 100 * 1024, 10)?;
    d.cli(&token, &["push", NS, "commit/after", p(&small)])?
        .success()?;
    d.cli(&token, &["pull", NS, "commit/after", "-o", p(&dest)])?
        .success()?;
    ensure!(blake3_file(&dest)? == b3);
    Ok(())
}

#[test]
fn cli_killed_midway_through_a_push_sets_no_ref_and_the_next_push_resumes() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let big = d.scratch().join("big.bin");
    let big_b3 = write_generated(&big, 48 * 1024 * 1024, 9)?;

    // The push reads a pipe fed with the blob's first bytes, which then stalls: the CLI
    // uploads its first windows and can get no further, so the kill lands midway for sure.
    let (mut push, mut stdin) = Spawned::spawn_with_stdin(
        d.cli_command(Some(&token), &["push", NS, "commit/killed", "/dev/stdin"]),
    )?;
    let mut fed = vec![0u8; FED_BEFORE_A_STALL];
    std::fs::File::open(&big)?.read_exact(&mut fed)?;
    let (release, released) = std::sync::mpsc::channel::<()>();
    let feeder = std::thread::spawn(move || {
        // Fails with EPIPE if the CLI is gone before it read everything: fine either way.
        let _ = stdin.write_all(&fed);
        let _ = released.recv();
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let stored_before_kill = loop {
        let n = d.hot_chunks(&admin)?;
        if n > 0 {
            break n;
        }
        ensure!(
            !push.has_exited()?,
            "the push ended before the daemon stored a chunk:\n{}",
            push.kill9()?
        );
        ensure!(
            Instant::now() < deadline,
            "the daemon stored no chunk of the push within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = push.kill9()?;
    ensure!(
        out.code().is_none(),
        "the push must still be running when it is killed:\n{out}"
    );
    let _ = release.send(());
    let _ = feeder.join();

    // No ref, and the daemon is healthy.
    let dest = d.scratch().join("pulled");
    let pull = d.cli(&token, &["pull", NS, "commit/killed", "-o", p(&dest)])?;
    ensure!(
        pull.code() == Some(3),
        "a push killed midway must leave no ref (pull exits 3):\n{pull}"
    );
    let health = http_get(d.metrics_addr(), "/healthz")?;
    ensure!(
        health.status == 200,
        "/healthz after a killed push: {}",
        health.status
    );

    // Pushing the whole file again sends only what did not make it. The baseline is the same
    // push into another tenant, which shares no chunks.
    let resumed = d
        .cli(&token, &["--json", "push", NS, "commit/killed", p(&big)])?
        .success()?
        .json()?;
    let other = d.token("other", &["web/app:write"], "1h")?;
    let fresh = d
        .cli(
            &other,
            &["--json", "push", "other/web/app", "commit/killed", p(&big)],
        )?
        .success()?
        .json()?;
    let chunks = u64_field(&fresh, "chunks")?;
    ensure!(
        u64_field(&fresh, "new_chunks")? == chunks,
        "fresh push: {fresh}"
    );
    ensure!(
        stored_before_kill < chunks,
        "the killed push stored {stored_before_kill} chunks, but the blob has {chunks}"
    );
    ensure!(
        u64_field(&resumed, "new_chunks")? <= chunks - stored_before_kill,
        "the {stored_before_kill} chunks stored before the kill must be kept: {resumed}"
    );
    ensure!(
        u64_field(&resumed, "bytes_sent")? < u64_field(&fresh, "bytes_sent")?,
        "the resumed push must send less than a full one: {resumed} vs {fresh}"
    );
    d.cli(&token, &["pull", NS, "commit/killed", "-o", p(&dest)])?
        .success()?;
    ensure!(
        blake3_file(&dest)? == big_b3,
        "the resumed push pulls wrong bytes"
    );
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
