//! The real-app cases: original size, slim size, the floor (the bytes of the files the
//! workload used), and the wall time of `slimd run`; and, for the python case, the wall time
//! of the strace-based approach (ptrace the workload, then build from the paths it named).
use std::{
    collections::BTreeSet,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};

use super::{REPEATS, docker, median, timed, wait_for_stderr};
use crate::{images, output};

const PYTHON: &str = "import json,sqlite3; print(json.dumps(sqlite3.sqlite_version))";
const REDIS_CLIENT: &str = "until redis-cli -p $SLIMD_PORT_6379 ping >/dev/null 2>&1; do sleep 0.05; done; \
                            redis-cli -p $SLIMD_PORT_6379 set greeting hello; redis-cli -p $SLIMD_PORT_6379 get greeting";
const TAG: &str = "slimd-bench/app:slim";
/// SlimToolkit on the same workloads, from ACCEPTANCE.md: (slim size, wall time).
const SLIMTOOLKIT: [(&str, &str, &str); 3] = [
    ("python", "13.3 MB", "12.3 s"),
    ("nginx", "9.9 MB", "16.0 s"),
    ("redis", "17.7 MB", "17.2 s"),
];

struct Case {
    name: &'static str,
    image: String,
    /// Options and command for `slimd run`.
    args: Vec<String>,
}

fn cases() -> anyhow::Result<Vec<Case>> {
    let apps = images::APPS.ensure()?.to_owned();
    let strings = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    Ok(vec![
        Case {
            name: "python",
            image: apps.clone(),
            args: strings(&["--", "python3", "-c", PYTHON]),
        },
        Case {
            name: "nginx",
            image: images::nginx()?,
            args: strings(&["--http-probe"]),
        },
        Case {
            name: "redis",
            image: images::redis()?,
            args: strings(&["--host-exec", REDIS_CLIENT]),
        },
        Case {
            name: "shell pipeline",
            image: apps.clone(),
            args: strings(&["--", "sh", "-c", "ls /etc | sort | head -3 | tr a-z A-Z"]),
        },
        Case {
            name: "perl",
            image: apps,
            args: strings(&[
                "--",
                "perl",
                "-MList::Util=sum",
                "-e",
                "print sum(1..10), qq{\\n}",
            ]),
        },
    ])
}

fn size_of(image: &str) -> anyhow::Result<u64> {
    docker(&["image", "inspect", "--format", "{{.Size}}", image])?
        .trim()
        .parse()
        .context("an image size")
}

/// The bytes of the files a report says were used.
fn floor(report: &Path) -> anyhow::Result<u64> {
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(report)?)?;
    Ok(report["paths"]
        .as_object()
        .context("report paths")?
        .values()
        .filter(|p| p["kind"] == "file")
        .filter_map(|p| p["size"].as_u64())
        .sum())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn run(slimd: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let report = dir.path().join("report.json");
    let mut rows = Vec::new();
    for case in cases()? {
        let mut times = Vec::new();
        for i in 0..REPEATS {
            eprintln!("{}: round {} of {REPEATS}", case.name, i + 1);
            let took = timed(
                Command::new(slimd)
                    .args(["run", "-q", "--tag", TAG, "-o"])
                    .arg(&report)
                    .arg(&case.image)
                    .args(&case.args),
            )?;
            times.push(took.as_secs_f64());
        }
        rows.push((
            case.name,
            size_of(&case.image)?,
            size_of(TAG)?,
            floor(&report)?,
            median(times),
        ));
        let _ = docker(&["rmi", "-f", TAG]);
    }
    let strace = strace_approach(slimd, images::APPS.ensure()?)?;

    println!("\nReal-app cases: `slimd run` wall time median of {REPEATS}, release build");
    println!(
        "| case | original | slim | floor (used files) | slimd run | SlimToolkit slim | SlimToolkit time |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, original, slim, floor, secs) in rows {
        let (st_size, st_time) = SLIMTOOLKIT
            .iter()
            .find(|(n, _, _)| *n == name)
            .map_or(("-", "-"), |(_, s, t)| (*s, *t));
        println!(
            "| {name} | {} | {} | {} | {secs:.2} s | {st_size} | {st_time} |",
            mb(original),
            mb(slim),
            mb(floor)
        );
    }
    println!(
        "\nThe strace-based approach on the python case (ptrace the workload, build from the paths it named): {strace:.2} s"
    );
    Ok(())
}

/// Runs the python case under `strace -f` in a container, collects the paths the trace
/// names, and builds a slim image from them; the wall time of all of it.
fn strace_approach(slimd: &Path, image: &str) -> anyhow::Result<f64> {
    let name = "slimd-bench-strace";
    let _ = docker(&["rm", "-f", name]);
    let start = Instant::now();
    let script = format!("while [ ! -e /tmp/go ]; do sleep 0.01; done; exec python3 -c '{PYTHON}'");
    docker(&["run", "-d", "--name", name, image, "sh", "-c", &script])?;
    let pid = docker(&["inspect", "--format", "{{.State.Pid}}", name])?
        .trim()
        .to_owned();
    let dir = tempfile::tempdir()?;
    let trace = dir.path().join("trace.txt");
    let mut strace = Command::new("strace")
        .args(["-f", "-e", "trace=%file,%process", "-o"])
        .arg(&trace)
        .args(["-p", &pid])
        .stderr(Stdio::piped())
        .spawn()
        .context("starting strace")?;
    wait_for_stderr(&mut strace, "attached")?;
    super::go(name)?;
    docker(&["wait", name])?;
    let _ = strace.wait();
    let _ = docker(&["rm", "-f", name]);
    let text = std::fs::read_to_string(&trace)?;
    let paths: BTreeSet<&str> = text
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|p| p.starts_with('/') && !p.starts_with("/proc") && !p.starts_with("/dev"))
        .collect();
    if paths.is_empty() {
        bail!("strace saw no paths");
    }
    let list = dir.path().join("paths.txt");
    std::fs::write(&list, paths.into_iter().collect::<Vec<_>>().join("\n"))?;
    output(
        Command::new(slimd)
            .args(["build", "-q", image, "--tag", TAG, "--include-file"])
            .arg(&list),
    )?;
    let took = start.elapsed().as_secs_f64();
    let _ = docker(&["rmi", "-f", TAG]);
    Ok(took)
}
