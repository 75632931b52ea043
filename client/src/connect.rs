//! Connecting: the channel (plain HTTP/2 or TLS), the bearer token on every call, and the
//! server facts the client needs before it can cut a single chunk.

use std::path::PathBuf;
use std::time::Duration;

use scipcache_proto::pb;
use scipcache_proto::pb::admin_client::AdminClient;
use scipcache_proto::pb::blobs_client::BlobsClient;
use scipcache_proto::pb::chunks_client::ChunksClient;
use scipcache_proto::pb::info_client::InfoClient;
use scipcache_proto::pb::lookups_client::LookupsClient;
use scipcache_proto::pb::refs_client::RefsClient;
use scipcache_proto::{AUTHORIZATION, MAX_IDS_PER_REQUEST, MAX_MESSAGE_BYTES};
use scipcache_tiers::chunking::ChunkerSpec;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result, is_local, status_message};
use crate::tls::{self, TlsFiles};
use crate::transport::TransportErrors;

/// Where the CLI connects when neither `--server` nor `SCIPCACHE_SERVER` says otherwise.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7741";

/// Default per-call limit for unary calls.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach a server and who to be there.
#[derive(Clone)]
pub struct ClientConfig {
    /// `http://host:port` (plain HTTP/2) or `https://host:port` (TLS; needs [`Self::ca`]).
    pub url: String,
    /// A JWT sent as `authorization: Bearer <token>` on every call.
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (with [`Self::key`]).
    pub cert: Option<PathBuf>,
    /// PEM private key of [`Self::cert`].
    pub key: Option<PathBuf>,
    /// Deadline of each unary call (and of connecting). Streams have none: a 4 GB push may
    /// take longer than any fixed limit.
    pub timeout: Duration,
}

impl ClientConfig {
    /// A config for `url` with no token, no TLS files and the default timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            ca: None,
            cert: None,
            key: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::new(DEFAULT_SERVER)
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What the server told us about itself at connect time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The daemon's version string.
    pub version: String,
    /// How the server cuts chunks; the client cuts with exactly this spec so that chunk ids
    /// agree and deduplication works.
    pub chunker: ChunkerSpec,
    /// Most ids in one FindMissing or chunk Read request (never above the protocol's
    /// [`MAX_IDS_PER_REQUEST`]).
    pub max_ids_per_request: usize,
    /// Largest gRPC message the server accepts.
    pub max_message_bytes: usize,
    /// Most chunks in one blob; 0 when the server sets no limit.
    pub max_chunks_per_blob: u64,
    /// The SCIP splitter version the server accepts (0 = none): pushes cut SCIP-aware only
    /// when it is this client's [`scipcache_tiers::scip::SPLITTER_VERSION`].
    pub scip_splitter: u32,
}

impl TryFrom<pb::ServerInfo> for ServerInfo {
    type Error = Error;

    fn try_from(info: pb::ServerInfo) -> Result<Self> {
        let spec = info
            .chunker
            .ok_or_else(|| Error::Protocol("ServerInfo carries no chunker spec".into()))?;
        let chunker = ChunkerSpec::try_from(spec).map_err(|e| {
            Error::Protocol(format!(
                "the server cuts chunks in a way this client does not know ({e}); upgrade scipcache"
            ))
        })?;
        let limit = |advertised: u32, ours: usize| match advertised as usize {
            0 => ours,
            n => n.min(ours),
        };
        Ok(Self {
            version: info.version,
            chunker,
            max_ids_per_request: limit(info.max_ids_per_request, MAX_IDS_PER_REQUEST),
            max_message_bytes: limit(info.max_message_bytes, MAX_MESSAGE_BYTES),
            max_chunks_per_blob: info.max_chunks_per_blob,
            scip_splitter: info.scip_splitter,
        })
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub(crate) struct BearerAuth(Option<AsciiMetadataValue>);

impl BearerAuth {
    fn new(token: Option<&str>) -> Result<Self> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(Self(None));
        };
        let mut value = AsciiMetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            Error::InvalidArgument(
                "the token holds characters a gRPC header cannot carry; \
                 pass the JWT as `scipcached token` prints it"
                    .into(),
            )
        })?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() {
            "Bearer <redacted>"
        } else {
            "none"
        };
        f.debug_tuple("BearerAuth").field(&shown).finish()
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(req)
    }
}

