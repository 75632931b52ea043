//! The client's one error type, and how it reads on a terminal.
//!
//! Every failure keeps enough to print the contract's one-line cause
//! (`<status in words>: <message>`, see [`Error::code_words`]) and to pick the CLI's exit code
//! ([`Error::exit_code`]). A server's answer keeps its gRPC code in [`Error::Status`].
//!
//! A status the client's own transport made when the connection broke (tonic reports a reset
//! connection as `UNKNOWN: transport error`, a broken HTTP/2 stream as `INTERNAL: h2 protocol
//! error`) becomes `UNAVAILABLE` on its way into [`Error`] ([`transport_failure`]), so that
//! scripts, and the client's own retries, treat a daemon that died like one that is down.

use std::time::Duration;

pub use scipcache_proto::convert::MissingChunkList;
use scipcache_proto::convert::decode_missing_chunks;
use scipcache_tiers::ids::{BlobId, ChunkId};
use tonic::Code;

/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a gRPC status (its code is kept), or the connection to it
    /// failed (then `UNAVAILABLE`, see [`transport_failure`]).
    #[error("{}", status_message(.0))]
    Status(tonic::Status),
    /// An argument the client itself refuses: a namespace, key, TTL, label, URL or option mix.
    #[error("{0}")]
    InvalidArgument(String),
    /// Local file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file (`--ca`, `--cert`, `--key`) is missing, unreadable or not what it must be.
    #[error("{option} {}: {cause}", .path.display())]
    TlsFile {
        /// The option that named it, e.g. `--key`.
        option: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        cause: String,
    },
    /// The TLS files are each well-formed but cannot be used together.
    #[error("{context}: {}", root_cause(.source))]
    Tls {
        /// What was being set up, naming the files.
        context: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A chunk received from the server is undecodable or does not hash to its id.
    #[error("chunk {id} failed verification: {detail}")]
    ChunkMismatch {
        /// The id the server sent it under.
        id: ChunkId,
        /// What was wrong.
        detail: String,
    },
    /// The bytes received do not hash to the blob id the server announced.
    #[error("blob {expected} failed verification: the bytes received hash to {actual}")]
    BlobMismatch {
        /// The id the server announced.
        expected: BlobId,
        /// What the received bytes hash to.
        actual: BlobId,
    },
    /// The server sent fewer or more bytes than it announced.
    #[error("expected {expected} bytes from the server, received {actual}")]
    SizeMismatch {
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// The server broke the protocol (malformed id, messages out of order).
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// A unary call got no answer within the configured timeout.
    #[error("{call} got no answer within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The gRPC method.
        call: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The blob is beyond a limit the server advertises.
    #[error("{0}")]
    TooLarge(String),
    /// A commit still lacked chunks, and the client could not or would no longer upload
    /// them again (the blob came from a stream, the file changed, or retries ran out).
    #[error("the server lacks {} of the blob: {why}", chunks(*.missing))]
    CommitIncomplete {
        /// How many chunks the last commit was refused for.
        missing: u64,
        /// Why the push gave up, and what to do.
        why: String,
    },
    /// A bug in the client: a worker task panicked or stopped early.
    #[error("{0}")]
    Internal(String),
    /// The user interrupted the command (Ctrl-C, SIGTERM).
    #[error("interrupted by a signal")]
    Interrupted,
    /// The user interrupted a server-side run (gc, fsck): the message says what happens to
    /// it.
    #[error("{0}")]
    Cancelled(String),
    /// fsck found damage it did not repair: what, and what to do.
    #[error("{0}")]
    Damaged(String),
}

/// Result with the client's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Status(transport_failure(status))
    }
}

