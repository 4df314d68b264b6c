use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use xtask::{bench, ebpf, fuzz, images, run_checked as run, setup, workspace_root};

#[derive(Parser)]
#[command(about = "slimd developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Set up what is missing, then slim the built-in sample image and show the result.
    Demo,
    /// Set up what is missing, then run the whole test suite against the real engine and
    /// kernel, and a short run of every fuzz target.
    Test {
        /// Skip the fuzz targets' short run.
        #[arg(long)]
        no_fuzz: bool,
        /// Arguments passed on to `cargo test` (`--test fidelity`, a name filter,
        /// `-- --nocapture`, ...); with any, the fuzz targets are not run.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz slimd's parsers of hostile input (cargo-fuzz, nightly).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets (default: all).
        targets: Vec<String>,
    },
    /// Measure sensor overhead against bare and strace runs, and sensor capacity.
    Bench {
        /// Which benchmarks (default: all).
        #[arg(value_enum)]
        sections: Vec<bench::Section>,
        /// Rounds of stat + open + close in the overhead workload.
        #[arg(long, default_value_t = 1_000_000)]
        rounds: u64,
        /// Distinct paths per process in the capacity workload.
        #[arg(long, default_value_t = 200_000)]
        distinct: u64,
        /// Seconds the daemon's footprint is measured under load.
        #[arg(long, default_value_t = 60)]
        daemon_secs: u64,
    },
    /// Install and start what slimd and its tests need (Docker engine, debootstrap, ...).
    Setup,
    /// Make the test images from Debian packages (cached between runs).
    Images,
    /// Rebuild the eBPF object with nightly + bpf-linker and refresh its stamp.
    BuildEbpf,
    /// Fail when the committed eBPF object is stale.
    CheckEbpf,
}

/// Seconds each fuzz target runs as part of the test suite.
const FUZZ_SMOKE_SECS: u64 = 15;

/// The sample workload of the demo: ACCEPTANCE.md's python case.
const DEMO_CMD: [&str; 3] = [
    "python3",
    "-c",
    "import json,sqlite3; print(json.dumps(sqlite3.sqlite_version))",
];

fn main() -> ExitCode {
    match execute(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(task: Task) -> anyhow::Result<()> {
    let root = workspace_root();
    match task {
        Task::Demo => demo(&root),
        Task::Test { no_fuzz, args } => {
            test(&root, &args)?;
            if no_fuzz || !args.is_empty() {
                return Ok(());
            }
            fuzz::run(&root, &[], FUZZ_SMOKE_SECS, false)
        }
        Task::Fuzz { seconds, targets } => fuzz::run(&root, &targets, seconds, true),
        Task::Bench {
            mut sections,
            rounds,
            distinct,
            daemon_secs,
        } => {
            setup::ensure()?;
            let slimd = cargo_build(&root, true)?;
            if sections.is_empty() {
                sections = vec![
                    bench::Section::Sensor,
                    bench::Section::Build,
                    bench::Section::Apps,
                    bench::Section::Daemon,
                ];
            }
            bench::run(
                &slimd,
                &sections,
                &bench::BenchOptions {
                    rounds,
                    distinct,
                    daemon_secs,
                },
            )
        }
        Task::Setup => setup::ensure(),
        Task::Images => {
            for tag in [images::APPS.ensure()?, images::busybox()?] {
                println!("{tag}");
            }
            Ok(())
        }
        Task::BuildEbpf => ebpf::build(&root),
        Task::CheckEbpf => ebpf::check(&root),
    }
}

fn cargo_build(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root)
        .args(["build", "--package", "slim-daemon", "--bin", "slimd"]);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building slimd failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("slimd"))
}

fn demo(root: &Path) -> anyhow::Result<()> {
    setup::ensure()?;
    let image = images::APPS.ensure()?;
    let slimd = cargo_build(root, true)?;
    let slim = format!("{image}-slim");
    println!("\n$ slimd run {image} -- {}", DEMO_CMD.join(" "));
    run(Command::new(&slimd)
        .args(["run", image, "--"])
        .args(DEMO_CMD))?;
    for tag in [image, slim.as_str()] {
        println!("\n$ docker run --rm {tag} {}", DEMO_CMD.join(" "));
        run(Command::new("docker")
            .args(["run", "--rm", tag])
            .args(DEMO_CMD))?;
    }
    println!();
    run(Command::new("docker").args(["images", "slimd-test/apps"]))
}

fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    setup::ensure()?;
    images::APPS.ensure()?;
    images::busybox()?;
    let slimd = cargo_build(root, false)?;
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root)
        .args([
            "test",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "slim-ebpf",
        ])
        .env("SLIMD_BIN", &slimd)
        .env("SLIMD_E2E", "required");
    cmd.args(args);
    run(&mut cmd)
}
