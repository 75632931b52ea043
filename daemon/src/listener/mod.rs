//! The daemon's own accept loop for the gRPC port, feeding tonic's
//! `serve_with_incoming_shutdown`.
//!
//! tonic accepts whatever the listener yields and never closes a connection that stays
//! silent, so a few thousand idle sockets would use up the process's descriptors. Here:
//! - every connection takes a slot in a [`Tracker`] of `--max-connections` slots; at the
//!   bound the oldest connection still in its handshake is shed (closed) to admit the new
//!   one; if every slot holds an established connection the new one is closed at once;
//! - a connection that has not completed its HTTP/2 handshake (with TLS: first the TLS
//!   handshake, which this loop does itself, then the HTTP/2 preface and SETTINGS frame; see
//!   [`conn`]) `--handshake-timeout` after it was accepted is closed;
//! - accept errors are logged at most once per 10 s with a count; when the process is out of
//!   descriptors the oldest handshaking connection is shed to free one, and otherwise the
//!   loop backs off (up to 1 s) instead of spinning ([`accept_errors`]).
//!
//! The metrics port ([`HttpListener`]) gets the same treatment with a fixed bound, the
//! greeting being a whole HTTP/1.1 request head.

mod accept_errors;
mod conn;
mod http_port;
mod tracker;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use accept_errors::{AcceptErrors, is_about_one_connection, is_out_of_descriptors};
use conn::{Conn, Greeting, Socket};
pub(crate) use http_port::HttpListener;
use tracker::Tracker;

/// Accepted connections waiting for tonic to take them.
const HANDOFF_QUEUE: usize = 64;

/// How the gRPC port accepts connections.
#[derive(Clone)]
pub(crate) struct AcceptSettings {
    /// `--max-connections` (after the descriptor reserve).
    pub(crate) max_connections: usize,
    /// `--handshake-timeout`.
    pub(crate) handshake_timeout: Duration,
    /// TLS, done by the loop so that the HTTP/2 handshake can be watched in plaintext.
    pub(crate) tls: Option<TlsAcceptor>,
    /// TCP keepalive time of accepted sockets.
    pub(crate) tcp_keepalive: Duration,
}

impl std::fmt::Debug for AcceptSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptSettings")
            .field("max_connections", &self.max_connections)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Starts accepting on `listener` until `cancel` fires or tonic drops the stream; returns
/// the stream of connections for `serve_with_incoming_shutdown`, and the connection table.
pub(crate) fn incoming(
    listener: TcpListener,
    settings: AcceptSettings,
    cancel: CancellationToken,
) -> (ReceiverStream<io::Result<Conn>>, Arc<Tracker>) {
    let tracker = Tracker::new(settings.max_connections);
    let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
    tokio::spawn(accept_loop(listener, settings, tracker.clone(), tx, cancel));
    (ReceiverStream::new(rx), tracker)
}

async fn accept_loop(
    listener: TcpListener,
    settings: AcceptSettings,
    tracker: Arc<Tracker>,
    tx: mpsc::Sender<io::Result<Conn>>,
    cancel: CancellationToken,
) {
    let mut errors = AcceptErrors::new("gRPC", "--max-connections");
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                errors.succeeded();
                accepted
            }
            // The peer gave up between its SYN and our accept: nothing to do.
            Err(e) if is_about_one_connection(&e) => continue,
            Err(e) => {
                let freed = is_out_of_descriptors(&e) && tracker.shed_oldest();
                let pause = errors.failed(&e, &tracker, freed);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let admitted = tracker.admit();
        errors.shed(&tracker);
        let Some(tracked) = admitted else {
            tracker.refused();
            errors.refused(&tracker);
            drop(tcp);
            continue;
        };
        configure(&tcp, settings.tcp_keepalive);
        let deadline = Instant::now() + settings.handshake_timeout;
        let timeout = settings.handshake_timeout;
        match &settings.tls {
            None => {
                let conn = Conn::new(
                    Socket::Plain(tcp),
                    tracked,
                    Greeting::http2(),
                    (deadline, timeout),
                );
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                // One task per TLS handshake, so a slow one holds up nobody; there are at
                // most --max-connections of them, each ending by its deadline.
                let (acceptor, tx, cancel) = (acceptor.clone(), tx.clone(), cancel.clone());
                tokio::spawn(async move {
                    let shed = tracked.shed_token().clone();
                    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
                    let tls = tokio::select! {
                        () = cancel.cancelled() => return,
                        () = shed.cancelled() => return,
                        tls = handshake => tls,
                    };
                    match tls {
                        Ok(Ok(tls)) => {
                            let socket = Socket::Tls(Box::new(tls));
                            let conn =
                                Conn::new(socket, tracked, Greeting::http2(), (deadline, timeout));
                            let _ = tx.send(Ok(conn)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => {
                            tracked.timed_out();
                            tracing::debug!("no TLS handshake from {peer} in time");
                        }
                    }
                });
            }
        }
    }
}

/// Sets what tonic's own listener set: no Nagle delay, TCP keepalive.
fn configure(tcp: &TcpStream, keepalive: Duration) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {e}");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(keepalive);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!("cannot set TCP keepalive: {e}");
    }
}