/// `status` as `UNAVAILABLE` when the client's transport made it because the connection
/// failed (reset, closed, refused, a broken HTTP/2 stream), with the cause in the message; any
/// other status unchanged.
///
/// tonic gives a status a source only when it made it from a local error (hyper, h2, I/O); a
/// status the server sent has none, so a genuine `UNKNOWN` or `INTERNAL` from the server
/// stays what it is. Of the local codes, `UNKNOWN`, `INTERNAL` (h2's protocol, internal and
/// connect errors), `CANCELLED` (h2's CANCEL, a request hyper dropped with its connection) and
/// `UNAVAILABLE` (connect errors) all mean the connection is gone; the others
/// (`RESOURCE_EXHAUSTED` for ENHANCE_YOUR_CALM, `PERMISSION_DENIED` for INADEQUATE_SECURITY)
/// say something of their own.
pub fn transport_failure(status: tonic::Status) -> tonic::Status {
    connection_failed(status, None)
}

/// [`transport_failure`], naming the server's URL when it is known. A status it made already
/// (its source is the status it replaced) is returned as it is.
pub(crate) fn connection_failed(status: tonic::Status, server: Option<&str>) -> tonic::Status {
    use Code::{Cancelled, Internal, Unavailable, Unknown};
    let mapped = std::error::Error::source(&status).is_some_and(|s| s.is::<tonic::Status>());
    if mapped
        || !is_local(&status)
        || !matches!(status.code(), Unknown | Internal | Cancelled | Unavailable)
    {
        return status;
    }
    let message = match server {
        Some(url) => format!(
            "the connection to scipcached at {url} failed: {}",
            status_message(&status)
        ),
        None => format!(
            "the connection to the server failed: {}",
            status_message(&status)
        ),
    };
    let mut unavailable = tonic::Status::unavailable(message);
    // Kept as the source: the new status still reads as made locally, and is not mapped twice.
    unavailable.set_source(std::sync::Arc::new(status));
    unavailable
}

/// The innermost cause of an error, e.g. `Connection reset by peer (os error 104)` under
/// tonic's `transport error`.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut root = error;
    while let Some(cause) = root.source() {
        root = cause;
    }
    root.to_string()
}

/// The status's message, followed by the innermost cause of a locally made status ("received
/// fatal alert: CertificateRequired", "Connection refused"), which tonic leaves out of the
/// message. A status the server sent has no cause.
pub(crate) fn status_message(status: &tonic::Status) -> String {
    let message = if status.message().is_empty() {
        format!("the server answered {}", code_words(status.code()))
    } else {
        status.message().to_owned()
    };
    match std::error::Error::source(status).map(root_cause) {
        Some(cause) if !message.contains(&cause) => format!("{message}: {cause}"),
        _ => message,
    }
}

/// `1 chunk`, `2 chunks`.
fn chunks(n: u64) -> String {
    if n == 1 {
        "1 chunk".to_owned()
    } else {
        format!("{n} chunks")
    }
}

