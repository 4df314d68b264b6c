//! Coverage-guided fuzzing of slimd's parsers of hostile input, with cargo-fuzz (libFuzzer).
//!
//! The targets live in `slim-daemon/fuzz`. Each run starts from the committed corpus and
//! replays every committed crash (`regressions/<target>/`) before it explores; a new crash
//! fails the task and is left in `artifacts/<target>/` to be fixed and committed as a
//! regression.
use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

/// Every fuzz target, one per parser of hostile input.
pub const TARGETS: [&str; 6] = [
    "report",
    "tar_layer",
    "elf",
    "ld_so_conf",
    "oci_layout",
    "mountinfo",
];

fn has_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs cargo-fuzz when it is missing (libFuzzer needs the nightly toolchain).
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if has_cargo_fuzz() {
        return Ok(());
    }
    eprintln!("installing cargo-fuzz");
    crate::run_checked(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--version",
        "0.13.2",
    ]))
    .context("installing cargo-fuzz (needs the nightly toolchain as well)")
}

/// Runs each target (all when `targets` is empty) for `seconds`. With `grow_corpus`, new
/// inputs that reach new code are added to the committed corpus; otherwise they are kept in a
/// temporary directory and dropped.
pub fn run(root: &Path, targets: &[String], seconds: u64, grow_corpus: bool) -> anyhow::Result<()> {
    ensure_cargo_fuzz()?;
    let dir = root.join("slim-daemon/fuzz");
    let targets: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    let mut failed = Vec::new();
    for target in &targets {
        if !TARGETS.contains(target) {
            bail!(
                "no fuzz target {target}; the targets are {}",
                TARGETS.join(", ")
            );
        }
        let corpus = dir.join("corpus").join(target);
        let regressions = dir.join("regressions").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&regressions)?;
        // libFuzzer adds what it finds to the first directory it is given.
        let scratch = tempfile::tempdir()?;
        let mut dirs = vec![corpus.as_path(), regressions.as_path()];
        if !grow_corpus {
            dirs.insert(0, scratch.path());
        }
        eprintln!("fuzzing {target} for {seconds} s");
        let status = Command::new("cargo")
            .current_dir(root.join("slim-daemon"))
            .args([
                "+nightly",
                "fuzz",
                "run",
                "--sanitizer",
                "none",
                "--target-dir",
            ])
            .arg(root.join("target/fuzz"))
            .arg(target)
            .args(&dirs)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"])
            .status()
            .with_context(|| format!("running cargo fuzz for {target}"))?;
        if !status.success() {
            failed.push(*target);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzzing found crashes in {} (see slim-daemon/fuzz/artifacts/)",
            failed.join(", ")
        );
    }
    Ok(())
}
