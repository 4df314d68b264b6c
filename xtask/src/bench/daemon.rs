//! The daemon's footprint: resident memory and CPU while it watches 20 labelled containers
//! that together name about 1,000 distinct paths a second, against the same daemon idle in
//! the same run; and the syscall overhead it puts on a container it does not watch.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{
    REPEATS, docker, median,
    sensor::{IMAGE, bare, bench_image},
};

const LABEL: &str = "slimd.bench.daemon=1";
const CONTAINERS: usize = 20;
/// Distinct paths each container names per second.
const PER_CONTAINER: usize = 50;

/// A daemon of the benchmark's own.
struct Daemon {
    child: Child,
    pid: u32,
    port: u16,
    _state: tempfile::TempDir,
}

impl Daemon {
    fn start(slimd: &Path) -> anyhow::Result<Self> {
        let state = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(slimd)
            .args(["-q", "daemon", "--state-dir"])
            .arg(state.path())
            .args(["--listen", &format!("127.0.0.1:{port}"), "--label", LABEL])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting slimd daemon")?;
        let pid = child.id();
        let daemon = Daemon {
            child,
            pid,
            port,
            _state: state,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.metric("slimd_syscall_program_attached").is_none() {
            if Instant::now() > deadline {
                bail!("the daemon never answered on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(daemon)
    }

    /// A value from `/metrics`.
    fn metric(&self, name: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "5",
                &format!("http://127.0.0.1:{}/metrics", self.port),
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: a plain syscall to our own child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) and memory of a process, from its own /proc accounting.
struct Usage {
    cpu_secs: f64,
    rss_kib: u64,
    anon_kib: u64,
}

fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat[stat.rfind(')').context("stat")? + 2..]
        .split(' ')
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_secs = (fields[11].parse::<f64>()? + fields[12].parse::<f64>()?) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        cpu_secs,
        rss_kib: kib("VmRSS:"),
        anon_kib: kib("RssAnon:"),
    })
}

/// The daemon's mean CPU (in cores) and its peak memory over `secs`.
fn sample(pid: u32, secs: u64) -> anyhow::Result<(f64, u64, u64)> {
    let start = usage(pid)?;
    let started = Instant::now();
    let (mut rss, mut anon) = (start.rss_kib, start.anon_kib);
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        let now = usage(pid)?;
        rss = rss.max(now.rss_kib);
        anon = anon.max(now.anon_kib);
    }
    let end = usage(pid)?;
    let cores = (end.cpu_secs - start.cpu_secs) / started.elapsed().as_secs_f64();
    Ok((cores, rss, anon))
}

/// Labelled containers, each naming `PER_CONTAINER` new paths a second.
struct Load {
    names: Vec<String>,
}

impl Load {
    fn start() -> anyhow::Result<Self> {
        let script = format!(
            "i=0; while true; do i=$((i+1)); [ -e /usr/lib/nope-$i ]; \
             if [ $((i % {PER_CONTAINER})) -eq 0 ]; then sleep 1; fi; done"
        );
        let mut names = Vec::new();
        for i in 0..CONTAINERS {
            let name = format!("slimd-bench-daemon-{i}");
            let _ = docker(&["rm", "-f", &name]);
            docker(&[
                "run", "-d", "--name", &name, "-l", LABEL, IMAGE, "sh", "-c", &script,
            ])?;
            names.push(name);
        }
        Ok(Load { names })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        args.extend(self.names.iter().map(String::as_str));
        let _ = docker(&args);
    }
}

/// The C loop's µs per round in an unlabelled container, median of `REPEATS`.
fn loop_us(rounds: u64) -> anyhow::Result<f64> {
    let mut runs = Vec::new();
    for _ in 0..REPEATS {
        let ns = bare(&format!("pathbench same {rounds}"))?;
        runs.push(ns[0] as f64 / rounds as f64 / 1000.0);
    }
    Ok(median(runs))
}

pub fn run(slimd: &Path, secs: u64, rounds: u64) -> anyhow::Result<()> {
    bench_image()?;
    let daemon = Daemon::start(slimd)?;
    eprintln!("daemon footprint: idle for 10 s");
    let idle = sample(daemon.pid, 10)?;
    let load = Load::start()?;
    // The containers' start (image read, first events) is not the steady state.
    std::thread::sleep(Duration::from_secs(5));
    let events_before = daemon.metric("slimd_events_total").unwrap_or(0.0);
    eprintln!("daemon footprint: {CONTAINERS} containers for {secs} s");
    let busy = sample(daemon.pid, secs)?;
    let rate = (daemon.metric("slimd_events_total").unwrap_or(0.0) - events_before) / secs as f64;
    drop(load);
    drop(daemon);

    eprintln!("syscall overhead on an unwatched container: bare");
    let bare_us = loop_us(rounds)?;
    let daemon = Daemon::start(slimd)?;
    // It is attached while it takes stock, and a few seconds after.
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.metric("slimd_syscall_program_attached") != Some(0.0) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("syscall overhead: the daemon watching nothing");
    let idle_us = loop_us(rounds)?;
    let _watched = docker(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "slimd-bench-daemon-one",
        "-l",
        LABEL,
        IMAGE,
        "sleep",
        "3600",
    ])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.metric("slimd_syscall_program_attached") != Some(1.0) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("syscall overhead: the daemon watching one container");
    let watching_us = loop_us(rounds)?;
    let _ = docker(&["rm", "-f", "slimd-bench-daemon-one"]);
    drop(daemon);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "\nDaemon footprint: {CONTAINERS} labelled containers naming {} distinct paths a second (measured: {rate:.0} events/s), {secs} s",
        CONTAINERS * PER_CONTAINER
    );
    println!("| state | CPU (cores) | peak RSS | of which anonymous |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| idle | {:.4} | {:.1} MiB | {:.1} MiB |",
        idle.0,
        mib(idle.1),
        mib(idle.2)
    );
    println!(
        "| watching | {:.4} | {:.1} MiB | {:.1} MiB |",
        busy.0,
        mib(busy.1),
        mib(busy.2)
    );
    println!(
        "\nSyscall overhead on a container the daemon does not watch: {rounds} rounds of stat + open + close, µs per round, median of {REPEATS}"
    );
    println!("| no daemon | daemon watching nothing | daemon watching another container |");
    println!("| --- | --- | --- |");
    println!(
        "| {bare_us:.2} | {idle_us:.2} ({:.2}×) | {watching_us:.2} ({:.2}×) |",
        idle_us / bare_us,
        watching_us / bare_us
    );
    Ok(())
}
