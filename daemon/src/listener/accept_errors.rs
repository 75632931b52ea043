//! Accept errors: which ones concern only the connection being accepted, and the
//! rate-limited reports and backoff of the others.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use super::tracker::{Counts, Tracker};

/// Accept errors (and shed connections) are reported at most this often, with counts.
pub(super) const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// First pause after an accept error; doubled after each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause after accept errors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Errors about the one connection being accepted, not the listener.
pub(super) fn is_about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// EMFILE (the process's limit), ENFILE (the system's), ENOBUFS, ENOMEM.
pub(super) fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Rate-limited logging and backoff of accept errors.
#[derive(Debug)]
pub(super) struct AcceptErrors {
    /// Which port (`gRPC`, `metrics`).
    port: &'static str,
    /// What sets its bound, for messages.
    bound: &'static str,
    backoff: Duration,
    since_log: u64,
    refused_since_log: u64,
    last_log: Option<Instant>,
    shed_logged: u64,
    timed_out_logged: u64,
    last_shed_log: Option<Instant>,
}

impl AcceptErrors {
    pub(super) fn new(port: &'static str, bound: &'static str) -> Self {
        Self {
            port,
            bound,
            backoff: FIRST_BACKOFF,
            since_log: 0,
            refused_since_log: 0,
            last_log: None,
            shed_logged: 0,
            timed_out_logged: 0,
            last_shed_log: None,
        }
    }

    fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= ERROR_LOG_EVERY);
        if due {
            self.last_log = Some(now);
        }
        due
    }

    pub(super) fn succeeded(&mut self) {
        self.backoff = FIRST_BACKOFF;
    }

    /// Logs (when due) and returns how long to pause before the next accept.
    pub(super) fn failed(&mut self, e: &io::Error, tracker: &Tracker, freed: bool) -> Duration {
        self.since_log += 1;
        if self.due() {
            let Counts {
                handshaking,
                established,
                ..
            } = tracker.counts();
            tracing::warn!(
                "cannot accept {} connections: {e} ({} times since the last report); \
                 {established} connections established, {handshaking} in their handshake, \
                 {} {}; {}",
                self.port,
                self.since_log,
                self.bound,
                tracker.max(),
                if is_out_of_descriptors(e) {
                    "the process is out of file descriptors: raise `ulimit -n` or lower \
                     --max-connections"
                } else {
                    "retrying with backoff"
                }
            );
            self.since_log = 0;
        }
        if freed {
            // A shed connection frees its descriptor as soon as its task runs.
            return Duration::from_millis(1);
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        pause
    }

    /// Reports connections shed or timed out in their handshake, at most once per
    /// [`ERROR_LOG_EVERY`].
    pub(super) fn shed(&mut self, tracker: &Tracker) {
        let counts = tracker.counts();
        if counts.shed == self.shed_logged && counts.timed_out == self.timed_out_logged {
            return;
        }
        let now = Instant::now();
        if self
            .last_shed_log
            .is_some_and(|last| now.duration_since(last) < ERROR_LOG_EVERY)
        {
            return;
        }
        self.last_shed_log = Some(now);
        tracing::warn!(
            "{} port: closed {} connections at {} {} and {} after --handshake-timeout since \
             the last report, none of which had completed its handshake ({} in their \
             handshake now, {} established)",
            self.port,
            counts.shed - self.shed_logged,
            self.bound,
            tracker.max(),
            counts.timed_out - self.timed_out_logged,
            counts.handshaking,
            counts.established,
        );
        self.shed_logged = counts.shed;
        self.timed_out_logged = counts.timed_out;
    }

    pub(super) fn refused(&mut self, tracker: &Tracker) {
        self.refused_since_log += 1;
        if self.due() {
            tracing::warn!(
                "{} port: {} {} reached with every connection established: closed {} new \
                 connections since the last report",
                self.port,
                self.bound,
                tracker.max(),
                self.refused_since_log
            );
            self.refused_since_log = 0;
        }
    }
}
