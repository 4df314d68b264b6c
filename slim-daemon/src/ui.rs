//! What slimd tells the person running it: progress on stderr, results on stdout.
use std::fmt::Display;

#[derive(Clone, Copy, Debug)]
pub struct Ui {
    pub quiet: bool,
}

impl Ui {
    /// A step or a detail; silenced by `-q`.
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
