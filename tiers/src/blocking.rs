//! The one way this crate runs blocking work (LMDB, files, CPU-heavy codecs) and starts OS
//! threads. Nothing else in the crate calls `spawn_blocking` or `std::thread::spawn`. Short,
//! bounded jobs may run on the caller's async worker instead, timed ([`Short`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Runs `f` on tokio's blocking pool and waits for it.
pub(crate) async fn run<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    spawn(f).await
}

/// Longest a short job may take on the async worker before [`Short`] sends the next ones to
/// the blocking pool. Tokio's guidance is 10–100 µs between awaits; a lookup's read of
/// memory-mapped, resident LMDB pages takes a few to a few tens of microseconds.
const SHORT_BUDGET: Duration = Duration::from_millis(1);
/// How long short jobs go to the blocking pool after one overran [`SHORT_BUDGET`].
const SHORT_COOLDOWN: Duration = Duration::from_secs(1);

/// Runs short blocking jobs (bounded reads of memory-mapped LMDB pages) on the calling async
/// worker, where the round trip through the blocking pool costs more than the job: the hop
/// wakes a pool thread and then the caller again, ~45 µs a lookup and a quarter of the
/// lookups a second on the 2-core machine. A page that is not resident makes the read wait
/// for the disk, so every inline job is timed: once one takes longer than 1 ms, jobs go to
/// the blocking pool ([`run`]) for the next second, then inline again.
#[derive(Debug)]
pub(crate) struct Short {
    started: Instant,
    /// Microseconds after `started` until which jobs go to the pool.
    pool_until_us: AtomicU64,
}

impl Short {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            pool_until_us: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether the next job runs inline.
    pub(crate) fn inline(&self) -> bool {
        self.now_us() >= self.pool_until_us.load(Ordering::Relaxed)
    }

    /// Runs `f` inline or, after an overrun, on the blocking pool.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if !self.inline() {
            return run(f).await;
        }
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        if took > SHORT_BUDGET {
            let until = self
                .now_us()
                .saturating_add(SHORT_COOLDOWN.as_micros() as u64);
            self.pool_until_us.store(until, Ordering::Relaxed);
            tracing::debug!(
                took_us = took.as_micros() as u64,
                "a short read overran its budget on the async worker; short reads go to the \
                 blocking pool for a while"
            );
        }
        out
    }
}

/// Starts `f` on tokio's blocking pool now; the returned [`Job`] waits for its result. Lets a
/// caller keep several jobs running while it does other work.
pub(crate) fn spawn<T, F>(f: F) -> Job<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    #[allow(clippy::disallowed_methods)] // the one place the engine calls it
    Job(tokio::task::spawn_blocking(f))
}

/// A started blocking job; awaiting it gives the job's result.
#[derive(Debug)]
pub(crate) struct Job<T>(tokio::task::JoinHandle<Result<T>>);

impl<T> Future for Job<T> {
    type Output = Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(Error::ShuttingDown),
            })
    }
}

/// Runs `f` over `items` split into parts of at most `part` items, one blocking job per part
/// started at once (so the work spreads over the cores), and returns the outputs in input
/// order. `f` gets a whole part, so it can open one LMDB transaction per part.
pub(crate) async fn map_parts<I, O, F>(items: Vec<I>, part: usize, f: F) -> Result<Vec<O>>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(Vec<I>) -> Result<Vec<O>> + Send + Sync + 'static,
{
    let part = part.max(1);
    if items.len() <= part {
        return run(move || f(items)).await;
    }
    let f = std::sync::Arc::new(f);
    let mut jobs = Vec::with_capacity(items.len().div_ceil(part));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<I> = items.by_ref().take(part).collect();
        let f = f.clone();
        jobs.push(spawn(move || f(chunk)));
    }
    let mut out = Vec::new();
    for job in jobs {
        out.extend(job.await?);
    }
    Ok(out)
}

/// Starts a named OS thread (the LMDB writer, cold encoders).
pub(crate) fn spawn_thread<F>(name: String, f: F) -> Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| Error::io(format!("starting thread {name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn short_jobs_run_inline_until_one_overruns_then_go_to_the_pool() {
        let short = Short::new();
        let here = std::thread::current().id();
        let ran_on = short
            .run(move || Ok(std::thread::current().id()))
            .await
            .expect("job");
        assert_eq!(ran_on, here, "a quick job runs on the caller's thread");
        assert!(short.inline());

        short
            .run(|| {
                std::thread::sleep(SHORT_BUDGET * 2);
                Ok(())
            })
            .await
            .expect("slow job");
        assert!(!short.inline(), "after an overrun jobs go to the pool");
        let ran_on = short
            .run(move || Ok(std::thread::current().id()))
            .await
            .expect("job");
        assert_ne!(ran_on, here, "the next job ran on the blocking pool");
    }
}
