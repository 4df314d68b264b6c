//! Benchmarks, printed as ratios against baselines measured in the same run, on the same
//! machine.
mod build;
mod sensor;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use crate::output;

/// Repetitions of each measurement; the median is reported.
const REPEATS: usize = 5;

/// Settings of one benchmark run.
pub struct BenchOptions {
    /// Rounds of stat + open + close in the overhead workload.
    pub rounds: u64,
    /// Distinct paths per process in the capacity workload.
    pub distinct: u64,
}

/// A group of benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Sensor overhead and capacity.
    Sensor,
    /// `slimd build` against `docker save`.
    Build,
}

pub fn run(slimd: &Path, sections: &[Section], options: &BenchOptions) -> anyhow::Result<()> {
    for section in sections {
        match section {
            Section::Sensor => sensor::run(slimd, options)?,
            Section::Build => build::run(slimd)?,
        }
    }
    Ok(())
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    output(Command::new("docker").args(args))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Wall time of a command that must succeed.
fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    output(cmd)?;
    Ok(start.elapsed())
}
