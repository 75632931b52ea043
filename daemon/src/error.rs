//! The daemon's error types: [`Error`], what can stop it from starting or serving and why a
//! single call is refused, and [`AuthError`], why a token is not accepted. Both become
//! `tonic::Status` values only in [`crate::status`].

use std::path::PathBuf;

use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::names::{Namespace, RefKey, Tenant};

use crate::auth::scope::Right;

/// Everything that can keep the daemon (or `scipcached token`) from doing its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option has a bad value, or options contradict each other.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written (a full disk says so, and what to do).
    #[error("{context} {}: {source}{}", path.display(), disk_full_hint(source))]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A signing or verification key is unusable.
    #[error("{0}")]
    Key(String),
    /// A token could not be minted.
    #[error("cannot mint a token: {0}")]
    Mint(String),
    /// The index walk at start found damage (the message names the file and `rebuild`).
    #[error("{0}")]
    IndexWalk(String),
    /// The storage engine refused to open or failed.
    #[error("{0}")]
    Store(#[from] scipcache_tiers::Error),
    /// The gRPC server failed (TLS setup or serving).
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Metrics could not be registered or rendered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),

    // Refusals of single calls. Their texts are what callers read: they say what to do, and
    // a refusal names the namespace, never the key.
    /// A request field is missing, malformed or over a limit (`INVALID_ARGUMENT`).
    #[error("{0}")]
    BadRequest(String),
    /// A read starts past the end of its blob (`OUT_OF_RANGE`).
    #[error("offset {offset} is past the end of the {size}-byte blob")]
    OffsetPastEnd {
        /// The requested offset.
        offset: u64,
        /// The blob's size.
        size: u64,
    },
    /// No ref under a key the caller may read (`NOT_FOUND`).
    #[error(
        "no ref {key} in {ns}{}",
        if *.fallbacks { ", and none under the fallback prefixes" } else { "" }
    )]
    NoRef {
        /// The namespace.
        ns: Namespace,
        /// The key asked for.
        key: RefKey,
        /// Whether fallback prefixes were searched too.
        fallbacks: bool,
    },
    /// A chunk read by id that the named blob does not hold (`NOT_FOUND`).
    #[error("chunk {id} is not part of the blob under {key} in {ns}")]
    ChunkNotInBlob {
        /// The chunk asked for.
        id: ChunkId,
        /// The namespace.
        ns: Namespace,
        /// The ref whose blob was named.
        key: RefKey,
    },
    /// A chunk Read whose chunks hold more bytes than one Read returns
    /// (`RESOURCE_EXHAUSTED`).
    #[error(
        "the {chunks} chunks asked for hold {bytes} bytes, more than the {max} bytes one \
         Chunks/Read returns; ask for fewer ids at once"
    )]
    ReadTooLarge {
        /// Distinct chunks asked for.
        chunks: usize,
        /// Their raw bytes.
        bytes: u64,
        /// The limit ([`scipcache_proto::MAX_READ_BYTES`]).
        max: u64,
    },
    /// No, a bad or an expired token (`UNAUTHENTICATED`).
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The token does not grant `right` on `ns` (`PERMISSION_DENIED`); the same text whatever
    /// exists there.
    #[error("token has no {right} access to {ns}")]
    Denied {
        /// The namespace.
        ns: Namespace,
        /// The right the call needs.
        right: Right,
    },
    /// The token does not grant `right` over all of `tenant` (`PERMISSION_DENIED`).
    #[error(
        "token has no {right} access to tenant {tenant} (that needs the scope '*:{right}' for \
         tenant {tenant})"
    )]
    DeniedTenant {
        /// The tenant.
        tenant: Tenant,
        /// The right the call needs over every namespace of it.
        right: Right,
    },
    /// The request-memory budget stayed full while a call waited for room
    /// (`RESOURCE_EXHAUSTED`).
    #[error(
        "the daemon's request-memory budget ({budget} bytes) is full: {what} needing {bytes} \
         bytes waited {} for room; retry later, or ask the operator to raise --request-memory",
        humantime::format_duration(*.waited)
    )]
    RequestMemoryFull {
        /// What needed the memory, with its article ("a commit of 9 chunks").
        what: String,
        /// Bytes it needed.
        bytes: usize,
        /// The whole budget.
        budget: usize,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// A call needs more memory than the whole request-memory budget (`RESOURCE_EXHAUSTED`).
    #[error(
        "{what} needs {bytes} bytes of request memory, larger than the daemon's whole \
         request-memory budget ({budget} bytes); send a smaller one, or ask the operator to \
         raise --request-memory"
    )]
    RequestTooLarge {
        /// What needed the memory, with its article ("a commit of 9 chunks").
        what: String,
        /// Bytes it needed.
        bytes: usize,
        /// The whole budget.
        budget: usize,
    },
    /// Only the operator may do this for every tenant (`PERMISSION_DENIED`).
    #[error(
        "token has no admin access to every tenant (that needs tenant * with the scope \
         '*:admin')"
    )]
    DeniedEveryTenant,
}