/// True when the status was made by the client's transport (connection, TLS, HTTP/2), not
/// sent by the server.
pub(crate) fn is_local(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// A gRPC code in the words the contract prints.
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code closest to this error: the server's own for [`Error::Status`].
    pub fn code(&self) -> Code {
        match self {
            Self::Status(s) => s.code(),
            Self::InvalidArgument(_) | Self::TlsFile { .. } | Self::Tls { .. } => {
                Code::InvalidArgument
            }
            Self::Io { source, .. } => io_code(source.kind()),
            Self::ChunkMismatch { .. } | Self::BlobMismatch { .. } | Self::SizeMismatch { .. } => {
                Code::DataLoss
            }
            Self::Protocol(_) | Self::Internal(_) => Code::Internal,
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::TooLarge(_) => Code::ResourceExhausted,
            Self::CommitIncomplete { .. } => Code::FailedPrecondition,
            Self::Interrupted | Self::Cancelled(_) => Code::Cancelled,
            Self::Damaged(_) => Code::DataLoss,
        }
    }

    /// The `<status in words>` of the contract's error line, e.g. `permission denied`.
    pub fn code_words(&self) -> &str {
        code_words(self.code())
    }

    /// The CLI's exit code: 2 for arguments the client refuses (TLS files that cannot be used
    /// included: they are options the user gave), 3 for NOT_FOUND from the
    /// server, 4 for UNAUTHENTICATED or PERMISSION_DENIED from the server, 1 otherwise.
    ///
    /// Only the server's answers map to 3 and 4: a local file that is missing is not a cache
    /// miss, so CI must not read it as one.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::InvalidArgument(_) | Self::TlsFile { .. } | Self::Tls { .. } => 2,
            Self::Status(s) => match s.code() {
                Code::NotFound => 3,
                Code::Unauthenticated | Code::PermissionDenied => 4,
                _ => 1,
            },
            _ => 1,
        }
    }

    /// True when a commit failed because the server lacks chunks: pushing again from the start
    /// uploads them.
    pub fn is_missing_chunks(&self) -> bool {
        match self {
            Self::Status(s) => s.code() == Code::FailedPrecondition,
            Self::CommitIncomplete { .. } => true,
            _ => false,
        }
    }

    /// The machine-readable list of missing chunks a commit's `FAILED_PRECONDITION` carries
    /// (metadata [`scipcache_proto::MISSING_CHUNKS_METADATA`]). `Ok(None)` for any other
    /// error, and for a server that sends no list; a list that does not decode is a protocol
    /// error.
    pub fn missing_chunks(&self) -> Result<Option<MissingChunkList>> {
        let Self::Status(status) = self else {
            return Ok(None);
        };
        if status.code() != Code::FailedPrecondition {
            return Ok(None);
        }
        let Some(value) = status
            .metadata()
            .get_bin(scipcache_proto::MISSING_CHUNKS_METADATA)
        else {
            return Ok(None);
        };
        let bytes = value.to_bytes().map_err(|e| {
            Error::Protocol(format!("the missing-chunks metadata is not base64: {e}"))
        })?;
        decode_missing_chunks(&bytes)
            .map(Some)
            .map_err(|e| Error::Protocol(e.to_string()))
    }
}

impl From<scipcache_tiers::Error> for Error {
    /// Names parsed from a caller's text (the only engine errors a client meets directly)
    /// fail as invalid arguments.
    fn from(e: scipcache_tiers::Error) -> Self {
        match e {
            scipcache_tiers::Error::InvalidArgument(msg) => Self::InvalidArgument(msg),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(format!("a worker task of the client failed: {e}"))
    }
}

fn io_code(kind: std::io::ErrorKind) -> Code {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound => Code::NotFound,
        K::PermissionDenied => Code::PermissionDenied,
        K::AlreadyExists => Code::AlreadyExists,
        K::InvalidInput | K::InvalidData | K::IsADirectory | K::NotADirectory => {
            Code::InvalidArgument
        }
        K::StorageFull | K::QuotaExceeded | K::OutOfMemory | K::FileTooLarge => {
            Code::ResourceExhausted
        }
        K::TimedOut => Code::DeadlineExceeded,
        K::Interrupted => Code::Cancelled,
        _ => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use scipcache_proto::convert::encode_missing_chunks;

    use super::*;

    fn status(code: Code) -> Error {
        Error::Status(tonic::Status::new(code, "msg"))
    }

    #[test]
    fn server_codes_map_to_contract_exit_codes() {
        assert_eq!(status(Code::NotFound).exit_code(), 3);
        assert_eq!(status(Code::Unauthenticated).exit_code(), 4);
        assert_eq!(status(Code::PermissionDenied).exit_code(), 4);
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::DataLoss,
            Code::ResourceExhausted,
            Code::Unavailable,
            Code::Internal,
            Code::Unknown,
        ] {
            assert_eq!(status(code).exit_code(), 1, "{code:?}");
        }
    }

