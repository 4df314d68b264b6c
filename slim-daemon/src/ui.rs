//! What slimd tells the person running it: progress on stderr (a spinner per step on a
//! terminal, plain lines otherwise), results on stdout.
use std::{
    fmt::Display,
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy, Debug)]
pub struct Ui {
    pub quiet: bool,
    /// Also a line when a step starts (without a terminal: spinners show that).
    pub verbose: bool,
    /// Spinners (stderr is a terminal) or plain lines.
    pub interactive: bool,
}

impl Ui {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Ui {
            quiet,
            verbose,
            interactive: std::io::stderr().is_terminal(),
        }
    }

    /// A detail; silenced by `-q`.
    pub fn info(&self, msg: impl Display) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// A warning; always shown.
    pub fn warn(&self, msg: impl Display) {
        eprintln!("slimd: warning: {msg}");
    }

    /// The result of the command; always shown.
    pub fn result(&self, msg: impl Display) {
        println!("{msg}");
    }

    /// A step that takes a while: a spinner with its elapsed time on a terminal; a line when
    /// it ends either way.
    pub fn step(&self, what: impl Into<String>) -> Step {
        let what = what.into();
        crate::interrupt::set_phase(&what);
        if self.verbose && !self.quiet && !self.interactive {
            eprintln!("… {what}");
        }
        let bar = if self.quiet {
            None
        } else if self.interactive {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} ({elapsed})")
                    .expect("a valid template"),
            );
            bar.set_prefix(what.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            Some(bar)
        } else {
            None
        };
        Step {
            what,
            bar,
            quiet: self.quiet,
            started: Instant::now(),
        }
    }
}

/// A step in progress; see [`Ui::step`].
pub struct Step {
    what: String,
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
}

impl Step {
    /// Live detail (counters) next to the step's name, on a terminal.
    pub fn set_detail(&self, detail: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(detail.into());
        }
    }

    /// Ends the step, with a final detail.
    pub fn done(self, detail: impl Display) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if !self.quiet {
            let line = format!("{} {detail}", self.what);
            eprintln!(
                "✓ {} ({:.2} s)",
                line.trim_end(),
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}

/// Bytes as `276.1 MB` (powers of ten, as `docker images` shows them).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A count with thousands separators: `21,877`.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(size(276_100_000), "276.1 MB");
        assert_eq!(size(999), "999 B");
        assert_eq!(count(21877), "21,877");
        assert_eq!(count(1203), "1,203");
        assert_eq!(count(12), "12");
    }
}