impl Error {
    /// An I/O error on `path` while doing `context` (e.g. "cannot read").
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// What to add to an I/O error that a full disk (or quota) caused.
fn disk_full_hint(source: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    if matches!(
        source.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded
    ) {
        "; the disk is full: free space on that filesystem or give it more room"
    } else {
        ""
    }
}

/// Why a token was refused. Each message says what to do; none repeats the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error(
        "missing token: send `authorization: Bearer <token>` (scipcache --token or SCIPCACHE_TOKEN)"
    )]
    Missing,
    /// Not `Bearer <jwt>`, or not a JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Past `exp`.
    #[error("token expired; mint a new one")]
    Expired,
    /// Before `nbf`.
    #[error("token not valid yet (nbf is in the future); check the clocks or wait")]
    NotYetValid,
    /// `iat` lies further in the future than the leeway allows.
    #[error(
        "token issued in the future (its iat is {ahead_s} s ahead of this server's clock, \
         beyond the leeway); check the clocks of the issuer and of this server"
    )]
    IssuedInFuture {
        /// How far ahead, in seconds.
        ahead_s: u64,
    },
    /// `exp − iat` exceeds `--jwt-max-ttl`.
    #[error(
        "token lifetime (exp - iat) of {} exceeds this server's --jwt-max-ttl of {}; mint one \
         with a shorter --ttl",
        humantime::format_duration(std::time::Duration::from_secs(*lifetime_s)),
        humantime::format_duration(std::time::Duration::from_secs(*max_s))
    )]
    LifetimeTooLong {
        /// `exp − iat`, seconds.
        lifetime_s: u64,
        /// The limit, seconds.
        max_s: u64,
    },
    /// Signature does not verify with the key.
    #[error("bad token signature: it was not signed with a key this server trusts")]
    BadSignature,
    /// The `kid` names no known key, or no key fits the token.
    #[error("bad token: {0}")]
    UnknownKey(String),
    /// `alg` is not the key's algorithm.
    #[error("bad token: algorithm {0} is not accepted for its key")]
    WrongAlgorithm(String),
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted by this server")]
    WrongIssuer,
    /// `aud` is not the configured audience.
    #[error("token audience is not accepted by this server")]
    WrongAudience,
    /// A required claim is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    /// Claims have bad values (scopes, tenant).
    #[error("bad token claims: {0}")]
    BadClaims(String),
    /// `jti` or `sub` is on the denylist.
    #[error("token revoked")]
    Revoked,
}

/// Result with the daemon's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_write_on_a_full_disk_says_the_disk_is_full_and_what_to_do() {
        let full = Error::io(
            "cannot create key file",
            "/srv/scipcache/keys/hs256.key",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        let text = full.to_string();
        assert!(
            text.starts_with("cannot create key file /srv/scipcache/keys/hs256.key: ")
                && text.ends_with(
                    "the disk is full: free space on that filesystem or give it more room"
                ),
            "{text}"
        );
        let other = Error::io(
            "cannot read key file",
            "/k",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(!other.to_string().contains("disk is full"), "{other}");
    }
}