/// The channel with the token attached, its connection failures reported as `UNAVAILABLE`.
pub(crate) type AuthChannel = TransportErrors<InterceptedService<Channel, BearerAuth>>;

/// A connection to one scipcached. Cheap to clone: clones share the HTTP/2 connections.
///
/// Chunk uploads travel on a connection of their own: megabytes of frames queued in one TCP
/// connection would otherwise delay the small calls (FindMissing) that keep a push's pipeline
/// moving.
#[derive(Clone, Debug)]
pub struct Client {
    channel: AuthChannel,
    bulk: AuthChannel,
    info: ServerInfo,
    timeout: Duration,
    url: String,
}

impl Client {
    /// Connects and asks the server how it cuts chunks (`Info/GetServerInfo`).
    ///
    /// The TCP/TLS connection is opened by that first call, so an unreachable server fails
    /// here as `UNAVAILABLE` after a few retries.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let endpoint = endpoint(&config).await?;
        let auth = BearerAuth::new(config.token.as_deref())?;
        // Lazy: each channel opens its connection at its first call.
        let url = config.url.as_str();
        let channel = TransportErrors::new(
            InterceptedService::new(endpoint.connect_lazy(), auth.clone()),
            url,
        );
        let bulk =
            TransportErrors::new(InterceptedService::new(endpoint.connect_lazy(), auth), url);
        let mut client = Self {
            channel,
            bulk,
            info: ServerInfo {
                version: String::new(),
                chunker: ChunkerSpec::default(),
                max_ids_per_request: MAX_IDS_PER_REQUEST,
                max_message_bytes: MAX_MESSAGE_BYTES,
                max_chunks_per_blob: 0,
                scip_splitter: 0,
            },
            timeout: config.timeout,
            url: config.url,
        };
        let info = client
            .unary(
                "Info/GetServerInfo",
                |c, req| async move { c.info().get_server_info(req).await },
                pb::GetServerInfoRequest {},
            )
            .await
            .map_err(|e| match e {
                // Connection, TLS and HTTP/2 failures of the first call all mean the same
                // (the channel's own already name the server).
                Error::Status(s)
                    if (s.code() == tonic::Code::Unavailable || is_local(&s))
                        && !s.message().contains(&client.url) =>
                {
                    Error::Status(tonic::Status::unavailable(format!(
                        "cannot reach scipcached at {}: {}",
                        client.url,
                        status_message(&s)
                    )))
                }
                other => other,
            })?;
        client.info = ServerInfo::try_from(info)?;
        Ok(client)
    }

    /// What the server told us at connect time.
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The per-call limit of unary calls.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn info(&self) -> InfoClient<AuthChannel> {
        InfoClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn chunks(&self) -> ChunksClient<AuthChannel> {
        ChunksClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Chunks on the upload connection.
    pub(crate) fn bulk_chunks(&self) -> ChunksClient<AuthChannel> {
        ChunksClient::new(self.bulk.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn blobs(&self) -> BlobsClient<AuthChannel> {
        BlobsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn refs(&self) -> RefsClient<AuthChannel> {
        RefsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn lookups(&self) -> LookupsClient<AuthChannel> {
        LookupsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub(crate) fn admin(&self) -> AdminClient<AuthChannel> {
        AdminClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Builds the endpoint: scheme check, TLS files, HTTP/2 settings.
async fn endpoint(config: &ClientConfig) -> Result<Endpoint> {
    let url = config.url.trim();
    let tls = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        return Err(Error::InvalidArgument(format!(
            "invalid server URL {url:?}: use http://host:port or https://host:port"
        )));
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::InvalidArgument(format!("invalid server URL {url:?}: {e}")))?
        .connect_timeout(config.timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        // Large windows let a pull stream at loopback speed without waiting on WINDOW_UPDATEs.
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        // Larger DATA frames from the server: fewer frames per chunk batch.
        .max_frame_size(1024 * 1024);
    match (tls, &config.cert, &config.key) {
        (_, Some(_), None) | (_, None, Some(_)) => {
            return Err(Error::InvalidArgument(
                "mutual TLS needs both a client certificate (--cert) and its key (--key)".into(),
            ));
        }
        (false, ..) if config.ca.is_some() || config.cert.is_some() => {
            return Err(Error::InvalidArgument(format!(
                "--ca, --cert and --key need an https:// server, not {url}"
            )));
        }
        (false, ..) => {}
        (true, cert, key) => {
            let Some(ca) = &config.ca else {
                return Err(Error::InvalidArgument(format!(
                    "{url} uses TLS: pass the CA that signed its certificate with --ca FILE"
                )));
            };
            // Both rustls backends can be linked into one binary (ring through tonic,
            // aws-lc-rs through object_store elsewhere in a workspace build), and rustls then
            // cannot choose: pick ring, the one tonic is built with. Installing twice is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let files = TlsFiles {
                ca,
                identity: cert.as_deref().zip(key.as_deref()),
            };
            let tls = tls::client_config(files).await?;
            endpoint = endpoint.tls_config(tls).map_err(|source| Error::Tls {
                context: format!("cannot use the TLS files ({})", files.named()),
                source,
            })?;
        }
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_info_limits_never_exceed_the_protocol_constants() -> Result<()> {
        let wire = pb::ServerInfo {
            version: "1".into(),
            chunker: Some(ChunkerSpec::default().into()),
            max_ids_per_request: 0,
            max_message_bytes: 1024,
            max_chunks_per_blob: 7,
            scip_splitter: 1,
        };
        let info = ServerInfo::try_from(wire)?;
        assert_eq!(info.max_ids_per_request, MAX_IDS_PER_REQUEST);
        assert_eq!(info.max_message_bytes, 1024);
        assert_eq!(info.chunker, ChunkerSpec::default());
        Ok(())
    }

    #[test]
    fn server_info_without_a_known_chunker_is_refused() {
        let none = pb::ServerInfo::default();
        assert!(matches!(
            ServerInfo::try_from(none),
            Err(Error::Protocol(_))
        ));
        let unknown = pb::ServerInfo {
            chunker: Some(pb::ChunkerSpec {
                algorithm: 42,
                ..ChunkerSpec::default().into()
            }),
            ..pb::ServerInfo::default()
        };
        assert!(matches!(
            ServerInfo::try_from(unknown),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn bearer_token_is_trimmed_and_hidden_from_debug() -> Result<()> {
        let mut auth = BearerAuth::new(Some(" abc.def.ghi\n"))?;
        let req = auth.call(tonic::Request::new(())).map_err(Error::Status)?;
        let value = req
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        assert_eq!(value, Some("Bearer abc.def.ghi"));
        assert!(!format!("{auth:?}").contains("abc"));
        assert!(BearerAuth::new(Some("bad\u{1}token")).is_err());
        let mut none = BearerAuth::new(Some("  "))?;
        let req = none.call(tonic::Request::new(())).map_err(Error::Status)?;
        assert!(req.metadata().get(AUTHORIZATION).is_none());
        Ok(())
    }

    #[tokio::test]
    async fn urls_and_tls_option_mixes_are_checked_before_connecting() {
        let bad = |config: ClientConfig| async move {
            matches!(endpoint(&config).await, Err(Error::InvalidArgument(_)))
        };
        assert!(bad(ClientConfig::new("127.0.0.1:7741")).await);
        assert!(bad(ClientConfig::new("https://localhost:7741")).await);
        let mut ca_on_http = ClientConfig::new("http://localhost:7741");
        ca_on_http.ca = Some("ca.pem".into());
        assert!(bad(ca_on_http).await);
        let mut cert_only = ClientConfig::new("https://localhost:7741");
        cert_only.ca = Some("ca.pem".into());
        cert_only.cert = Some("c.pem".into());
        assert!(bad(cert_only).await);
        assert!(endpoint(&ClientConfig::default()).await.is_ok());
    }

    #[test]
    fn config_debug_redacts_the_token() {
        let config = ClientConfig {
            token: Some("secret-token".into()),
            ..ClientConfig::default()
        };
        assert!(!format!("{config:?}").contains("secret"));
    }
}
