//! A progress bar on stderr for long walks: drawn only when stderr is a terminal and the
//! store is large enough for the wait to be noticed.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use strata::inspect::Progress;

/// Stores smaller than this are checked too fast for a bar to help.
const LARGE_STORE_BYTES: u64 = 64 << 20;
/// The bar is redrawn at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const WIDTH: usize = 40;

pub(crate) struct Bar {
    enabled: bool,
    drawn: bool,
    last: Option<Instant>,
}

impl Bar {
    pub(crate) fn for_stderr() -> Bar {
        Bar { enabled: std::io::stderr().is_terminal(), drawn: false, last: None }
    }

    pub(crate) fn update(&mut self, p: Progress) {
        if !self.enabled || p.total_bytes < LARGE_STORE_BYTES || self.last.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let filled = (p.fraction() * WIDTH as f64) as usize;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let line = format!(
            "\r[{}{}] {:>3.0}%  {:.0}/{:.0} MiB",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled.min(WIDTH)),
            p.fraction() * 100.0,
            mib(p.done_bytes),
            mib(p.total_bytes)
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the bar so that the report starts on a clean line.
    pub(crate) fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\r", " ".repeat(WIDTH + 24));
            let _ = err.flush();
        }
    }
}
