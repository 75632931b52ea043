//! The layer between tonic's generated clients and the channel that turns a failed connection
//! into `UNAVAILABLE` before any caller sees it.
//!
//! When the daemon dies mid-call, the channel fails the call with a transport error, which
//! tonic turns into `UNKNOWN: transport error` or `INTERNAL: h2 protocol error`. This layer
//! hands tonic a ready-made status instead ([`transport_failure`]: tonic passes a status it
//! finds in the error through unchanged), so the retries on `UNAVAILABLE` of idempotent calls
//! (FindMissing, chunk uploads, reads) see the failure for what it is, wherever they match
//! the raw status. Failures while a response streams are mapped where the status becomes an
//! [`crate::Error`].

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::TryFutureExt;
use futures::future::MapErr;
use tonic::codegen::{Service, StdError};

use crate::error::connection_failed;

/// Wraps a channel service; its errors become boxed [`tonic::Status`]es naming the server.
#[derive(Clone, Debug)]
pub(crate) struct TransportErrors<S> {
    inner: S,
    url: Arc<str>,
}

impl<S> TransportErrors<S> {
    pub(crate) fn new(inner: S, url: &str) -> Self {
        Self {
            inner,
            url: url.into(),
        }
    }
}

/// A channel error as the status the client reports.
fn to_status(error: StdError, url: &str) -> StdError {
    Box::new(connection_failed(
        tonic::Status::from_error(error),
        Some(url),
    ))
}

impl<S, R> Service<R> for TransportErrors<S>
where
    S: Service<R>,
    S::Error: Into<StdError>,
{
    type Response = S::Response;
    type Error = StdError;
    type Future = MapErr<S::Future, Box<dyn FnOnce(S::Error) -> StdError + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| to_status(e.into(), &self.url))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let url = Arc::clone(&self.url);
        self.inner
            .call(req)
            .map_err(Box::new(move |e: S::Error| to_status(e.into(), &url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service whose calls fail as a reset connection does.
    #[derive(Clone, Debug)]
    struct Reset;

    impl Service<()> for Reset {
        type Response = ();
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<(), std::io::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )))
        }
    }

    #[tokio::test]
    async fn a_failed_call_reaches_tonic_as_an_unavailable_status() {
        let error = TransportErrors::new(Reset, "http://127.0.0.1:7741")
            .call(())
            .await
            .err();
        // What tonic's generated clients do with a service error.
        let status = error.map(tonic::Status::from_error);
        assert_eq!(
            status.as_ref().map(tonic::Status::code),
            Some(tonic::Code::Unavailable)
        );
        let message = status.map(|s| s.message().to_owned()).unwrap_or_default();
        assert!(
            message.starts_with("the connection to scipcached at http://127.0.0.1:7741 failed")
                && message.contains("connection reset by peer"),
            "{message}"
        );
    }
}
