//! Progress bars on stderr: only on a terminal, only for human output, and only for
//! transfers of more than a few MB (a small transfer is over before a bar helps).

use std::sync::OnceLock;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scipcache_client::Progress;

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
