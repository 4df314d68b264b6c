//! Sensor overhead: syscall-heavy loops in a container, bare, under `slimd observe`, and under
//! `strace -f` (the approach of strace-based slimming tools). Sensor capacity: the rate of
//! distinct paths the sensor takes with zero lost events.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, ensure};

use super::{BenchOptions, REPEATS, docker, median, wait_for_stderr};
use crate::{images, output};

pub(super) const IMAGE: &str = "slimd-bench/pathbench:1";
const SOURCE: &str = include_str!("../../bench/pathbench.c");
/// strace stops the process twice per syscall: it runs this fraction of the rounds (the
/// comparison is per round).
const STRACE_SHARE: u64 = 20;

/// The benchmark image: the apps image plus a static build of `pathbench.c`.
pub(super) fn bench_image() -> anyhow::Result<()> {
    let base = images::APPS.ensure()?;
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("pathbench.c");
    std::fs::write(&source, SOURCE)?;
    let binary = dir.path().join("pathbench");
    output(
        Command::new("gcc")
            .args(["-O2", "-static", "-o"])
            .arg(&binary)
            .arg(&source),
    )
    .context("compiling pathbench.c (needs gcc and libc6-dev)")?;
    let bytes = std::fs::read(&binary)?;
    images::derived(
        IMAGE,
        &format!(
            "FROM {base}\nCOPY pathbench /usr/local/bin/pathbench\nRUN chmod 755 /usr/local/bin/pathbench"
        ),
        &[("pathbench", &bytes)],
    )?;
    Ok(())
}

/// A container that waits for `/tmp/go`, then runs `workload` and exits.
struct Waiting {
    name: String,
}

impl Waiting {
    fn start(name: &str, workload: &str) -> anyhow::Result<Self> {
        let _ = docker(&["rm", "-f", name]);
        let script = format!("while [ ! -e /tmp/go ]; do sleep 0.01; done; {workload}");
        docker(&["run", "-d", "--name", name, IMAGE, "sh", "-c", &script])?;
        Ok(Waiting {
            name: name.to_owned(),
        })
    }

    fn pid(&self) -> anyhow::Result<String> {
        Ok(
            docker(&["inspect", "--format", "{{.State.Pid}}", &self.name])?
                .trim()
                .to_owned(),
        )
    }

    fn go(&self) -> anyhow::Result<()> {
        super::go(&self.name)
    }

