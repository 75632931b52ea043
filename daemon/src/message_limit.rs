//! A message over the size limit answers `RESOURCE_EXHAUSTED` naming the limit.
//!
//! tonic refuses a message over `max_decoding_message_size` (or a response over
//! `max_encoding_message_size`) itself, with `OUT_OF_RANGE` and the text "Error, decoded
//! message length too large: found N bytes, the limit is: L bytes". gRPC's convention for a
//! message too large is `RESOURCE_EXHAUSTED`, and `OUT_OF_RANGE` means something else to our
//! callers (a read offset past the end of a blob). This layer rewrites exactly tonic's
//! size-limit statuses, wherever they travel: in the headers of a trailers-only response (a
//! refused request) or in the trailers of a streamed one.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::{Code, Status};

/// tonic's texts for a message over the limit, by direction.
const DECODE_TOO_LARGE: &str = "Error, decoded message length too large";
const ENCODE_TOO_LARGE: &str = "Error, encoded message length too large";

/// The layer; `limit` is the configured message size limit, named in the rewritten text
/// when tonic's own text cannot be read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessageLimitLayer {
    limit: usize,
}

impl MessageLimitLayer {
    /// A layer for messages of at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> tower::Layer<S> for MessageLimitLayer {
    type Service = MessageLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MessageLimitService {
            inner,
            limit: self.limit,
        }
    }
}

/// See [`MessageLimitLayer`].
#[derive(Clone, Debug)]
pub(crate) struct MessageLimitService<S> {
    inner: S,
    limit: usize,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for MessageLimitService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = http::Response<LimitBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let limit = self.limit;
        let future = self.inner.call(req);
        Box::pin(async move {
            let mut response = future.await?;
            rewrite(response.headers_mut(), limit);
            Ok(response.map(|inner| LimitBody { inner, limit }))
        })
    }
}

/// A response body whose trailers get the same rewrite.
#[derive(Debug)]
pub(crate) struct LimitBody<B> {
    inner: B,
    limit: usize,
}

impl<B: Body<Data = Bytes> + Unpin> Body for LimitBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let limit = self.limit;
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            rewrite(trailers, limit);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Replaces tonic's size-limit status in `headers` (response headers or trailers), if that
/// is what they carry.
fn rewrite(headers: &mut HeaderMap, limit: usize) {
    if headers.get("grpc-status").map(http::HeaderValue::as_bytes) != Some(b"11") {
        return;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    let Some(replacement) = replacement(&status, limit) else {
        return;
    };
    // `add_header` sets grpc-status and grpc-message (percent-encoded) and clears details.
    headers.remove("grpc-status-details-bin");
    if let Err(e) = replacement.add_header(headers) {
        tracing::warn!("cannot rewrite an oversized-message status: {e}");
    }
}

/// The `RESOURCE_EXHAUSTED` status for one of tonic's size-limit statuses.
fn replacement(status: &Status, limit: usize) -> Option<Status> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    let text = status.message();
    let what = if text.starts_with(DECODE_TOO_LARGE) {
        "request"
    } else if text.starts_with(ENCODE_TOO_LARGE) {
        "response"
    } else {
        return None;
    };
    let (found, limit) = sizes(text).unwrap_or((None, limit));
    let found = found.map_or_else(String::new, |n| format!(" of {n} bytes"));
    let advice = if what == "request" {
        "send smaller messages (fewer ids or chunks per message)"
    } else {
        "ask for less per call (fewer ids, or a range)"
    };
    Some(Status::resource_exhausted(format!(
        "{what} message{found} is over the message size limit of {limit} bytes ({} MiB); \
         {advice}",
        limit >> 20
    )))
}

/// The found size and the limit in tonic's text `… found N bytes, the limit is: L bytes`.
fn sizes(text: &str) -> Option<(Option<usize>, usize)> {
    let number_after = |marker: &str| -> Option<usize> {
        let rest = &text[text.find(marker)? + marker.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((number_after("found "), number_after("the limit is:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(status: &Status) -> HeaderMap {
        let mut headers = HeaderMap::new();
        assert!(status.add_header(&mut headers).is_ok());
        headers
    }

    #[test]
    fn tonics_oversize_status_becomes_resource_exhausted_with_the_limit() {
        let tonic_says = Status::out_of_range(
            "Error, decoded message length too large: found 16777300 bytes, the limit is: \
             16777216 bytes",
        );
        let mut headers = headers_of(&tonic_says);
        rewrite(&mut headers, 1);
        let Some(status) = Status::from_header_map(&headers) else {
            panic!("no status left in {headers:?}");
        };
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("16777216 bytes"), "{status:?}");
        assert!(status.message().contains("16777300 bytes"), "{status:?}");
        assert!(
            status.message().starts_with("request message"),
            "{status:?}"
        );
    }

    #[test]
    fn other_out_of_range_statuses_are_left_alone() {
        let ours = Status::out_of_range("offset 10 is past the end of the 5-byte blob");
        let mut headers = headers_of(&ours);
        let before = headers.clone();
        rewrite(&mut headers, 16 << 20);
        assert_eq!(headers, before);
        let mut ok = headers_of(&Status::ok(""));
        let before = ok.clone();
        rewrite(&mut ok, 16 << 20);
        assert_eq!(ok, before);
    }

    #[test]
    fn an_unreadable_text_still_names_the_configured_limit() {
        let odd = Status::out_of_range("Error, encoded message length too large: ???");
        let Some(status) = replacement(&odd, 16 << 20) else {
            panic!("tonic's prefix alone is enough");
        };
        assert!(
            status.message().contains("16777216 bytes (16 MiB)"),
            "{status:?}"
        );
        assert!(
            status.message().starts_with("response message is"),
            "{status:?}"
        );
    }
}
