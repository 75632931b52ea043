//! A message over the daemon's message size limit (16 MiB, `ServerInfo.max_message_bytes`)
//! is refused with `RESOURCE_EXHAUSTED` naming the limit, gRPC's convention, not tonic's
//! own `OUT_OF_RANGE` (which callers read as "offset past the end of a blob"): in a unary
//! call and in a stream.

use anyhow::{Result, bail, ensure};
use scipcache_proto::pb;
use scipcache_proto::pb::chunks_client::ChunksClient;
use scipcache_tests::{Daemon, DaemonOptions, NS};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The daemon's limit.
const LIMIT: usize = scipcache_proto::MAX_MESSAGE_BYTES;
/// What this test's client lets itself send: well over the limit.
const CLIENT_LIMIT: usize = 4 * LIMIT;

fn authed<T>(token: &str, msg: T) -> Result<Request<T>> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        scipcache_proto::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(req)
}

fn expect_over_limit<T: std::fmt::Debug>(what: &str, got: Result<T, Status>) -> Result<()> {
    let status = match got {
        Ok(v) => bail!("{what}: an oversized message was accepted: {v:?}"),
        Err(status) => status,
    };
    ensure!(
        status.code() == Code::ResourceExhausted,
        "{what}: want RESOURCE_EXHAUSTED, got {:?}: {}",
        status.code(),
        status.message()
    );
    ensure!(
        status.message().contains(&format!("{LIMIT} bytes")),
        "{what}: the message must name the limit of {LIMIT} bytes: {}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted_naming_the_limit() -> Result<()> {
    let d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let channel = Channel::from_shared(d.url())?.connect().await?;
    let chunks = || {
        ChunksClient::new(channel.clone())
            .max_encoding_message_size(CLIENT_LIMIT)
            .max_decoding_message_size(CLIENT_LIMIT)
    };

    // Unary: 600,000 ids of 32 bytes are about 20 MB.
    let find = pb::FindMissingRequest {
        namespace: NS.to_owned(),
        ids: (0..600_000).map(|_| vec![7u8; 32].into()).collect(),
    };
    expect_over_limit(
        "FindMissing",
        chunks().find_missing(authed(&token, find)?).await,
    )?;

    // Client stream: one upload message holding a 17 MiB frame.
    let upload = pb::UploadRequest {
        namespace: NS.to_owned(),
        chunks: vec![pb::ChunkFrame {
            id: vec![1u8; 32].into(),
            frame: vec![0u8; LIMIT + (1 << 20)].into(),
            restored: false,
            normalized: false,
        }],
    };
    let stream = futures::stream::iter([upload]);
    expect_over_limit("Upload", chunks().upload(authed(&token, stream)?).await)?;

    // The connection and the daemon are still fine.
    let small = pb::FindMissingRequest {
        namespace: NS.to_owned(),
        ids: vec![vec![7u8; 32].into()],
    };
    let missing = chunks().find_missing(authed(&token, small)?).await?;
    ensure!(missing.into_inner().missing.len() == 1);
    Ok(())
}
