//! The one way this crate runs blocking work (LMDB, files, CPU-heavy codecs) and starts OS
//! threads. Nothing else in the crate calls `spawn_blocking` or `std::thread::spawn`.

use crate::error::{Error, Result};

/// Runs `f` on tokio's blocking pool and waits for it.
pub(crate) async fn run<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    spawn(f).await
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
