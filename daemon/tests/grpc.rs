//! The gRPC API end to end, in process: `run_until_cancelled` on `127.0.0.1:0` with a real
//! store in a temp dir, driven by the generated clients.

use std::time::Duration;

use bytes::Bytes;
use scipcache_daemon::auth::{MintRequest, Secret, mint};
use scipcache_daemon::{Config, Error, run_until_cancelled};
use scipcache_proto::pb;
use scipcache_proto::pb::admin_client::AdminClient;
use scipcache_proto::pb::blobs_client::BlobsClient;
use scipcache_proto::pb::chunks_client::ChunksClient;
use scipcache_proto::pb::info_client::InfoClient;
use scipcache_proto::pb::refs_client::RefsClient;
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::codec::{Compression, Frame};
use scipcache_tiers::ids::{BlobId, ChunkId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

struct TestDaemon {
    channel: Channel,
    grpc: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
    secret: Secret,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
    _dir: tempfile::TempDir,
}

impl TestDaemon {
    /// Starts a daemon and waits until `/healthz` answers 200; fails if it stops first.
    async fn start() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Self::start_with(|_, _| {}).await
    }

    /// Like [`TestDaemon::start`], adjusting the configuration first (given the temp dir).
    async fn start_with(
        adjust: impl FnOnce(&mut Config, &std::path::Path),
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("hs256.key");
        std::fs::write(&key, [9u8; 48])?;
        let secret = Secret::read(&key)?;
        let mut config = Config {
            data_dir: dir.path().join("data"),
            jwt_key_file: Some(key),
            shutdown_grace: Duration::from_secs(2),
            ..Config::default()
        };
        adjust(&mut config, dir.path());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await?;
        let grpc = listener.local_addr()?;
        let metrics = metrics_listener.local_addr()?;
        let cancel = CancellationToken::new();
        let mut task = tokio::spawn(run_until_cancelled(
            config,
            listener,
            metrics_listener,
            cancel.clone(),
        ));
        // Ready once /healthz says so (or the daemon stopped).
        for _ in 0..400 {
            if task.is_finished() {
                return match (&mut task).await? {
                    Err(e) => Err(format!("the daemon failed to start: {e}").into()),
                    Ok(()) => Err("daemon stopped before it was ready".into()),
                };
            }
            if http_get(metrics, "/healthz")
                .await
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                // Lazy: TLS tests connect their own way.
                let channel = Channel::from_shared(format!("http://{grpc}"))?.connect_lazy();
                return Ok(Self {
                    channel,
                    grpc,
                    metrics,
                    secret,
                    cancel,
                    task,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err("daemon not ready within 10s".into())
    }

    fn token(&self, tenant: &str, scopes: &[&str]) -> Result<String, Error> {
        Ok(mint(
            &self.secret,
            &MintRequest {
                sub: "test".into(),
                tenant: tenant.into(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                ttl: Duration::from_secs(600),
                issuer: None,
                audience: None,
            },
        )?
        .token)
    }

    async fn stop(self) -> TestResult {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await???;
        Ok(())
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        req.metadata_mut().insert("authorization", value);
    }
    req
}

/// Deterministic, poorly compressible test data.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Blob {
    bytes: Vec<u8>,
    id: BlobId,
    chunks: Vec<(ChunkId, Frame, u32)>,
}

fn blob(len: usize, seed: u64) -> Result<Blob, scipcache_tiers::Error> {
    let bytes = data(len, seed);
    let splitter = ChunkerSpec::default().splitter()?;
    let mut chunks = Vec::new();
    for range in splitter.cut_all(&bytes) {
        let raw = &bytes[range];
        chunks.push((
            ChunkId::of(raw),
            Frame::encode(raw, Compression::Lz4)?,
            u32::try_from(raw.len()).unwrap_or(u32::MAX),
        ));
    }
    Ok(Blob {
        id: BlobId::of(&bytes),
        bytes,
        chunks,
    })
}

fn id_bytes(id: &ChunkId) -> Bytes {
    Bytes::copy_from_slice(id.as_bytes())
}

async fn upload(
    d: &TestDaemon,
    token: &str,
    ns: &str,
    chunks: Vec<pb::ChunkFrame>,
) -> Result<pb::UploadResponse, tonic::Status> {
    let first = pb::UploadRequest {
        namespace: ns.into(),
        chunks,
    };
    let stream = tokio_stream::iter(vec![first]);
    ChunksClient::new(d.channel.clone())
        .upload(authed(token, stream))
        .await
        .map(tonic::Response::into_inner)
}

async fn commit(
    d: &TestDaemon,
    token: &str,
    ns: &str,
    key: &str,
    b: &Blob,
) -> Result<pb::CommitResponse, tonic::Status> {
    let header = pb::CommitRequest {
        part: Some(pb::commit_request::Part::Header(pb::CommitHeader {
            namespace: ns.into(),
            key: key.into(),
            blob: Bytes::copy_from_slice(b.id.as_bytes()),
            size: b.bytes.len() as u64,
            chunker: Some(ChunkerSpec::default().into()),
            chunk_count: b.chunks.len() as u64,
            ttl_seconds: 0,
            labels: [("ci".to_owned(), "yes".to_owned())].into_iter().collect(),
            scip_splitter: 0,
            versions: Vec::new(),
        })),
    };
    let entries = pb::CommitRequest {
        part: Some(pb::commit_request::Part::Entries(pb::EntryBatch {
            entries: b
                .chunks
                .iter()
                .map(|(id, _, len)| pb::ManifestEntry {
                    id: id_bytes(id),
                    len: *len,
                    normalized: false,
                })
                .collect(),
        })),
    };
    BlobsClient::new(d.channel.clone())
        .commit(authed(token, tokio_stream::iter(vec![header, entries])))
        .await
        .map(tonic::Response::into_inner)
}

async fn push(d: &TestDaemon, token: &str, ns: &str, key: &str, b: &Blob) -> TestResult {
    let frames = b
        .chunks
        .iter()
        .map(|(id, frame, _)| pb::ChunkFrame {
            id: id_bytes(id),
            frame: frame.as_bytes().clone(),
            restored: false,
            normalized: false,
        })
        .collect();
    upload(d, token, ns, frames).await?;
    commit(d, token, ns, key, b).await?;
    Ok(())
}

async fn read_blob(
    d: &TestDaemon,
    token: &str,
    req: pb::ReadBlobRequest,
) -> Result<(pb::RefInfo, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = BlobsClient::new(d.channel.clone())
        .read(authed(token, req))
        .await?
        .into_inner();
    let mut info = None;
    let mut out = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.part {
            Some(pb::read_blob_response::Part::Ref(r)) => info = Some(r),
            Some(pb::read_blob_response::Part::Data(bytes)) => out.extend_from_slice(&bytes),
            Some(pb::read_blob_response::Part::Frame(f)) => {
                let id = ChunkId::from_slice(&f.id)?;
                let raw = Frame::from_bytes(f.frame)?.decode_verified(&id, 1 << 24)?;
                out.extend_from_slice(&raw);
            }
            None => {}
        }
    }
    Ok((info.ok_or("no RefInfo first")?, out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_round_trips_through_every_service() -> TestResult {
    let d = TestDaemon::start().await?;
    let writer = d.token("acme", &["web/app:write"])?;
    let ns = "acme/web/app";
    let b = blob(300_000, 1)?;

    let info = InfoClient::new(d.channel.clone())
        .get_server_info(authed(&writer, pb::GetServerInfoRequest {}))
        .await?
        .into_inner();
    assert_eq!(info.chunker, Some(ChunkerSpec::default().into()));
    assert_eq!(
        info.max_message_bytes as usize,
        scipcache_proto::MAX_MESSAGE_BYTES
    );

    let ids: Vec<Bytes> = b.chunks.iter().map(|(id, _, _)| id_bytes(id)).collect();
    let missing = ChunksClient::new(d.channel.clone())
        .find_missing(authed(
            &writer,
            pb::FindMissingRequest {
                namespace: ns.into(),
                ids: ids.clone(),
            },
        ))
        .await?
        .into_inner();
    assert_eq!(missing.missing.len(), b.chunks.len());

    let frames: Vec<pb::ChunkFrame> = b
        .chunks
        .iter()
        .map(|(id, frame, _)| pb::ChunkFrame {
            id: id_bytes(id),
            frame: frame.as_bytes().clone(),
            restored: false,
            normalized: false,
        })
        .collect();
    let up = upload(&d, &writer, ns, frames.clone()).await?;
    assert_eq!(up.received, b.chunks.len() as u64);
    assert_eq!(up.stored, b.chunks.len() as u64);
    let again = upload(&d, &writer, ns, frames).await?;
    assert_eq!(again.already_present, b.chunks.len() as u64);

    let committed = commit(&d, &writer, ns, "commit/abc", &b).await?;
    let r = committed.r#ref.ok_or("no ref")?;
    assert_eq!(r.size, b.bytes.len() as u64);
    assert_eq!(r.blob.as_ref(), b.id.as_bytes());
    assert_eq!(r.labels.get("ci").map(String::as_str), Some("yes"));

    for frames in [false, true] {
        let (info, bytes) = read_blob(
            &d,
            &writer,
            pb::ReadBlobRequest {
                namespace: ns.into(),
                key: "commit/zzz".into(),
                fallback_prefixes: vec!["commit/".into()],
                accept_frames: frames,
                ..Default::default()
            },
        )
        .await?;
        assert_eq!(info.key, "commit/abc", "fallback resolved");
        assert!(bytes == b.bytes, "blob differs (frames: {frames})");
    }
    let (_, range) = read_blob(
        &d,
        &writer,
        pb::ReadBlobRequest {
            namespace: ns.into(),
            key: "commit/abc".into(),
            offset: 1000,
            length: 50_000,
            ..Default::default()
        },
    )
    .await?;
    assert!(range == b.bytes[1000..51_000]);

    let mut refs = RefsClient::new(d.channel.clone());
    let listed = refs
        .list(authed(
            &writer,
            pb::ListRefsRequest {
                namespace: ns.into(),
                prefix: "commit/".into(),
                limit: 0,
            },
        ))
        .await?
        .into_inner();
    assert_eq!(listed.refs.len(), 1);
    assert!(!listed.truncated);

    let some: Vec<Bytes> = ids.iter().take(3).cloned().collect();
    let mut chunk_stream = ChunksClient::new(d.channel.clone())
        .read(authed(
            &writer,
            pb::ReadChunksRequest {
                namespace: ns.into(),
                key: "commit/abc".into(),
                ids: some.clone(),
            },
        ))
        .await?
        .into_inner();
    let mut got = 0;
    while let Some(f) = chunk_stream.message().await? {
        assert_eq!(f.id, some[got]);
        got += 1;
    }
    assert_eq!(got, 3);

    let admin = d.token("acme", &["*:admin"])?;
    let stats = AdminClient::new(d.channel.clone())
        .stats(authed(&admin, pb::StatsRequest::default()))
        .await?
        .into_inner();
    assert_eq!(stats.refs, 1);
    assert_eq!(stats.logical_bytes, b.bytes.len() as u64);

    let deleted = refs
        .delete(authed(
            &writer,
            pb::DeleteRefRequest {
                namespace: ns.into(),
                key: "commit/abc".into(),
            },
        ))
        .await?
        .into_inner();
    assert!(deleted.deleted);
    let gone = refs
        .get(authed(
            &writer,
            pb::GetRefRequest {
                namespace: ns.into(),
                key: "commit/abc".into(),
            },
        ))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(gone, Some(Code::NotFound));

    let scrape = http_get(d.metrics, "/metrics").await?;
    assert!(
        scrape.contains(
            "scipcache_rpc_requests_total{code=\"OK\",method=\"scipcache.v1.Chunks/Upload\"} 2"
        ),
        "{scrape}"
    );
    assert!(scrape.contains(
        "scipcache_rpc_requests_total{code=\"NOT_FOUND\",method=\"scipcache.v1.Refs/Get\"} 1"
    ));
    d.stop().await
}

async fn get_ref_refusal(
    d: &TestDaemon,
    token: &str,
    key: &str,
) -> Result<tonic::Status, &'static str> {
    RefsClient::new(d.channel.clone())
        .get(authed(
            token,
            pb::GetRefRequest {
                namespace: "acme/web/secret".into(),
                key: key.into(),
            },
        ))
        .await
        .err()
        .ok_or("the call was allowed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_namespace_and_read_the_same_for_existing_and_missing_refs() -> TestResult
{
    let d = TestDaemon::start().await?;
    let writer = d.token("acme", &["*:write"])?;
    push(
        &d,
        &writer,
        "acme/web/secret",
        "commit/exists",
        &blob(50_000, 2)?,
    )
    .await?;

    let outsider = d.token("acme", &["web/app:read"])?;
    let existing = get_ref_refusal(&d, &outsider, "commit/exists").await?;
    let missing = get_ref_refusal(&d, &outsider, "commit/missing").await?;
    assert_eq!(existing.code(), Code::PermissionDenied);
    assert_eq!(
        existing.message(),
        "token has no read access to acme/web/secret"
    );
    assert_eq!(existing.message(), missing.message());
    assert_eq!(existing.metadata().len(), missing.metadata().len());

    // Another tenant's token, whatever its scopes.
    let other = d.token("globex", &["*:admin"])?;
    let denied = get_ref_refusal(&d, &other, "commit/exists").await?;
    assert_eq!(denied.code(), Code::PermissionDenied);

    // No token, a token signed by someone else.
    let unauth = RefsClient::new(d.channel.clone())
        .get(pb::GetRefRequest {
            namespace: "acme/web/secret".into(),
            key: "commit/exists".into(),
        })
        .await
        .err()
        .ok_or("allowed")?;
    assert_eq!(unauth.code(), Code::Unauthenticated);
    assert!(unauth.message().starts_with("missing token"));
    let forged = mint(
        &Secret::new(vec![1; 32], std::path::Path::new("x"))?,
        &MintRequest {
            sub: "x".into(),
            tenant: "acme".into(),
            scopes: vec!["*:admin".into()],
            ttl: Duration::from_secs(60),
            issuer: None,
            audience: None,
        },
    )?;
    let bad = get_ref_refusal(&d, &forged.token, "commit/exists").await?;
    assert_eq!(bad.code(), Code::Unauthenticated);
    assert!(bad.message().contains("signature"));

    // Read access is not write access.
    let reader = d.token("acme", &["web/secret:read"])?;
    let write = upload(&d, &reader, "acme/web/secret", Vec::new())
        .await
        .err()
        .ok_or("allowed")?;
    assert_eq!(write.code(), Code::PermissionDenied);
    assert_eq!(
        write.message(),
        "token has no write access to acme/web/secret"
    );
    // Stats need '*:admin'.
    let stats = AdminClient::new(d.channel.clone())
        .stats(authed(&writer, pb::StatsRequest::default()))
        .await
        .err()
        .ok_or("allowed")?;
    assert_eq!(stats.code(), Code::PermissionDenied);
    d.stop().await
}

async fn warm(
    d: &TestDaemon,
    token: &str,
    ns: &str,
    key: &str,
) -> Result<pb::WarmResponse, tonic::Status> {
    BlobsClient::new(d.channel.clone())
        .warm(authed(
            token,
            pb::WarmRequest {
                namespace: ns.into(),
                key: key.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The status a `Blobs/Read` of `ns`/`key` opens with.
async fn read_refusal(
    d: &TestDaemon,
    token: &str,
    ns: &str,
    key: &str,
) -> Result<tonic::Status, &'static str> {
    BlobsClient::new(d.channel.clone())
        .read(authed(
            token,
            pb::ReadBlobRequest {
                namespace: ns.into(),
                key: key.into(),
                ..pb::ReadBlobRequest::default()
            },
        ))
        .await
        .err()
        .ok_or("the read was allowed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_is_refused_and_answers_not_found_exactly_like_a_read() -> TestResult {
    let d = TestDaemon::start().await?;
    let writer = d.token("acme", &["*:write"])?;
    let b = blob(300_000, 4)?;
    push(&d, &writer, "acme/web/secret", "commit/exists", &b).await?;

    let outsider = d.token("acme", &["web/app:read"])?;
    for token in [outsider.as_str(), "not-a-jwt"] {
        for key in ["commit/exists", "commit/missing"] {
            let refused = warm(&d, token, "acme/web/secret", key)
                .await
                .err()
                .ok_or("the warm-up was allowed")?;
            let read = read_refusal(&d, token, "acme/web/secret", key).await?;
            assert_eq!(
                (refused.code(), refused.message()),
                (read.code(), read.message()),
                "{key}"
            );
            assert!(matches!(
                refused.code(),
                Code::PermissionDenied | Code::Unauthenticated
            ));
            assert!(!refused.message().contains("commit/"), "{refused:?}");
        }
    }

    let reader = d.token("acme", &["web/secret:read"])?;
    let missing = warm(&d, &reader, "acme/web/secret", "commit/missing")
        .await
        .err()
        .ok_or("a warm-up of a missing ref succeeded")?;
    let read = read_refusal(&d, &reader, "acme/web/secret", "commit/missing").await?;
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), read.message());

    // Everything just pushed is hot already: nothing to promote.
    let warmed = warm(&d, &reader, "acme/web/secret", "commit/exists").await?;
    let distinct: std::collections::HashSet<ChunkId> = b.chunks.iter().map(|c| c.0).collect();
    assert_eq!(warmed.chunks, distinct.len() as u64);
    assert_eq!(warmed.hot_chunks, warmed.chunks);
    assert_eq!((warmed.promoted_chunks, warmed.promoted_bytes), (0, 0));

    let admin = d.token("acme", &["*:admin"])?;
    let stats = AdminClient::new(d.channel.clone())
        .stats(authed(&admin, pb::StatsRequest::default()))
        .await?
        .into_inner();
    let movement = stats.movement.ok_or("Stats carries no movement figures")?;
    let tiers: Vec<&str> = movement.evicted.iter().map(|e| e.tier.as_str()).collect();
    assert_eq!(tiers, ["hot", "warm"]);
    d.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunks_and_commits_of_missing_chunks_are_refused() -> TestResult {
    let d = TestDaemon::start().await?;
    let writer = d.token("acme", &["*:write"])?;
    let ns = "acme/web/app";
    let b = blob(100_000, 3)?;
    let (_, frame, _) = &b.chunks[0];
    let lying = ChunkId::of(b"something else");
    let err = upload(
        &d,
        &writer,
        ns,
        vec![pb::ChunkFrame {
            id: id_bytes(&lying),
            frame: frame.as_bytes().clone(),
            restored: false,
            normalized: false,
        }],
    )
    .await
    .err()
    .ok_or("corrupt chunk accepted")?;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(&format!("chunk {lying} does not match its bytes"))
    );

    let err = commit(&d, &writer, ns, "commit/x", &b)
        .await
        .err()
        .ok_or("commit accepted")?;
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains(&b.chunks[0].0.to_hex()),
        "{}",
        err.message()
    );
    // The same ids in machine-readable form, for a client to upload them and retry.
    let listed = err
        .metadata()
        .get_bin(scipcache_proto::MISSING_CHUNKS_METADATA)
        .ok_or("FAILED_PRECONDITION without the missing-chunks metadata")?
        .to_bytes()?;
    let listed = scipcache_proto::convert::decode_missing_chunks(&listed)?;
    let mut want: Vec<ChunkId> = b.chunks.iter().map(|(id, _, _)| *id).collect();
    want.sort();
    want.dedup();
    let mut got = listed.listed.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(listed.total, want.len() as u64);

    let err = ChunksClient::new(d.channel.clone())
        .find_missing(authed(
            &writer,
            pb::FindMissingRequest {
                namespace: "Not/A/Namespace".into(),
                ids: vec![],
            },
        ))
        .await
        .err()
        .ok_or("bad namespace accepted")?;
    assert_eq!(err.code(), Code::InvalidArgument);
    d.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_serving_without_a_token() -> TestResult {
    let d = TestDaemon::start().await?;
    let status = tonic_health::pb::health_client::HealthClient::new(d.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "scipcache.v1.Blobs".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    d.stop().await
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

async fn tls_channel(
    d: &TestDaemon,
    identity: bool,
) -> Result<Channel, Box<dyn std::error::Error + Send + Sync>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let ca = std::fs::read(fixture("ca.crt"))?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if identity {
        let cert = std::fs::read(fixture("client.crt"))?;
        let key = std::fs::read(fixture("client.key"))?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(
        Channel::from_shared(format!("https://localhost:{}", d.grpc.port()))?
            .tls_config(tls)?
            .connect()
            .await?,
    )
}

async fn server_info(channel: Channel, token: &str) -> Result<pb::ServerInfo, tonic::Status> {
    InfoClient::new(channel)
        .get_server_info(authed(token, pb::GetServerInfoRequest {}))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_and_refuses_plaintext() -> TestResult {
    let d = TestDaemon::start_with(|c, _| {
        c.tls_cert = Some(fixture("server.crt"));
        c.tls_key = Some(fixture("server.key"));
    })
    .await?;
    let token = d.token("acme", &["*:read"])?;
    server_info(tls_channel(&d, false).await?, &token).await?;
    assert!(server_info(d.channel.clone(), &token).await.is_err());
    d.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() -> TestResult {
    let d = TestDaemon::start_with(|c, _| {
        c.tls_cert = Some(fixture("server.crt"));
        c.tls_key = Some(fixture("server.key"));
        c.tls_client_ca = Some(fixture("ca.crt"));
    })
    .await?;
    let token = d.token("acme", &["*:read"])?;
    server_info(tls_channel(&d, true).await?, &token).await?;
    let anonymous = match tls_channel(&d, false).await {
        Ok(channel) => server_info(channel, &token).await.is_err(),
        Err(_) => true,
    };
    assert!(anonymous, "a client without a certificate was served");
    d.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_even_with_a_stalled_reader() -> TestResult {
    let d = TestDaemon::start().await?;
    let token = d.token("acme", &["*:write"])?;
    let b = blob(4 << 20, 4)?;
    push(&d, &token, "acme/web/app", "branch/main", &b).await?;
    // Start reading and stop consuming: the server's stream fills and waits.
    let mut stalled = BlobsClient::new(d.channel.clone())
        .read(authed(
            &token,
            pb::ReadBlobRequest {
                namespace: "acme/web/app".into(),
                key: "branch/main".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert!(stalled.message().await?.is_some());
    let started = std::time::Instant::now();
    d.stop().await?;
    // Grace is 2 s in these tests; allow generous slack on a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    drop(stalled);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service_for_grpcurl() -> TestResult {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let d = TestDaemon::start().await?;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(d.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    let response = responses.message().await?.ok_or("no reflection response")?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        return Err("not a service list".into());
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "scipcache.v1.Info",
        "scipcache.v1.Chunks",
        "scipcache.v1.Blobs",
        "scipcache.v1.Refs",
        "scipcache.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    drop(responses);
    d.stop().await
}