    #[test]
    fn client_side_refusals_are_bad_usage_and_local_failures_are_one() {
        assert_eq!(Error::InvalidArgument("bad ns".into()).exit_code(), 2);
        let missing = Error::io(
            "cannot open x",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(missing.exit_code(), 1);
        assert_eq!(missing.code_words(), "not found");
        let lost = Error::BlobMismatch {
            expected: BlobId::of(b"a"),
            actual: BlobId::of(b"b"),
        };
        assert_eq!(lost.exit_code(), 1);
        assert_eq!(lost.code_words(), "data loss");
    }

    #[test]
    fn words_follow_the_contract() {
        let cases = [
            (Code::PermissionDenied, "permission denied"),
            (Code::Unauthenticated, "unauthenticated"),
            (Code::NotFound, "not found"),
            (Code::InvalidArgument, "invalid argument"),
            (Code::FailedPrecondition, "failed precondition"),
            (Code::DataLoss, "data loss"),
            (Code::ResourceExhausted, "resource exhausted"),
            (Code::Unavailable, "unavailable"),
            (Code::Internal, "internal"),
            (Code::DeadlineExceeded, "deadline exceeded"),
            (Code::Cancelled, "cancelled"),
            (Code::Aborted, "aborted"),
            (Code::AlreadyExists, "already exists"),
            (Code::Unknown, "unknown"),
        ];
        for (code, words) in cases {
            assert_eq!(status(code).code_words(), words);
        }
    }

    #[test]
    fn status_displays_only_its_message() {
        let e = Error::Status(tonic::Status::permission_denied(
            "token has no read access to acme/web/app",
        ));
        assert_eq!(
            format!("{}: {e}", e.code_words()),
            "permission denied: token has no read access to acme/web/app"
        );
        let empty = Error::Status(tonic::Status::new(Code::Unavailable, ""));
        assert_eq!(empty.to_string(), "the server answered unavailable");
    }

    fn missing_status(code: Code, value: Option<&[u8]>) -> Error {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(value) = value {
            metadata.insert_bin(
                scipcache_proto::MISSING_CHUNKS_METADATA,
                tonic::metadata::MetadataValue::from_bytes(value),
            );
        }
        Error::Status(tonic::Status::with_metadata(
            code,
            "3 chunks are missing",
            metadata,
        ))
    }

    #[test]
    fn the_missing_chunk_list_is_read_from_the_status_metadata() -> Result<()> {
        let ids: Vec<ChunkId> = (0..3u8).map(|i| ChunkId::of(&[i])).collect();
        let encoded = encode_missing_chunks(&ids, ids.len() as u64);
        let list = missing_status(Code::FailedPrecondition, Some(&encoded))
            .missing_chunks()?
            .ok_or(Error::Internal("no list".into()))?;
        assert_eq!(list.listed, ids);
        assert_eq!(list.total, 3);
        assert!(list.is_complete());
        Ok(())
    }

    #[test]
    fn a_cut_missing_chunk_list_keeps_the_total() -> Result<()> {
        let ids: Vec<ChunkId> = (0..200u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        let encoded = encode_missing_chunks(&ids, ids.len() as u64);
        let list = missing_status(Code::FailedPrecondition, Some(&encoded))
            .missing_chunks()?
            .ok_or(Error::Internal("no list".into()))?;
        assert_eq!(list.listed, ids[..scipcache_proto::MAX_LISTED_MISSING]);
        assert_eq!(list.total, 200);
        assert!(!list.is_complete());
        Ok(())
    }

    #[test]
    fn no_list_without_metadata_or_for_other_codes_and_garbage_is_a_protocol_error() -> Result<()> {
        let encoded = encode_missing_chunks(&[ChunkId::of(b"x")], 1);
        assert_eq!(
            missing_status(Code::FailedPrecondition, None).missing_chunks()?,
            None
        );
        assert_eq!(
            missing_status(Code::InvalidArgument, Some(&encoded)).missing_chunks()?,
            None
        );
        assert_eq!(Error::Protocol("x".into()).missing_chunks()?, None);
        let garbage = missing_status(Code::FailedPrecondition, Some(&[0xff, 0x01]));
        assert!(matches!(garbage.missing_chunks(), Err(Error::Protocol(_))));
        Ok(())
    }

    /// A status as tonic makes it from a local error (`Status::from_error`).
    fn local(error: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::from(tonic::Status::from_error(Box::new(error)))
    }

    fn reset() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )
    }

