//! One accepted connection as tonic (or the metrics port) sees it: the socket (plain or
//! TLS), its slot in the [`Tracker`](super::tracker::Tracker), and until the client's greeting
//! is complete, a deadline and the shed signal.
//!
//! On the gRPC port the greeting is the HTTP/2 handshake: the connection preface
//! (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) and a whole SETTINGS frame after it, the first bytes a
//! conforming client sends, before any request ([`Preface`]). On the HTTP/1.1 metrics port it
//! is a whole request head (up to its blank line). The check watches the plaintext read
//! through the connection (after TLS, which the listener terminates itself), so it costs
//! nothing once it is done. Until then every read first checks the deadline and the shed
//! signal, and fails once either fires; hyper then drops the connection, which closes it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::tracker::Tracked;

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of an HTTP/2 frame header.
const FRAME_HEADER: usize = 9;
/// The SETTINGS frame type.
const SETTINGS: u8 = 0x4;

/// How far a client has got through the start of its HTTP/2 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preface {
    /// `n` bytes of the preface matched so far.
    Magic(usize),
    /// The preface matched; `n` bytes of the first frame header are in `header`.
    Header {
        header: [u8; FRAME_HEADER],
        n: usize,
    },
    /// The first frame is a SETTINGS frame; `left` bytes of its payload are still to come.
    Payload { left: usize },
    /// Preface and SETTINGS frame are complete.
    Complete,
    /// The bytes are not HTTP/2 (hyper refuses them on its own; the deadline still applies).
    NotHttp2,
}

impl Preface {
    /// Nothing read yet.
    pub(crate) fn new() -> Self {
        Self::Magic(0)
    }

    /// Advances over bytes the client sent, in order.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match *self {
                Self::Magic(n) => {
                    let take = bytes.len().min(PREFACE.len() - n);
                    if bytes[..take] != PREFACE[n..n + take] {
                        *self = Self::NotHttp2;
                        return;
                    }
                    bytes = &bytes[take..];
                    *self = if n + take == PREFACE.len() {
                        Self::Header {
                            header: [0; FRAME_HEADER],
                            n: 0,
                        }
                    } else {
                        Self::Magic(n + take)
                    };
                }
                Self::Header { mut header, n } => {
                    let take = bytes.len().min(FRAME_HEADER - n);
                    header[n..n + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if n + take < FRAME_HEADER {
                        *self = Self::Header {
                            header,
                            n: n + take,
                        };
                        continue;
                    }
                    if header[3] != SETTINGS {
                        *self = Self::NotHttp2;
                        return;
                    }
                    let left = usize::from(header[0]) << 16
                        | usize::from(header[1]) << 8
                        | usize::from(header[2]);
                    *self = if left == 0 {
                        Self::Complete
                    } else {
                        Self::Payload { left }
                    };
                }
                Self::Payload { left } => {
                    let take = bytes.len().min(left);
                    bytes = &bytes[take..];
                    *self = if take == left {
                        Self::Complete
                    } else {
                        Self::Payload { left: left - take }
                    };
                }
                Self::Complete | Self::NotHttp2 => return,
            }
        }
    }
}

/// End of an HTTP/1.1 request head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// What a connection must send before it counts as established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// The HTTP/2 preface and SETTINGS frame.
    Http2(Preface),
    /// An HTTP/1.1 request head; `matched` bytes of its final blank line seen.
    Http1 { matched: usize },
}

impl Greeting {
    /// The gRPC port's greeting.
    pub(crate) fn http2() -> Self {
        Self::Http2(Preface::new())
    }

    /// The metrics port's greeting.
    pub(crate) fn http1() -> Self {
        Self::Http1 { matched: 0 }
    }

    /// Advances over bytes the client sent; true once the greeting is complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> bool {
        match self {
            Self::Http2(preface) => {
                preface.feed(bytes);
                *preface == Preface::Complete
            }
            Self::Http1 { matched } => {
                for &b in bytes {
                    if *matched == HEAD_END.len() {
                        break;
                    }
                    *matched = if b == HEAD_END[*matched] {
                        *matched + 1
                    } else {
                        usize::from(b == b'\r')
                    };
                }
                *matched == HEAD_END.len()
            }
        }
    }
}

/// The socket under a connection.
#[derive(Debug)]
pub(crate) enum Socket {
    /// Plain HTTP/2.
    Plain(TcpStream),
    /// HTTP/2 over TLS, the TLS handshake done.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Socket {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }
}

