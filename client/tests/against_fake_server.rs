//! The client library and the `scipcache` binary driven against an in-process fake server
//! (`fake/mod.rs`): the push pipeline, verification on pull, retries, exit codes and JSON.

mod fake;

use std::sync::atomic::Ordering;
use std::time::Instant;

use scipcache_client::{
    BlobId, ChunkId, Client, ClientConfig, Error, KeyPrefix, Namespace, PullOptions, PushOptions,
    RefKey,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Deterministic data: pseudo-random blocks with repeats, so chunks dedup within a blob.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut block: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half the bytes compressible, half random.
            if (x >> 60) & 1 == 0 {
                b'a'
            } else {
                (x >> 24) as u8
            }
        })
        .collect();
    let mut out = Vec::with_capacity(len);
    let mut round = 0u8;
    while out.len() < len {
        out.extend_from_slice(&block);
        // Change one byte every other round, so some blocks repeat and some do not.
        round = round.wrapping_add(1);
        if round.is_multiple_of(2) {
            block[1000] = round;
        }
    }
    out.truncate(len);
    out
}

fn config(fake: &fake::Fake) -> ClientConfig {
    ClientConfig {
        token: Some(fake::TOKEN.into()),
        ..ClientConfig::new(fake.url())
    }
}

fn names(key: &str) -> Result<(Namespace, RefKey), Error> {
    Ok(("acme/web/app".parse()?, key.parse()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_round_trips_and_a_second_push_sends_no_chunks() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/abc")?;
    let blob = data(5_000_000, 1);

    let first = client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await?;
    assert_eq!(first.blob, BlobId::of(&blob));
    assert_eq!(first.bytes, blob.len() as u64);
    assert!(first.new_chunks > 0);
    assert!(
        first.new_chunks < first.chunks,
        "repeated blocks must be uploaded once: {first:?}"
    );
    assert_eq!(
        fake.state.uploaded_frames.load(Ordering::Relaxed),
        first.new_chunks
    );
    assert!(first.bytes_sent < first.bytes, "lz4 must shrink the upload");

    let second = client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await?;
    assert_eq!(second.new_chunks, 0);
    assert_eq!(second.blob, first.blob);
    assert!(second.bytes_sent < first.bytes_sent / 20, "{second:?}");

    let mut out = Vec::new();
    let pulled = client
        .pull(&ns, &key, &[], &mut out, &PullOptions::default())
        .await?;
    assert_eq!(out, blob);
    assert_eq!(pulled.blob, first.blob);
    assert_eq!(pulled.resolved_key, "commit/abc");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_blobs_push_and_pull() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/empty")?;
    let pushed = client
        .push(&ns, &key, &b""[..], &PushOptions::default())
        .await?;
    assert_eq!(pushed.blob, BlobId::of(b""));
    assert_eq!((pushed.chunks, pushed.new_chunks), (0, 0));
    let mut out = Vec::new();
    let pulled = client
        .pull(&ns, &key, &[], &mut out, &PullOptions::default())
        .await?;
    assert!(out.is_empty());
    assert_eq!(pulled.bytes, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_falls_back_to_the_newest_ref_under_the_first_matching_prefix() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let ns: Namespace = "acme/web/app".parse()?;
    for (key, seed) in [("branch/main/1", 1), ("branch/main/2", 2), ("tags/v1", 3)] {
        let key: RefKey = key.parse()?;
        client
            .push(&ns, &key, &data(70_000, seed)[..], &PushOptions::default())
            .await?;
    }
    let missing: RefKey = "commit/nope".parse()?;
    let fallbacks: Vec<KeyPrefix> = vec!["release/".parse()?, "branch/main/".parse()?];
    let mut out = Vec::new();
    let pulled = client
        .pull(&ns, &missing, &fallbacks, &mut out, &PullOptions::default())
        .await?;
    assert_eq!(pulled.resolved_key, "branch/main/2");
    assert_eq!(out, data(70_000, 2));
    let stat = client.stat(&ns, &missing, &fallbacks).await?;
    assert_eq!(stat.key, "branch/main/2");

    let miss = client
        .pull(&ns, &missing, &[], &mut Vec::new(), &PullOptions::default())
        .await
        .err();
    assert_eq!(miss.map(|e| e.exit_code()), Some(3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_and_chunks_read_back_verified() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/range")?;
    let blob = data(1_000_000, 9);
    client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await?;
    for (offset, length) in [(0u64, 0u64), (12_345, 100_000), (999_000, 5_000), (0, 1)] {
        let got = client.read_range(&ns, &key, offset, length).await?;
        let end = if length == 0 {
            blob.len()
        } else {
            (offset + length).min(blob.len() as u64) as usize
        };
        assert_eq!(&got[..], &blob[offset as usize..end], "{offset}+{length}");
    }
    let info = client.get_ref(&ns, &key).await?;
    assert_eq!(info.size, blob.len() as u64);
    let some_ids: Vec<_> = {
        let spec = client.server_info().chunker.splitter()?;
        spec.cut_all(&blob)
            .take(3)
            .map(|r| scipcache_client::ChunkId::of(&blob[r]))
            .collect()
    };
    let chunks = client.read_chunks(&ns, &key, &some_ids).await?;
    assert_eq!(chunks.len(), 3);
    assert!(blob.starts_with(&chunks[0].1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_frames_and_wrong_blob_ids_are_data_loss() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/bad")?;
    client
        .push(&ns, &key, &data(400_000, 4)[..], &PushOptions::default())
        .await?;

    fake.state.corrupt_reads.store(true, Ordering::SeqCst);
    let err = client
        .pull(&ns, &key, &[], &mut Vec::new(), &PullOptions::default())
        .await
        .err();
    assert!(matches!(err, Some(Error::ChunkMismatch { .. })), "{err:?}");
    assert_eq!(
        err.map(|e| e.code_words().to_owned()).as_deref(),
        Some("data loss")
    );
    fake.state.corrupt_reads.store(false, Ordering::SeqCst);

    fake.state.lie_about_blob.store(true, Ordering::SeqCst);
    let err = client
        .pull(&ns, &key, &[], &mut Vec::new(), &PullOptions::default())
        .await
        .err();
    assert!(matches!(err, Some(Error::BlobMismatch { .. })), "{err:?}");
    Ok(())
}

/// `len` pseudo-random bytes: nothing repeats, nothing compresses.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A file in a temp dir holding `data(len, seed)`.
fn blob_file(len: usize, seed: u64) -> Result<(tempfile::TempDir, std::path::PathBuf), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let path = dir.path().join("index.scip");
    std::fs::write(&path, data(len, seed)).map_err(|e| Error::io("write", e))?;
    Ok((dir, path))
}

/// The fake's next `commits` commits each forget `count` chunks of their manifest.
fn forget(fake: &fake::Fake, count: usize, commits: u64) {
    fake.state.forget_per_commit.store(count, Ordering::SeqCst);
    fake.state
        .forgetful_commits
        .store(commits, Ordering::SeqCst);
}

fn sorted(mut ids: Vec<ChunkId>) -> Vec<ChunkId> {
    ids.sort();
    ids
}

async fn pulls_back(client: &Client, key: &RefKey, want: &[u8]) -> TestResult {
    let mut out = Vec::new();
    client
        .pull(&names("x")?.0, key, &[], &mut out, &PullOptions::default())
        .await?;
    assert!(out == want, "the pulled blob differs from the pushed one");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_missing_chunks_uploads_exactly_those_and_commits_again() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/retry")?;
    let (_dir, path) = blob_file(3_000_000, 5)?;
    forget(&fake, 3, 1);
    let report = client
        .push_file(&ns, &key, &path, &PushOptions::default())
        .await?;
    assert_eq!(fake.state.commits.load(Ordering::Relaxed), 2);
    let forgotten = fake
        .state
        .forgotten
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(forgotten.len(), 3);
    let again = fake.state.uploaded_after_commit(1);
    assert_eq!(
        sorted(again),
        sorted(forgotten),
        "exactly the missing chunks go up again"
    );
    let first_pass = fake.state.uploaded_after_commit(0).len() as u64;
    assert_eq!(report.new_chunks, first_pass + 3);
    assert_eq!(report.blob, BlobId::of(&data(3_000_000, 5)));
    pulls_back(&client, &key, &data(3_000_000, 5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_missing_chunks_than_listed_are_found_with_find_missing() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/many")?;
    // Random bytes: every chunk distinct.
    let blob = random_bytes(6_000_000, 11);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("index.scip");
    std::fs::write(&path, &blob)?;
    let wanted = scipcache_proto::MAX_LISTED_MISSING + 20;
    forget(&fake, wanted, 1);
    client
        .push_file(&ns, &key, &path, &PushOptions::default())
        .await?;
    let forgotten = fake
        .state
        .forgotten
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(
        forgotten.len(),
        wanted,
        "the blob must have enough distinct chunks"
    );
    assert_eq!(fake.state.commits.load(Ordering::Relaxed), 2);
    assert_eq!(
        sorted(fake.state.uploaded_after_commit(1)),
        sorted(forgotten)
    );
    pulls_back(&client, &key, &blob).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lists_no_missing_chunks_still_gets_them() -> TestResult {
    let fake = fake::start().await?;
    fake.state.unlisted_missing.store(true, Ordering::SeqCst);
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/unlisted")?;
    let (_dir, path) = blob_file(2_000_000, 6)?;
    forget(&fake, 4, 1);
    client
        .push_file(&ns, &key, &path, &PushOptions::default())
        .await?;
    let forgotten = fake
        .state
        .forgotten
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(fake.state.commits.load(Ordering::Relaxed), 2);
    assert_eq!(
        sorted(fake.state.uploaded_after_commit(1)),
        sorted(forgotten)
    );
    pulls_back(&client, &key, &data(2_000_000, 6)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_file_uploads_everything_again_when_the_server_lost_every_chunk() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/lost")?;
    let (_dir, path) = blob_file(600_000, 5)?;
    fake.state
        .lose_chunks_at_next_commit
        .store(true, Ordering::SeqCst);
    let report = client
        .push_file(&ns, &key, &path, &PushOptions::default())
        .await?;
    assert_eq!(fake.state.commits.load(Ordering::Relaxed), 2);
    assert_eq!(
        sorted(fake.state.uploaded_after_commit(1)),
        sorted(fake.state.uploaded_after_commit(0))
    );
    assert_eq!(report.blob, BlobId::of(&data(600_000, 5)));
    pulls_back(&client, &key, &data(600_000, 5)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_gives_up_after_the_bounded_commit_retries() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/hopeless")?;
    let (_dir, path) = blob_file(1_000_000, 7)?;
    forget(&fake, 2, u64::MAX);
    let err = client
        .push_file(&ns, &key, &path, &PushOptions::default())
        .await
        .err()
        .ok_or("the push succeeded")?;
    assert_eq!(fake.state.commits.load(Ordering::Relaxed), 4);
    for n in 1..4 {
        assert_eq!(
            fake.state.uploaded_after_commit(n).len(),
            2,
            "after commit {n}"
        );
    }
    assert!(
        matches!(err, Error::CommitIncomplete { missing: 2, .. }),
        "{err:?}"
    );
    assert_eq!(err.code_words(), "failed precondition");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("after 4 commits"), "{err}");
    let mut out = Vec::new();
    let gone = client
        .pull(&ns, &key, &[], &mut out, &PullOptions::default())
        .await
        .err();
    assert_eq!(gone.map(|e| e.exit_code()), Some(3), "no ref may be set");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_stream_cannot_be_read_again_and_says_so() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/stream")?;
    let blob = data(1_000_000, 8);
    forget(&fake, 2, 1);
    let err = client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await
        .err()
        .ok_or("the push succeeded")?;
    assert_eq!(fake.state.commits.load(Ordering::Relaxed), 1);
    assert!(err.is_missing_chunks());
    assert!(err.to_string().contains("cannot be read again"), "{err}");
    // Pushing again from the start is the fix.
    client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await?;
    pulls_back(&client, &key, &blob).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_unreachable_servers_map_to_contract_codes() -> TestResult {
    let fake = fake::start().await?;
    let bad = Client::connect(ClientConfig {
        token: Some("wrong".into()),
        ..ClientConfig::new(fake.url())
    })
    .await?;
    let (ns, _) = names("k")?;
    let err = bad.list_refs(&ns, &KeyPrefix::default()).await.err();
    assert_eq!(err.as_ref().map(Error::exit_code), Some(4));
    assert_eq!(err.as_ref().map(Error::code_words), Some("unauthenticated"));

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let err = Client::connect(ClientConfig::new(format!("http://{closed}")))
        .await
        .err();
    assert_eq!(err.as_ref().map(Error::code_words), Some("unavailable"));
    assert_eq!(err.as_ref().map(Error::exit_code), Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_delete_and_stats() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let ns: Namespace = "acme/web/app".parse()?;
    for key in ["commit/a", "commit/b", "branch/main"] {
        let opts = PushOptions {
            ttl: Some(std::time::Duration::from_secs(3600)),
            labels: vec![("ci".into(), "yes".into())],
            ..PushOptions::default()
        };
        client
            .push(&ns, &key.parse()?, &data(50_000, 7)[..], &opts)
            .await?;
    }
    let list = client.list_refs(&ns, &"commit/".parse()?).await?;
    let keys: Vec<&str> = list.refs.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["commit/b", "commit/a"]);
    assert!(list.refs[0].expires_at.is_some());
    assert_eq!(
        list.refs[0].labels.get("ci").map(String::as_str),
        Some("yes")
    );
    assert!(client.delete_ref(&ns, &"commit/a".parse()?).await?);
    assert!(!client.delete_ref(&ns, &"commit/a".parse()?).await?);
    let stats = client.stats().await?;
    assert_eq!(stats.refs, 2);
    assert_eq!(stats.tiers[0].name, "hot");
    // The fake predates the movement figures: they read as zero.
    assert_eq!(stats.movement, scipcache_client::Movement::default());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca_and_a_client_certificate() -> TestResult {
    let fake = fake::start_tls().await?;
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let tls = ClientConfig {
        token: Some(fake::TOKEN.into()),
        ca: Some(data.join("ca.pem")),
        cert: Some(data.join("client.pem")),
        key: Some(data.join("client.key")),
        ..ClientConfig::new(fake.tls_url())
    };
    let client = Client::connect(tls.clone()).await?;
    let (ns, key) = names("commit/tls")?;
    let blob = data_bytes(300_000);
    client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await?;
    let mut out = Vec::new();
    client
        .pull(&ns, &key, &[], &mut out, &PullOptions::default())
        .await?;
    assert_eq!(out, blob);

    // Without a client certificate the server refuses the handshake.
    let anonymous = ClientConfig {
        cert: None,
        key: None,
        ..tls.clone()
    };
    let refused = Client::connect(anonymous).await.err();
    assert_eq!(refused.as_ref().map(Error::code_words), Some("unavailable"));
    // Plain HTTP/2 against a TLS port fails too, as unavailable.
    let plain = Client::connect(ClientConfig::new(fake.url())).await.err();
    assert_eq!(plain.as_ref().map(Error::code_words), Some("unavailable"));
    // A missing CA file is bad usage naming the file (`transport_failures.rs` has the rest).
    let missing = ClientConfig {
        ca: Some(data.join("nope.pem")),
        ..tls
    };
    let err = Client::connect(missing).await.err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("nope.pem")),
        "{err:?}"
    );
    assert_eq!(err.as_ref().map(Error::exit_code), Some(2));
    Ok(())
}

fn data_bytes(len: usize) -> Vec<u8> {
    data(len, 3)
}

/// An endless pseudo-random source, generated as it is read.
struct Generated {
    left: u64,
    x: u64,
}

impl tokio::io::AsyncRead for Generated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(1 << 20) as usize / 8 * 8;
        let n = if n == 0 {
            self.left.min(buf.remaining() as u64) as usize
        } else {
            n
        };
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let take = (n - out.len()).min(8);
            out.extend_from_slice(&self.x.to_le_bytes()[..take]);
        }
        buf.put_slice(&out);
        self.left -= n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_much_larger_than_its_windows_uploads_every_chunk_once() -> TestResult {
    const SIZE: u64 = 512 << 20;
    let fake = fake::start().await?;
    fake.state.forget_bytes.store(true, Ordering::SeqCst);
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/large")?;
    let source = Generated {
        left: SIZE,
        x: 0x9e37_79b9_7f4a_7c15,
    };
    let report = client
        .push(&ns, &key, source, &PushOptions::default())
        .await?;
    assert_eq!(report.bytes, SIZE);
    assert_eq!(report.new_chunks, report.chunks);
    // Bounded memory is proven with real processes (tests/, large_blob): this process also
    // runs other tests at the same time, so its peak RSS says little about one push.
    Ok(())
}

/// Runs the CLI binary with the fake's URL and token in the environment.
async fn cli(fake: &fake::Fake, args: &[&str]) -> std::io::Result<std::process::Output> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scipcache"));
    cmd.args(args)
        .env("SCIPCACHE_SERVER", fake.url())
        .env("SCIPCACHE_TOKEN", fake::TOKEN);
    tokio::process::Command::from(cmd).output().await
}

fn stderr_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_push_pull_ls_rm_stat_with_json() -> TestResult {
    let fake = fake::start().await?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("index.scip");
    let blob = data(2_000_000, 11);
    std::fs::write(&input, &blob)?;
    let input = input.to_string_lossy().into_owned();

    let out = cli(
        &fake,
        &[
            "--json",
            "push",
            "acme/web/app",
            "commit/c1",
            &input,
            "--ttl",
            "7d",
            "--label",
            "ci=gh",
        ],
    )
    .await?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_line(&out));
    let push: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for field in [
        "ns",
        "key",
        "blob",
        "bytes",
        "chunks",
        "new_chunks",
        "bytes_sent",
        "seconds",
    ] {
        assert!(
            push.get(field).is_some(),
            "push --json lacks {field}: {push}"
        );
    }
    assert_eq!(push["blob"], BlobId::of(&blob).to_string());

    let target = dir.path().join("out.scip");
    let target_s = target.to_string_lossy().into_owned();
    let out = cli(
        &fake,
        &[
            "pull",
            "acme/web/app",
            "commit/c1",
            "-o",
            &target_s,
            "--json",
        ],
    )
    .await?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_line(&out));
    let pull: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(pull["resolved_key"], "commit/c1");
    assert_eq!(std::fs::read(&target)?, blob);

    let out = cli(&fake, &["pull", "acme/web/app", "commit/c1"]).await?;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, blob);

    let out = cli(&fake, &["ls", "acme/web/app", "--json"]).await?;
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(ls["refs"][0]["key"], "commit/c1");
    assert!(
        ls["refs"][0]["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let out = cli(&fake, &["--json", "stat"]).await?;
    let stat: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(stat["tiers"][0]["stored_bytes"].as_u64().is_some());
    assert!(stat["logical_bytes"].as_u64().is_some());

    let out = cli(&fake, &["rm", "acme/web/app", "commit/c1", "--json"]).await?;
    let rm: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(rm["deleted"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_warm_prints_the_contract_fields_and_a_missing_ref_exits_3() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("branch/main")?;
    let pushed = client
        .push(&ns, &key, &data(2_000_000, 5)[..], &PushOptions::default())
        .await?;

    let warmed = client.warm(&ns, &key).await?;
    assert_eq!(
        (warmed.ns.as_str(), warmed.key.as_str()),
        ("acme/web/app", "branch/main")
    );
    assert!(
        warmed.chunks > 0 && warmed.chunks <= pushed.chunks,
        "{warmed:?}"
    );

    let out = cli(&fake, &["--json", "warm", "acme/web/app", "branch/main"]).await?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_line(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for field in ["ns", "key", "chunks", "promoted_bytes", "seconds"] {
        assert!(
            json.get(field).is_some(),
            "warm --json lacks {field}: {json}"
        );
    }
    assert_eq!(json["chunks"], warmed.chunks);

    let out = cli(&fake, &["warm", "acme/web/app", "branch/main"]).await?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr_line(&out));
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with("warmed acme/web/app branch/main: "),
        "{line}"
    );

    let out = cli(&fake, &["warm", "acme/web/app", "branch/gone"]).await?;
    assert_eq!(out.status.code(), Some(3), "{}", stderr_line(&out));
    assert!(
        stderr_line(&out).starts_with("not found: "),
        "{}",
        stderr_line(&out)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_one_line_with_contract_exit_codes() -> TestResult {
    let fake = fake::start().await?;
    let dir = tempfile::tempdir()?;
    let target = dir.path().join("keep.scip");
    std::fs::write(&target, b"previous")?;
    let target_s = target.to_string_lossy().into_owned();

    // A miss: exit 3, and the existing file is left alone.
    let out = cli(
        &fake,
        &["pull", "acme/web/app", "commit/none", "-o", &target_s],
    )
    .await?;
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    let line = stderr_line(&out);
    assert!(line.starts_with("not found: "), "{line}");
    assert_eq!(line.lines().count(), 1);
    assert_eq!(std::fs::read(&target)?, b"previous");
    let leftovers = std::fs::read_dir(dir.path())?.count();
    assert_eq!(leftovers, 1, "the temporary file must be removed");

    // A bad namespace: exit 2 before connecting.
    let out = cli(&fake, &["ls", "Acme/web/app"]).await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_line(&out).starts_with("invalid argument: invalid namespace"));

    // Clap's own usage errors: exit 2, one line.
    let out = cli(&fake, &["push", "acme/web/app"]).await?;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_line(&out).lines().count(),
        1,
        "{}",
        stderr_line(&out)
    );

    // --json without -o: exit 2.
    let out = cli(&fake, &["--json", "pull", "acme/web/app", "commit/x"]).await?;
    assert_eq!(out.status.code(), Some(2));

    // A wrong token: exit 4.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_scipcache"));
    cmd.args([
        "ls",
        "acme/web/app",
        "--server",
        &fake.url(),
        "--token",
        "nope",
    ]);
    let out = tokio::process::Command::from(cmd).output().await?;
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr_line(&out).starts_with("unauthenticated: "));

    // A server that keeps losing chunks at commit: exit 1 once the retries run out.
    forget(&fake, 1, u64::MAX);
    let file = dir.path().join("blob");
    std::fs::write(&file, data(200_000, 4))?;
    let file = file.to_string_lossy().into_owned();
    let out = cli(&fake, &["push", "acme/web/app", "commit/lossy", &file]).await?;
    assert_eq!(out.status.code(), Some(1));
    let line = stderr_line(&out);
    assert!(
        line.starts_with("failed precondition: the server lacks 1 chunk of the blob"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    Ok(())
}

/// CPU seconds this process has used (user + system), from /proc (0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A first push of 99 MB over loopback; run with
/// `cargo test -p scipcache-client --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement"]
async fn first_push_of_99_mb_throughput() -> TestResult {
    let fake = fake::start().await?;
    let client = Client::connect(config(&fake)).await?;
    let (ns, key) = names("commit/big")?;
    // SCIP-like: symbol strings and paths with varying numbers, some random bytes (hashes).
    let blob: Vec<u8> = {
        let mut x = 7u64;
        let mut out = Vec::with_capacity(99_000_000);
        while out.len() < 99_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let line = format!(
                "\n\x12scip-go gomod github.com/acme/web v1.{} `internal/pkg{}/file{}.go`/Type{}#Method{}().\x1a{:016x}",
                x % 7,
                (x >> 8) % 50,
                (x >> 16) % 400,
                (x >> 24) % 1000,
                (x >> 34) % 30,
                x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(99_000_000);
        out
    };
    let started = Instant::now();
    let cpu = cpu_seconds();
    let report = client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "first push: {:.0} MB/s ({} chunks, {} MB sent) in {secs:.2}s, {:.2} CPU s (client and fake server)",
        blob.len() as f64 / secs / 1e6,
        report.chunks,
        report.bytes_sent / 1_000_000,
        cpu_seconds() - cpu
    );
    let cpu = cpu_seconds();
    let started = Instant::now();
    let spec = client.server_info().chunker;
    let mut reader = scipcache_tiers::chunking::ChunkReader::new(&blob[..], spec.splitter()?);
    let mut hasher = blake3::Hasher::new();
    let mut chunks = Vec::new();
    while let Some(c) = reader.next_chunk().await? {
        hasher.update(&c);
        chunks.push(c);
    }
    let t_chunk = started.elapsed().as_secs_f64();
    let ids: Vec<_> = chunks
        .iter()
        .map(|c| scipcache_client::ChunkId::of(c))
        .collect();
    let t_ids = started.elapsed().as_secs_f64() - t_chunk;
    let mut frames = 0;
    for c in &chunks {
        frames +=
            scipcache_tiers::codec::Frame::encode(c, scipcache_tiers::codec::Compression::Lz4)?
                .stored_len();
    }
    let t_lz4 = started.elapsed().as_secs_f64() - t_chunk - t_ids;
    println!(
        "one thread: chunk+blob hash {t_chunk:.3}s, ids {t_ids:.3}s, lz4 {t_lz4:.3}s ({} ids, {} MB frames), {:.2} CPU s",
        ids.len(),
        frames / 1_000_000,
        cpu_seconds() - cpu
    );
    let started = Instant::now();
    let again = client
        .push(&ns, &key, &blob[..], &PushOptions::default())
        .await?;
    println!(
        "second push: {:.0} MB/s ({} new)",
        blob.len() as f64 / started.elapsed().as_secs_f64() / 1e6,
        again.new_chunks
    );
    let started = Instant::now();
    let mut out = Vec::with_capacity(blob.len());
    client
        .pull(&ns, &key, &[], &mut out, &PullOptions::default())
        .await?;
    println!(
        "pull: {:.0} MB/s",
        blob.len() as f64 / started.elapsed().as_secs_f64() / 1e6
    );
    assert_eq!(out.len(), blob.len());
    Ok(())
}
