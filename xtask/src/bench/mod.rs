//! Benchmarks, printed as ratios against baselines measured in the same run, on the same
//! machine.
mod apps;
mod build;
mod daemon;
mod sensor;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::output;

/// Repetitions of each measurement; the median is reported.
const REPEATS: usize = 5;

/// Settings of one benchmark run.
pub struct BenchOptions {
    /// Rounds of stat + open + close in the overhead workload.
    pub rounds: u64,
    /// Distinct paths per process in the capacity workload.
    pub distinct: u64,
    /// Seconds the daemon footprint is measured under load.
    pub daemon_secs: u64,
}

/// A group of benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Sensor overhead and capacity.
    Sensor,
    /// `slimd build` against `docker save`.
    Build,
    /// The real-app cases: sizes and `slimd run` wall times.
    Apps,
    /// The daemon's memory and CPU watching 20 containers, and its syscall overhead.
    Daemon,
}

pub fn run(slimd: &Path, sections: &[Section], options: &BenchOptions) -> anyhow::Result<()> {
    for section in sections {
        match section {
            Section::Sensor => sensor::run(slimd, options)?,
            Section::Build => build::run(slimd)?,
            Section::Apps => apps::run(slimd)?,
            Section::Daemon => daemon::run(slimd, options.daemon_secs, options.rounds)?,
        }
    }
    Ok(())
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    output(Command::new("docker").args(args))
}

/// Lets a container waiting for `/tmp/go` go on. It may finish and exit while `touch` is
/// still being torn down, which kills the exec (137): that is a start, too.
fn go(container: &str) -> anyhow::Result<()> {
    let status = Command::new("docker")
        .args(["exec", container, "touch", "/tmp/go"])
        .status()
        .context("running docker exec")?;
    if !matches!(status.code(), Some(0 | 137)) {
        bail!("starting the workload in {container} failed ({status})");
    }
    Ok(())
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

/// Waits until a child prints a line containing `marker` on stderr (it is then armed).
fn wait_for_stderr(child: &mut Child, marker: &str) -> anyhow::Result<()> {
    let stderr = child.stderr.take().context("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(line) = lines.next() else { break };
        if line?.contains(marker) {
            // Keep draining so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(());
        }
    }
    bail!("never saw {marker:?}")
}
