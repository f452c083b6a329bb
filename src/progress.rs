//! Progress reporting. Domain code talks to the `Reporter` trait; only this module knows
//! indicatif. With a terminal on stderr, every transfer is a bar of its own (bytes, rate,
//! ETA) under one `MultiProgress`, and step lines print above the bars; with --quiet, or when
//! stderr is not a terminal, there are no bars and only the step lines (none with --quiet).

use std::io::IsTerminal;
use std::process::ChildStderr;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub trait Reporter {
    /// A one-line step ("Downloading ...", "Unpacking ..."), printed unless quiet.
    fn step(&self, msg: &str);
    /// A byte transfer of `total` bytes (if known): one bar, shown with the others.
    fn transfer(&self, what: &str, total: Option<u64>) -> Box<dyn Transfer>;
    /// Work without a byte count of its own (finishing an unpack): a spinner.
    fn activity(&self, what: &str) -> Box<dyn Transfer> {
        let _ = what;
        Box::new(NoBar)
    }
    /// Carries a helper process's stderr to the user, line by line: with bars, above them
    /// (a line written straight to the terminal would land inside a bar's line, and the bar
    /// could then not clear itself). [`Relay::wait`] after the helper ended.
    fn relay(&self, from: Option<ChildStderr>) -> Relay {
        relay_with(from, |line| eprintln!("{line}"))
    }
}

/// A helper's stderr being passed on (see [`Reporter::relay`]).
pub struct Relay(Option<std::thread::JoinHandle<()>>);

impl Relay {
    /// Waits until everything the helper wrote has been passed on (it has ended, or closed
    /// its stderr).
    pub fn wait(mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

fn relay_with(from: Option<ChildStderr>, say: impl Fn(&str) + Send + 'static) -> Relay {
    let Some(from) = from else {
        return Relay(None);
    };
    Relay(
        std::thread::Builder::new()
            .name("helper-stderr".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(from)
                    .split(b'\n')
                    .map_while(Result::ok)
                {
                    say(String::from_utf8_lossy(&line).trim_end_matches('\r'));
                }
            })
            .ok(),
    )
}

/// Send and Sync: a bar may be moved by the thread that streams a request's body.
pub trait Transfer: Send + Sync {
    fn inc(&self, n: u64);
    fn finish(&self);
    /// Whether it is drawn (callers can skip measuring progress for a hidden one).
    fn shown(&self) -> bool {
        false
    }
}

/// The terminal reporter of the CLI.
pub struct Term {
    quiet: bool,
    /// Present when bars are drawn (stderr is a terminal and not quiet).
    multi: Option<MultiProgress>,
}

impl Term {
    pub fn new(quiet: bool) -> Term {
        Term::with_bars(quiet, !quiet && std::io::stderr().is_terminal())
    }

    fn with_bars(quiet: bool, bars: bool) -> Term {
        let multi = bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Term { quiet, multi }
    }

    fn add(&self, bar: ProgressBar, what: &str) -> Box<dyn Transfer> {
        let Some(multi) = &self.multi else {
            return Box::new(NoBar);
        };
        let bar = multi.add(bar);
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Box::new(Bar(bar))
    }
}

impl Reporter for Term {
    fn step(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            // Above the bars, which are redrawn below it.
            Some(m) => {
                if m.println(msg).is_err() {
                    eprintln!("{msg}");
                }
            }
            None => eprintln!("{msg}"),
        }
    }

    fn transfer(&self, what: &str, total: Option<u64>) -> Box<dyn Transfer> {
        if self.multi.is_none() {
            return Box::new(NoBar);
        }
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{msg:<16} [{bar:20}] {bytes:>9}/{total_bytes:<9} {binary_bytes_per_sec:>11} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg:<16} {bytes:>9} {binary_bytes_per_sec:>11}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        self.add(bar, what)
    }

    fn relay(&self, from: Option<ChildStderr>) -> Relay {
        match &self.multi {
            Some(m) => {
                let m = m.clone();
                relay_with(from, move |line| {
                    if m.println(line).is_err() {
                        eprintln!("{line}");
                    }
                })
            }
            None => relay_with(from, |line| eprintln!("{line}")),
        }
    }

    fn activity(&self, what: &str) -> Box<dyn Transfer> {
        if self.multi.is_none() {
            return Box::new(NoBar);
        }
        let bar = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.add(bar, what)
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
    fn shown(&self) -> bool {
        true
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // A bar dropped on an error path must not stay on the screen.
        if !self.0.is_finished() {
            self.0.finish_and_clear();
        }
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
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(31_562_138), "30.1 MiB");
    }

    #[test]
    fn no_bars_when_quiet_or_not_a_terminal() {
        for (quiet, bars) in [(true, false), (false, false)] {
            let t = Term::with_bars(quiet, bars);
            assert!(t.multi.is_none());
        }
        // --quiet wins even on a terminal.
        assert!(Term::new(true).multi.is_none());
    }
}
