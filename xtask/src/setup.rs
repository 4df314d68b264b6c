//! Makes a fresh Debian 12 machine ready for slimd: the Docker engine from Debian's packages,
//! started with published ports on loopback, and the tools the tests and benchmarks use.
use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// Debian packages and a command each provides.
const PACKAGES: [(&str, &str); 8] = [
    ("docker.io", "dockerd"),
    ("debootstrap", "debootstrap"),
    ("skopeo", "skopeo"),
    ("strace", "strace"),
    ("curl", "curl"),
    // A client on the host for the redis service case.
    ("redis-tools", "redis-cli"),
    ("gcc", "gcc"),
    // A real Prometheus and promtool for the daemon's metrics.
    ("prometheus", "promtool"),
];
const DOCKERD_LOG: &str = "/var/log/slimd-dockerd.log";

fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn engine_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs what is missing and starts the Docker engine if it is not running.
pub fn ensure() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("setting up needs root: run this as root (sudo)");
    }
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, cmd)| !has_command(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        eprintln!("installing {}", missing.join(", "));
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .context("running apt-get")
        };
        if !apt(&["update", "-qq"])?.success() {
            bail!("apt-get update failed");
        }
        let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
        install.extend(&missing);
        if !apt(&install)?.success() {
            bail!("apt-get install {} failed", missing.join(" "));
        }
    }
    if !engine_answers() {
        start_dockerd()?;
    }
    Ok(())
}

fn start_dockerd() -> anyhow::Result<()> {
    eprintln!("starting dockerd (log: {DOCKERD_LOG})");
    let log = File::create(DOCKERD_LOG).with_context(|| format!("creating {DOCKERD_LOG}"))?;
    // Published ports bind to loopback only.
    let mut cmd = Command::new("setsid");
    cmd.args(["dockerd", "--ip=127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.spawn().context("starting dockerd")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if Path::new("/var/run/docker.sock").exists() && engine_answers() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(250));
    }
    bail!("dockerd did not answer within 60 s; see {DOCKERD_LOG}")
}