    /// Waits for the workload to finish; the numbers it printed.
    fn finish(&self) -> anyhow::Result<Vec<u64>> {
        let code = docker(&["wait", &self.name])?;
        let out = Command::new("docker").args(["logs", &self.name]).output()?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        ensure!(
            code.trim() == "0",
            "the workload failed ({}): {}",
            code.trim(),
            stderr.trim()
        );
        let numbers: Vec<u64> = stdout
            .lines()
            .map(|l| {
                l.trim()
                    .parse::<u64>()
                    .with_context(|| format!("the workload printed {l:?}"))
            })
            .collect::<anyhow::Result<_>>()?;
        ensure!(!numbers.is_empty(), "the workload printed no timing");
        Ok(numbers)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// Event counts from a report.
struct Events {
    received: u64,
    lost: u64,
}

fn report_events(path: &Path) -> anyhow::Result<Events> {
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let events = &report["events"];
    Ok(Events {
        received: events["received"].as_u64().context("events.received")?,
        lost: events["lost"].as_u64().context("events.lost")?,
    })
}

/// Runs `workload` in a waiting container under `slimd observe`; the workload's numbers and
/// the report's events.
fn under_slimd(slimd: &Path, workload: &str) -> anyhow::Result<(Vec<u64>, Events)> {
    let container = Waiting::start("slimd-bench", workload)?;
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("report.json");
    let mut observe = Command::new(slimd)
        .args(["observe", &container.name, "-o"])
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting slimd observe")?;
    wait_for_stderr(&mut observe, "observing container")?;
    container.go()?;
    let numbers = container.finish()?;
    let status = observe.wait()?;
    ensure!(status.success(), "slimd observe failed ({status})");
    Ok((numbers, report_events(&report)?))
}

fn under_strace(workload: &str) -> anyhow::Result<Vec<u64>> {
    let container = Waiting::start("slimd-bench", workload)?;
    let mut strace = Command::new("strace")
        .args(["-f", "-e", "trace=%file,%process", "-o", "/dev/null", "-p"])
        .arg(container.pid()?)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting strace")?;
    wait_for_stderr(&mut strace, "attached")?;
    container.go()?;
    let numbers = container.finish()?;
    let _ = strace.wait();
    Ok(numbers)
}

pub(super) fn bare(workload: &str) -> anyhow::Result<Vec<u64>> {
    let container = Waiting::start("slimd-bench", workload)?;
    container.go()?;
    container.finish()
}

/// A syscall-heavy loop: its name, and its command for a number of rounds.
struct Workload {
    name: &'static str,
    command: fn(u64) -> String,
}

const WORKLOADS: [Workload; 2] = [
    Workload {
        name: "C loop: stat + open + close of one file",
        command: |rounds| format!("pathbench same {rounds}"),
    },
    Workload {
        name: "Python loop: os.stat + os.open + os.close of one file",
        command: |rounds| {
            format!(
                "python3 -c 'import os, time\nt = time.monotonic_ns()\nfor _ in range({rounds}):\n    os.stat(\"/etc/os-release\")\n    os.close(os.open(\"/etc/os-release\", os.O_RDONLY))\nprint(time.monotonic_ns() - t)'"
            )
        },
    },
];

/// Median µs per round of a workload: bare, under slimd, under strace; and events lost.
fn overhead(slimd: &Path, workload: &Workload, rounds: u64) -> anyhow::Result<([f64; 3], u64)> {
    let strace_rounds = (rounds / STRACE_SHARE).max(1);
    let per_round = |ns: Vec<u64>, rounds: u64| ns[0] as f64 / rounds as f64 / 1000.0;
    let (mut bare_us, mut slimd_us, mut strace_us) = (Vec::new(), Vec::new(), Vec::new());
    let mut lost = 0;
    for i in 0..REPEATS {
        eprintln!("{}: round {} of {REPEATS}", workload.name, i + 1);
        // Alternate which run goes first, so drift on the machine hits both alike.
        let mut observed = || -> anyhow::Result<()> {
            let (ns, events) = under_slimd(slimd, &(workload.command)(rounds))?;
            lost += events.lost;
            slimd_us.push(per_round(ns, rounds));
            Ok(())
        };
        if i % 2 == 0 {
            bare_us.push(per_round(bare(&(workload.command)(rounds))?, rounds));
            observed()?;
        } else {
            observed()?;
            bare_us.push(per_round(bare(&(workload.command)(rounds))?, rounds));
        }
        strace_us.push(per_round(
            under_strace(&(workload.command)(strace_rounds))?,
            strace_rounds,
        ));
    }
    Ok(([median(bare_us), median(slimd_us), median(strace_us)], lost))
}

pub fn run(slimd: &Path, options: &BenchOptions) -> anyhow::Result<()> {
    bench_image()?;
    let mut rows = Vec::new();
    let mut lost = 0;
    for workload in &WORKLOADS {
        let (times, workload_lost) = overhead(slimd, workload, options.rounds)?;
        lost += workload_lost;
        rows.push((workload.name, times));
    }

    // Capacity: two processes, each naming distinct paths as fast as it can.
    let distinct = format!(
        "pathbench distinct {n} & pathbench distinct {n} & wait",
        n = options.distinct
    );
    let mut rates = Vec::new();
    let mut capacity_lost = 0;
    for i in 0..REPEATS {
        eprintln!("capacity: round {} of {REPEATS}", i + 1);
        let (ns, events) = under_slimd(slimd, &distinct)?;
        let slowest = *ns.iter().max().context("no timings")? as f64 / 1e9;
        capacity_lost += events.lost;
        rates.push(events.received as f64 / slowest);
    }
    let rate = median(rates);

    println!(
        "\nSensor overhead: {} rounds in a container (1/{STRACE_SHARE} of them under strace), µs per round, median of {REPEATS}",
        options.rounds
    );
    println!("| workload | bare | under slimd observe | under strace -f |");
    println!("| --- | --- | --- | --- |");
    for (name, [b, s, t]) in rows {
        println!(
            "| {name} | {b:.2} | {s:.2} ({:.2}×) | {t:.2} ({:.1}×) |",
            s / b,
            t / b
        );
    }
    println!(
        "\nSensor capacity: 2 processes × {} distinct paths, median of {REPEATS}",
        options.distinct
    );
    println!("| events per second | lost |");
    println!("| --- | --- |");
    println!("| {rate:.0} | {capacity_lost} |");
    if lost + capacity_lost > 0 {
        println!("\nwarning: {} events were lost", lost + capacity_lost);
    }
    Ok(())
}