    /// An error wrapping another, as hyper's wraps h2's, which wraps the socket's.
    #[derive(Debug)]
    struct Wrapping(&'static str, Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.1)
        }
    }

    #[test]
    fn a_reset_connection_is_unavailable_naming_the_cause() {
        let e = local(reset());
        assert_eq!(e.code(), Code::Unavailable);
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "the connection to the server failed: connection reset by peer"
        );
        let nested = local(Wrapping(
            "transport error",
            Box::new(Wrapping("h2 protocol error", Box::new(reset()))),
        ));
        assert_eq!(nested.code(), Code::Unavailable);
        assert_eq!(
            nested.to_string(),
            "the connection to the server failed: transport error: connection reset by peer"
        );
    }

    #[test]
    fn local_internal_cancelled_and_unavailable_statuses_are_connection_failures() {
        for code in [
            Code::Internal,
            Code::Cancelled,
            Code::Unknown,
            Code::Unavailable,
        ] {
            let mut status = tonic::Status::new(code, "h2 protocol error: stream no longer needed");
            status.set_source(std::sync::Arc::new(reset()));
            let e = Error::from(status);
            assert_eq!(e.code(), Code::Unavailable, "{code:?}");
            assert!(
                e.to_string().contains("h2 protocol error"),
                "the original message stays: {e}"
            );
        }
    }

    #[test]
    fn a_failure_is_mapped_once_and_names_the_server_when_known() {
        let status = tonic::Status::from_error(Box::new(reset()));
        let once = connection_failed(status, Some("http://127.0.0.1:7741"));
        let message = once.message().to_owned();
        assert_eq!(
            message,
            "the connection to scipcached at http://127.0.0.1:7741 failed: connection reset by peer"
        );
        let twice = Error::from(once);
        assert_eq!(twice.code(), Code::Unavailable);
        assert_eq!(twice.to_string(), message);
    }

    #[test]
    fn statuses_the_server_sent_keep_their_code() {
        for code in [Code::Unknown, Code::Internal, Code::Cancelled] {
            let e = Error::from(tonic::Status::new(code, "the handler failed"));
            assert_eq!(e.code(), code);
            assert_eq!(e.to_string(), "the handler failed");
        }
    }

    #[test]
    fn local_statuses_with_a_meaning_of_their_own_keep_it() {
        for code in [Code::ResourceExhausted, Code::PermissionDenied] {
            let mut status = tonic::Status::new(code, "h2 protocol error");
            status.set_source(std::sync::Arc::new(reset()));
            let e = Error::from(status);
            assert_eq!(e.code(), code);
            assert_eq!(e.to_string(), "h2 protocol error: connection reset by peer");
        }
    }

    #[test]
    fn a_tls_file_error_names_the_option_the_file_and_the_cause_and_is_bad_usage() {
        let e = Error::TlsFile {
            option: "--key",
            path: "/etc/ci/client.key".into(),
            cause: "cannot read it: No such file or directory (os error 2)".into(),
        };
        assert_eq!(
            format!("{}: {e}", e.code_words()),
            "invalid argument: --key /etc/ci/client.key: cannot read it: No such file or \
             directory (os error 2)"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn an_incomplete_commit_is_a_failed_precondition_exiting_one() {
        let e = Error::CommitIncomplete {
            missing: 2,
            why: "the blob came from a stream".into(),
        };
        assert!(e.is_missing_chunks());
        assert_eq!(e.code_words(), "failed precondition");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            "the server lacks 2 chunks of the blob: the blob came from a stream"
        );
    }

    #[test]
    fn only_failed_precondition_asks_for_a_push_retry() {
        assert!(status(Code::FailedPrecondition).is_missing_chunks());
        assert!(!status(Code::InvalidArgument).is_missing_chunks());
        assert!(!Error::Protocol("x".into()).is_missing_chunks());
    }
}
