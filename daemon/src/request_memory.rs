//! The request-memory budget (`--request-memory`, `--request-memory-wait`): the bytes of
//! commit and upload data the daemon buffers at once, shared by every call.
//!
//! A call reserves what it is about to hold and gives it back by dropping the
//! [`Reservation`]: a commit reserves its whole manifest from its header, before any entry
//! arrives (so a commit of millions of chunks cannot start that it could not finish); an
//! upload reserves each message as it arrives, and the chunks of that message keep their
//! share until the store holds them. When the budget is full a call waits, first come first
//! served, up to `--request-memory-wait`, then fails with `RESOURCE_EXHAUSTED`; a call that
//! needs more than the whole budget fails at once.
//!
//! A reservation is all or nothing, and an upload that has to wait first hands what it holds
//! to the store ([`crate::service::chunks`]), so waiting calls hold nothing of the budget and
//! cannot wait for each other in a cycle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::Semaphore;

use crate::error::Error;

/// The shared budget; clones share it.
#[derive(Clone)]
pub struct RequestMemory {
    inner: Arc<Inner>,
}

struct Inner {
    /// One permit per byte.
    room: Semaphore,
    total: usize,
    wait: Duration,
    /// Bytes reserved now, for `/metrics`.
    reserved: IntGauge,
}

impl fmt::Debug for RequestMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMemory")
            .field("total", &self.inner.total)
            .field("available", &self.inner.room.available_permits())
            .field("wait", &self.inner.wait)
            .finish()
    }
}

impl RequestMemory {
    /// A budget of `total` bytes (at most [`Semaphore::MAX_PERMITS`]); calls wait up to `wait`
    /// for room. `reserved` shows the bytes reserved.
    pub fn new(total: u64, wait: Duration, reserved: IntGauge) -> Self {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                room: Semaphore::new(total),
                total,
                wait,
                reserved,
            }),
        }
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> usize {
        self.inner.total - self.inner.room.available_permits()
    }

    /// A reservation of nothing, to merge others into.
    pub fn none(&self) -> Reservation {
        Reservation {
            inner: self.inner.clone(),
            bytes: 0,
        }
    }

    /// Reserves `bytes` for `what` (e.g. "a commit of 4194304 chunks") if there is room now;
    /// `Ok(None)` if there is not. Fails at once if `bytes` exceeds the whole budget.
    pub fn try_reserve(&self, bytes: usize, what: &str) -> Result<Option<Reservation>, Error> {
        let n = self.permits(bytes, what)?;
        match self.inner.room.try_acquire_many(n) {
            Ok(permit) => {
                permit.forget();
                Ok(Some(self.granted(bytes)))
            }
            Err(_) => Ok(None),
        }
    }

    /// Reserves `bytes` for `what`, waiting up to `--request-memory-wait` for room. Fails at
    /// once if `bytes` exceeds the whole budget.
    pub async fn reserve(&self, bytes: usize, what: &str) -> Result<Reservation, Error> {
        let n = self.permits(bytes, what)?;
        let full = || Error::RequestMemoryFull {
            what: what.to_owned(),
            bytes,
            budget: self.inner.total,
            waited: self.inner.wait,
        };
        match tokio::time::timeout(self.inner.wait, self.inner.room.acquire_many(n)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(self.granted(bytes))
            }
            // The semaphore is never closed; a closed one could grant nothing.
            Ok(Err(_)) | Err(_) => Err(full()),
        }
    }

    /// The permits for `bytes`, or why they can never be granted.
    fn permits(&self, bytes: usize, what: &str) -> Result<u32, Error> {
        let too_large = || Error::RequestTooLarge {
            what: what.to_owned(),
            bytes,
            budget: self.inner.total,
        };
        if bytes > self.inner.total {
            return Err(too_large());
        }
        u32::try_from(bytes).map_err(|_| too_large())
    }

    fn granted(&self, bytes: usize) -> Reservation {
        self.inner.reserved.add(gauge(bytes));
        Reservation {
            inner: self.inner.clone(),
            bytes,
        }
    }
}

/// Bytes of the budget held by a call; given back when dropped.
pub struct Reservation {
    inner: Arc<Inner>,
    bytes: usize,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Moves `bytes` (at most what this holds) into a reservation of their own.
    pub fn split(&mut self, bytes: usize) -> Self {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Self {
            inner: self.inner.clone(),
            bytes,
        }
    }

    /// Takes over what `other` holds.
    pub fn merge(&mut self, mut other: Self) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.inner.reserved.sub(gauge(self.bytes));
            self.inner.room.add_permits(self.bytes);
        }
    }
}

fn gauge(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: u64) -> Result<RequestMemory, prometheus::Error> {
        let gauge = IntGauge::new("reserved", "bytes reserved")?;
        Ok(RequestMemory::new(total, Duration::from_millis(50), gauge))
    }

    #[tokio::test]
    async fn reservations_give_their_bytes_back_when_dropped_split_or_merged()
    -> Result<(), Box<dyn std::error::Error>> {
        let b = budget(100)?;
        let mut a = b.reserve(60, "a").await?;
        assert_eq!(b.reserved(), 60);
        assert!(b.try_reserve(50, "b")?.is_none(), "only 40 bytes are left");
        let part = a.split(25);
        assert_eq!((a.bytes(), part.bytes(), b.reserved()), (35, 25, 60));
        drop(part);
        assert_eq!(b.reserved(), 35);
        let mut held = b.none();
        held.merge(a);
        held.merge(b.reserve(10, "c").await?);
        assert_eq!((held.bytes(), b.reserved()), (45, 45));
        assert_eq!(held.inner.reserved.get(), 45, "the gauge follows");
        drop(held);
        assert_eq!(b.reserved(), 0);
        assert_eq!(b.inner.reserved.get(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_full_budget_makes_calls_wait_then_fail_and_too_large_ones_fail_at_once()
    -> Result<(), Box<dyn std::error::Error>> {
        let b = budget(100)?;
        let held = b.reserve(80, "first").await?;
        let waited = b.reserve(30, "an upload message").await;
        assert!(
            matches!(
                &waited,
                Err(Error::RequestMemoryFull {
                    bytes: 30,
                    budget: 100,
                    ..
                })
            ),
            "{waited:?}"
        );
        let too_large = b.try_reserve(101, "commit").map(|r| r.is_some());
        assert!(
            matches!(too_large, Err(Error::RequestTooLarge { bytes: 101, .. })),
            "{too_large:?}"
        );
        // A waiting call gets its room as soon as it is given back.
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.reserve(30, "second").await.map(|r| r.bytes()) }
        });
        tokio::task::yield_now().await;
        drop(held);
        assert_eq!(waiting.await??, 30);
        Ok(())
    }
}
