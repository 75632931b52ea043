//! Requests built to make the daemon lie or amplify, over real gRPC (the proto client, not
//! the CLI): a commit whose entry lengths lie while their sum and the whole-blob hash are
//! right is refused and sets no ref; ranged reads of a good ref return exactly the blob's
//! bytes in the range; a chunk Read naming one id thousands of times sends that chunk once.

use anyhow::{Result, bail, ensure};
use scipcache_proto::pb;
use scipcache_tests::{Daemon, DaemonOptions, NS};
use tonic::Code;
use tonic::codegen::Bytes;

use crate::bad_input::{Blob, Raw, expect_code, generated};

/// Uploads every chunk of `blob` and commits it under `key`.
async fn push(raw: &Raw, blob: &Blob, key: &str, spec: pb::ChunkerSpec) -> Result<()> {
    raw.upload((0..blob.chunks.len()).map(|i| blob.frame(i)).collect())
        .await?;
    raw.commit(vec![
        blob.header(key, spec),
        blob.entries(0..blob.chunks.len()),
    ])
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_commit_whose_entry_lengths_lie_but_add_up_is_invalid_argument_and_sets_no_ref()
-> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let raw = Raw::connect(&d, d.token("acme", &["web/app:write"], "1h")?).await?;
    let spec = raw.chunker().await?;
    let blob = Blob::new(generated(&d, "blob", 400 * 1024, 21)?, spec)?;
    let n = blob.chunks.len();
    ensure!(n >= 2, "want several chunks, got {n}");
    raw.upload((0..n).map(|i| blob.frame(i)).collect()).await?;

    // Entry 0 claims 1000 bytes more than its chunk holds, entry 1 1000 fewer: the total and
    // the whole-blob id (in the header) still match.
    let mut lying = blob.entries(0..n);
    let Some(pb::commit_request::Part::Entries(batch)) = lying.part.as_mut() else {
        bail!("entries() built no entry batch");
    };
    batch.entries[0].len += 1000;
    batch.entries[1].len -= 1000;
    let status = expect_code(
        "commit with lying entry lengths",
        raw.commit(vec![blob.header("commit/lying", spec), lying])
            .await,
        Code::InvalidArgument,
    )?;
    ensure!(
        status.message().contains("length"),
        "the refusal should say which length is wrong: {:?}",
        status.message()
    );
    expect_code(
        "ref after the refused commit",
        raw.get_ref("commit/lying").await,
        Code::NotFound,
    )?;

    // The same chunks with honest lengths commit fine.
    raw.commit(vec![blob.header("commit/honest", spec), blob.entries(0..n)])
        .await?;
    raw.get_ref("commit/honest").await?;
    Ok(())
}

fn range_request(key: &str, offset: u64, length: u64) -> pb::ReadBlobRequest {
    pb::ReadBlobRequest {
        namespace: NS.to_owned(),
        key: key.to_owned(),
        fallback_prefixes: Vec::new(),
        offset,
        length,
        accept_frames: false,
        restores_versions: false,
    }
}

/// `Blobs/Read` of `length` bytes (0 = to the end) from `offset`, as raw data.
pub(crate) async fn read_range(raw: &Raw, key: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
    let mut stream = raw
        .blobs()
        .read(raw.req(range_request(key, offset, length)))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(pb::read_blob_response::Part::Data(bytes)) => out.extend_from_slice(&bytes),
            Some(pb::read_blob_response::Part::Ref(_)) => {}
            other => bail!("a raw read sent {other:?}"),
        }
    }
    Ok(out)
}

#[tokio::test]
async fn ranged_reads_return_exactly_the_blobs_bytes_in_the_range() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let raw = Raw::connect(&d, d.token("acme", &["web/app:write"], "1h")?).await?;
    let spec = raw.chunker().await?;
    let blob = Blob::new(generated(&d, "blob", 600 * 1024, 22)?, spec)?;
    ensure!(blob.chunks.len() >= 3, "want several chunks");
    push(&raw, &blob, "commit/good", spec).await?;

    let size = blob.data.len() as u64;
    let first_end = blob.chunks[0].end as u64;
    let second_end = blob.chunks[1].end as u64;
    let ranges = [
        (0, 0),
        (0, 1),
        (0, first_end),
        (first_end - 1, 2),
        (first_end, second_end - first_end),
        (first_end - 1000, 2000),
        (first_end + 17, 100_000),
        (size - 1, 0),
        (size - 1, 1),
        (size - 10, 1000),
        (size, 0),
        (1, size + 1000),
    ];
    let mut wrong = Vec::new();
    for (offset, length) in ranges {
        let got = read_range(&raw, "commit/good", offset, length).await?;
        let start = usize::try_from(offset)?;
        let end = if length == 0 {
            blob.data.len()
        } else {
            usize::try_from((offset + length).min(size))?
        };
        if got != blob.data[start..end] {
            wrong.push(format!(
                "offset {offset} length {length}: {} bytes, want {} (the blob's bytes {start}..{end})",
                got.len(),
                end - start
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "ranged reads returned other bytes:\n{}",
        wrong.join("\n")
    );
    let past_end = raw
        .blobs()
        .read(raw.req(range_request("commit/good", size + 1, 0)))
        .await
        .map(|_| ());
    expect_code("a read past the end", past_end, Code::OutOfRange)?;
    Ok(())
}

#[tokio::test]
async fn a_chunk_read_naming_one_id_many_times_sends_it_once() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let raw = Raw::connect(&d, d.token("acme", &["web/app:write"], "1h")?).await?;
    let spec = raw.chunker().await?;
    let blob = Blob::new(generated(&d, "blob", 400 * 1024, 23)?, spec)?;
    ensure!(blob.chunks.len() >= 2, "want several chunks");
    push(&raw, &blob, "commit/dups", spec).await?;

    let (first, second) = (blob.id(0), blob.id(1));
    let mut ids: Vec<Bytes> =
        vec![Bytes::copy_from_slice(&first); scipcache_proto::MAX_IDS_PER_REQUEST - 1];
    ids.insert(1, Bytes::copy_from_slice(&second));
    let request_bytes: usize = ids.iter().map(|id| id.len() + 2).sum();
    let mut stream = raw
        .chunks()
        .read(raw.req(pb::ReadChunksRequest {
            namespace: NS.to_owned(),
            key: "commit/dups".to_owned(),
            ids,
        }))
        .await?
        .into_inner();
    let (mut frames, mut bytes) = (Vec::new(), 0usize);
    while let Some(frame) = stream.message().await? {
        bytes += frame.frame.len();
        frames.push(frame.id.to_vec());
    }
    eprintln!(
        "hostile_reads: a {request_bytes}-byte Read of {} ids ({} distinct) returned {} frames, \
         {bytes} bytes",
        scipcache_proto::MAX_IDS_PER_REQUEST,
        2,
        frames.len()
    );
    ensure!(
        frames == [first.to_vec(), second.to_vec()],
        "want each chunk once, in the order first named; got {} frames",
        frames.len()
    );
    let chunk_bytes = blob.chunks[0].len() + blob.chunks[1].len();
    ensure!(
        bytes <= chunk_bytes + 64,
        "{bytes} bytes returned for two chunks of {chunk_bytes} bytes"
    );
    Ok(())
}
