//! Deadlines and retries for unary calls.
//!
//! Every unary call gets the configured deadline, both as `grpc-timeout` (so the server can
//! give up too) and as a local timer. Idempotent calls (FindMissing, ServerInfo, Get, List,
//! Stat, Stats, Warm) are retried on `UNAVAILABLE` with exponential backoff, at most [`ATTEMPTS`]
//! times in all; chunk uploads (`push`) and the opening of reads (`pull`) use the same bound
//! and backoff. `UNAVAILABLE` includes a connection that broke mid-call (a daemon that died or
//! restarted: see `transport`), so a restart within the backoff goes unnoticed and a dead
//! daemon is given up on within a second. A call that may have changed something (Delete,
//! Commit) is not retried, because the first attempt may have succeeded.

use std::future::Future;
use std::time::Duration;

use crate::connect::Client;
use crate::error::{Error, Result};

/// Attempts of an idempotent call, the first included.
pub(crate) const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled before each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Extra time the server is given in `grpc-timeout`, so that the local timer fires first and
/// reports which call was late.
const SERVER_GRACE: Duration = Duration::from_secs(1);

/// The wait before retry number `retry` (0 for the first retry).
pub(crate) fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << retry.min(10))
}

impl Client {
    /// Runs an idempotent unary call with deadline and retries; `f` is called once per attempt
    /// with a clone of the client and a fresh request.
    pub(crate) async fn unary<M, T, F, Fut>(&self, call: &'static str, f: F, msg: M) -> Result<T>
    where
        M: Clone,
        F: Fn(Client, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut retry = 0;
        loop {
            match self.unary_once(call, &f, msg.clone()).await {
                Err(Error::Status(s))
                    if s.code() == tonic::Code::Unavailable && retry + 1 < ATTEMPTS =>
                {
                    tracing::debug!(call, retry, error = %s.message(), "retrying");
                    tokio::time::sleep(backoff(retry)).await;
                    retry += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs a unary call once, with the deadline.
    pub(crate) async fn unary_once<M, T, F, Fut>(
        &self,
        call: &'static str,
        f: &F,
        msg: M,
    ) -> Result<T>
    where
        F: Fn(Client, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.timeout();
        let mut req = tonic::Request::new(msg);
        req.set_timeout(timeout + SERVER_GRACE);
        match tokio::time::timeout(timeout, f(self.clone(), req)).await {
            Ok(answer) => Ok(answer?.into_inner()),
            Err(_) => Err(Error::Timeout { call, timeout }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stays_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(99), backoff(10));
    }

    #[test]
    fn a_dead_server_is_given_up_on_within_a_second_of_backoff() {
        let waited: Duration = (0..ATTEMPTS - 1).map(backoff).sum();
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        const { assert!(ATTEMPTS > 1, "unavailable must be retried at least once") };
    }
}
