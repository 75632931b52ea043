//! Progress bars on stderr: only on a terminal, only for human output, and only for
//! transfers of more than a few MB (a small transfer is over before a bar helps).

use std::sync::OnceLock;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scipcache_client::{Progress, RunProgress};

/// Transfers at least this large get a bar.
const MIN_BYTES: u64 = 4 * 1024 * 1024;

/// An indicatif bar created when the transfer starts and turns out to be large enough.
#[derive(Debug)]
pub(crate) struct TermProgress {
    verb: &'static str,
    bar: OnceLock<ProgressBar>,
}

impl TermProgress {
    pub(crate) fn new(verb: &'static str) -> Self {
        Self {
            verb,
            bar: OnceLock::new(),
        }
    }
}

impl Progress for TermProgress {
    fn start(&self, total: u64) {
        if total < MIN_BYTES {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let style = ProgressStyle::with_template(
                "{msg} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(style)
                .with_message(self.verb)
        });
        // Called once per transfer; a second start (a new transfer on the same bar) resets it.
        bar.set_length(total);
        bar.set_position(0);
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.get() {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

/// A spinner (or, once the step's size is known, a bar) showing where a server-side run (gc,
/// fsck) is: its step and counts.
#[derive(Debug)]
pub(crate) struct RunBar {
    bar: Option<ProgressBar>,
}

impl RunBar {
    /// A bar on stderr when `shown`, else nothing.
    pub(crate) fn new(verb: &'static str, shown: bool) -> Self {
        let bar = shown.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(verb);
            bar.set_message("starting");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// Shows `p`.
    pub(crate) fn update(&self, p: &RunProgress) {
        let Some(bar) = &self.bar else {
            return;
        };
        let template = if p.total > 0 {
            "{spinner} {prefix}: {msg} [{bar:32}] {pos}/{len} {elapsed}"
        } else {
            "{spinner} {prefix}: {msg} {pos} {elapsed}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(p.phase.clone());
        bar.set_length(p.total);
        bar.set_position(p.done);
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_transfers_get_no_bar() {
        let p = TermProgress::new("push");
        p.start(1024);
        p.advance(1024);
        p.finish();
        assert!(p.bar.get().is_none());
        p.start(MIN_BYTES);
        assert!(p.bar.get().is_some());
        p.finish();
    }
}
