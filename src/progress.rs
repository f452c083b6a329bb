//! Progress reporting. Domain code talks to the `Reporter` trait; only this module knows
//! indicatif, and bars stay hidden when stderr is not a terminal or with --quiet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub trait Reporter {
    /// A one-line step ("Downloading ...", "Unpacking ..."), printed unless quiet.
    fn step(&self, msg: &str);
    /// A byte transfer of `total` bytes (if known).
    fn transfer(&self, what: &str, total: Option<u64>) -> Box<dyn Transfer>;
}

pub trait Transfer {
    fn inc(&self, n: u64);
    fn finish(&self);
}

/// The terminal reporter of the CLI.
pub struct Term {
    pub quiet: bool,
}

impl Term {
    fn bars(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }
}

impl Reporter for Term {
    fn step(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    fn transfer(&self, what: &str, total: Option<u64>) -> Box<dyn Transfer> {
        if !self.bars() {
            return Box::new(NoBar);
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Box::new(Bar(bar))
    }
}

struct Bar(ProgressBar);

impl Transfer for Bar {
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

struct NoBar;

impl Transfer for NoBar {
    fn inc(&self, _: u64) {}
    fn finish(&self) {}
}

/// Human-readable byte count (binary units), e.g. "30.1 MiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_human() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(31_562_138), "30.1 MiB");
    }
}
