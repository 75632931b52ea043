//! The metrics port's listener (`/metrics`, `/healthz`) for `axum::serve`: at most
//! [`HTTP_MAX_CONNECTIONS`] connections, each closed unless its request head arrives within
//! `--handshake-timeout`, the oldest of those shed at the bound, accept errors reported and
//! backed off as on the gRPC port. The router answers with `Connection: close` (see
//! [`crate::http`]), so no connection lingers idle after its answer: a flood of sockets that
//! never send a request cannot keep a health probe out.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use super::accept_errors::{AcceptErrors, is_about_one_connection, is_out_of_descriptors};
use super::conn::{Conn, Greeting, Socket};
use super::tracker::Tracker;

/// Connections the metrics port holds at most (within the descriptors the engine's reserve
/// leaves over).
pub(crate) const HTTP_MAX_CONNECTIONS: usize = 64;

/// A bounded listener for the metrics port.
#[derive(Debug)]
pub(crate) struct HttpListener {
    listener: TcpListener,
    tracker: Arc<Tracker>,
    timeout: Duration,
    errors: AcceptErrors,
}

impl HttpListener {
    /// Wraps a bound listener; `timeout` is `--handshake-timeout`.
    pub(crate) fn new(listener: TcpListener, timeout: Duration) -> Self {
        Self {
            listener,
            tracker: Tracker::new(HTTP_MAX_CONNECTIONS),
            timeout,
            errors: AcceptErrors::new("metrics", "its fixed bound of"),
        }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => {
                    self.errors.succeeded();
                    accepted
                }
                Err(e) if is_about_one_connection(&e) => continue,
                Err(e) => {
                    let freed = is_out_of_descriptors(&e) && self.tracker.shed_oldest();
                    let pause = self.errors.failed(&e, &self.tracker, freed);
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            let admitted = self.tracker.admit();
            self.errors.shed(&self.tracker);
            let Some(tracked) = admitted else {
                self.tracker.refused();
                self.errors.refused(&self.tracker);
                continue;
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
            let deadline = (Instant::now() + self.timeout, self.timeout);
            let conn = Conn::new(Socket::Plain(tcp), tracked, Greeting::http1(), deadline);
            return (conn, peer);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