/// The watch kept until the handshake completes.
struct Handshake {
    greeting: Greeting,
    deadline: Pin<Box<Sleep>>,
    shed: Pin<Box<WaitForCancellationFutureOwned>>,
    timeout: Duration,
    /// Whether the deadline has passed (and been counted).
    expired: bool,
}

/// A connection handed to tonic.
pub(crate) struct Conn {
    socket: Socket,
    tracked: Tracked,
    handshake: Option<Handshake>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("socket", &self.socket)
            .field("handshaking", &self.handshake.is_some())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// A connection whose `greeting` must be complete by `deadline` (`timeout` after it was
    /// accepted).
    pub(crate) fn new(
        socket: Socket,
        tracked: Tracked,
        greeting: Greeting,
        (deadline, timeout): (Instant, Duration),
    ) -> Self {
        let shed = Box::pin(tracked.shed_token().clone().cancelled_owned());
        Self {
            socket,
            tracked,
            handshake: Some(Handshake {
                greeting,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                shed,
                timeout,
                expired: false,
            }),
        }
    }

    /// Fails when the handshake watch says the connection must close.
    fn check_handshake(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(handshake) = &mut self.handshake else {
            return Ok(());
        };
        if handshake.shed.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed at the connection bound: the oldest connection still in its \
                 handshake makes room for a new one",
            ));
        }
        if handshake.deadline.as_mut().poll(cx).is_ready() {
            if !handshake.expired {
                handshake.expired = true;
                self.tracked.timed_out();
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no complete handshake within --handshake-timeout {}",
                    humantime::format_duration(handshake.timeout)
                ),
            ));
        }
        Ok(())
    }

    fn saw(&mut self, bytes: &[u8]) {
        let Some(handshake) = &mut self.handshake else {
            return;
        };
        if handshake.greeting.feed(bytes) && self.tracked.establish() {
            self.handshake = None;
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_handshake(cx)?;
        let before = buf.filled().len();
        match &mut this.socket {
            Socket::Plain(tcp) => ready!(Pin::new(tcp).poll_read(cx, buf))?,
            Socket::Tls(tls) => ready!(Pin::new(tls.as_mut()).poll_read(cx, buf))?,
        }
        if this.handshake.is_some() {
            this.saw(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().socket {
            Socket::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Socket::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().socket {
            Socket::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Socket::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.socket {
            Socket::Plain(tcp) => tcp.is_write_vectored(),
            Socket::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Socket::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().socket {
            Socket::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Socket::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.socket.tcp().connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preface and an empty SETTINGS frame, as a client sends them.
    fn start_of_http2(settings_payload: &[u8]) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        let len = settings_payload.len();
        bytes.extend_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            SETTINGS,
            0,
            0,
            0,
            0,
            0,
        ]);
        bytes.extend_from_slice(settings_payload);
        bytes
    }

    #[test]
    fn the_preface_and_a_settings_frame_complete_the_handshake_in_any_split() {
        for payload in [&[][..], &[0, 3, 0, 0, 0, 100, 0, 4, 0, 0x80, 0, 0][..]] {
            let bytes = start_of_http2(payload);
            for split in 0..=bytes.len() {
                let mut p = Preface::new();
                p.feed(&bytes[..split]);
                if split < bytes.len() {
                    assert_ne!(p, Preface::Complete, "complete after {split} bytes");
                }
                p.feed(&bytes[split..]);
                assert_eq!(p, Preface::Complete, "split at {split}");
            }
            let mut byte_by_byte = Preface::new();
            for b in &bytes {
                byte_by_byte.feed(std::slice::from_ref(b));
            }
            assert_eq!(byte_by_byte, Preface::Complete);
        }
    }

    #[test]
    fn other_bytes_never_complete_the_handshake() {
        let mut http1 = Preface::new();
        http1.feed(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(http1, Preface::NotHttp2);
        let mut not_settings = Preface::new();
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0x1, 0, 0, 0, 0, 1]);
        not_settings.feed(&bytes);
        assert_eq!(not_settings, Preface::NotHttp2);
        let mut partial = Preface::new();
        partial.feed(&PREFACE[..10]);
        assert_eq!(partial, Preface::Magic(10));
    }

    #[test]
    fn an_http1_request_head_completes_at_its_blank_line_in_any_split() {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 0..=head.len() {
            let mut g = Greeting::http1();
            let early = g.feed(&head[..split]);
            assert_eq!(early, split == head.len(), "split at {split}");
            assert!(g.feed(&head[split..]), "split at {split}");
        }
        let mut g = Greeting::http1();
        assert!(
            !g.feed(b"GET / HTTP/1.1\r\nHost: x\r\r\n\r"),
            "no blank line yet"
        );
        assert!(g.feed(b"\n"));
    }
}
