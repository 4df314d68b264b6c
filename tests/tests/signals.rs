//! Ctrl-C and SIGTERM stop slimd promptly in every phase, with the signal's exit code, and
//! leave no container, temporary file, output or tag behind.
use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use tests::{E2e, crafted, docker, e2e, image_exists, images};

/// How long slimd may take to stop after the signal. The requirement is one second; the bound
/// leaves room for a loaded machine, and each run prints what it took.
const STOP_BOUND: Duration = Duration::from_secs(3);

/// What a stopped slimd did.
struct Stopped {
    code: Option<i32>,
    stderr: Vec<String>,
    /// From the signal to the exit.
    took: Duration,
}

/// Runs slimd with `-v`, sends `signal` once a line of its progress starts with `trigger`
/// (and `delay` has passed), and waits for it to exit.
fn stop_when(env: &E2e, args: &[&str], trigger: &str, delay: Duration, signal: i32) -> Stopped {
    let mut child = Command::new(&env.slimd)
        .arg("-v")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting slimd");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            lines.push(line);
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("slimd never reached {trigger:?}")
            });
        if line.starts_with(trigger) {
            break;
        }
    }
    std::thread::sleep(delay);
    let sent = Instant::now();
    // SAFETY: a plain syscall to our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for slimd") {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("slimd did not stop within a minute of the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = sent.elapsed();
    Stopped {
        code: status.code(),
        stderr: reader.join().expect("the stderr reader"),
        took,
    }
}

/// The names slimd's temporary files would have in the temporary directory.
fn temp_entries() -> Vec<PathBuf> {
    fs::read_dir(std::env::temp_dir())
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().contains("slimd-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_stopped(stopped: &Stopped, signal: i32, what: &str) {
    let name = if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    eprintln!(
        "{name} during {what}: stopped in {:.0} ms",
        stopped.took.as_secs_f64() * 1000.0
    );
    assert_eq!(
        stopped.code,
        Some(128 + signal),
        "{name} during {what}:\n{}",
        stopped.stderr.join("\n")
    );
    let last = stopped.stderr.last().map(String::as_str).unwrap_or("");
    assert!(
        last.starts_with(&format!("slimd: interrupted by {name}")),
        "{name} during {what}: the last line is {last:?}"
    );
    assert!(
        stopped.took < STOP_BOUND,
        "{name} during {what}: slimd took {:?} to stop",
        stopped.took
    );
}

#[test]
fn run_stops_in_every_phase() {
    let Some(env) = e2e("run_stops_in_every_phase") else {
        return;
    };
    let busybox = images::busybox().expect("test image");
    // A 512 MiB file that the workload reads, so that reading, writing and loading take a
    // while.
    let image = images::derived(
        "slimd-e2e/big:1",
        &format!("FROM {busybox}\nRUN head -c 536870912 /dev/urandom > /big"),
        &[],
    )
    .expect("an image with a large file");
    let tag = "slimd-e2e/interrupted:slim";
    docker(&["rmi", "-f", tag]);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("slim.tar");
    let temps_before = temp_entries();
    let phases: [(&str, &str, Duration); 5] = [
        ("start", "… start", Duration::ZERO),
        ("observe", "… observe", Duration::from_millis(300)),
        ("read", "… read", Duration::from_millis(200)),
        (
            "write",
            "… write the slim layer",
            Duration::from_millis(200),
        ),
        ("load", "… load", Duration::from_millis(200)),
    ];
    for signal in [libc::SIGTERM, libc::SIGINT] {
        for (what, trigger, delay) in phases {
            let stopped = stop_when(
                &env,
                &[
                    "run",
                    "--tag",
                    tag,
                    "--image-source",
                    "save",
                    "--archive",
                    archive.to_str().unwrap(),
                    &image,
                    "--",
                    "sh",
                    "-c",
                    "cat /big > /dev/null; sleep 2",
                ],
                trigger,
                delay,
                signal,
            );
            assert_stopped(&stopped, signal, what);
            let left = docker(&["ps", "-aq", "--filter", "label=slimd.run"]).ok("docker ps");
            assert_eq!(
                left.stdout.trim(),
                "",
                "{what}: a container was left; slimd said:\n{}",
                stopped.stderr.join("\n")
            );
            assert!(!image_exists(tag), "{what}: the tag was left");
            assert!(!archive.exists(), "{what}: the archive was written");
            let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
            assert!(
                entries.is_empty(),
                "{what}: {entries:?} left beside the archive"
            );
            let mut temps = temp_entries();
            temps.retain(|p| !temps_before.contains(p));
            assert!(temps.is_empty(), "{what}: temporary files left: {temps:?}");
        }
    }
}

#[test]
fn a_build_that_would_take_minutes_stops_at_once() {
    let Some(env) = e2e("a_build_that_would_take_minutes_stops_at_once") else {
        return;
    };
    // A layer of 256 GiB (sparse: it costs no disk) whose digest must be checked: hashing it
    // takes minutes.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let blob_len: u64 = 256 << 30;
    crafted::oci_layout(
        &layout,
        &[crafted::Layer::tar(Vec::new())],
        &[0],
        Some(blob_len),
    );
    let empty = crafted::sha256(b"");
    let blob = layout.join("blobs/sha256").join(&empty[7..]);
    fs::File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(blob_len)
        .unwrap();
    let out = dir.path().join("out");
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let stopped = stop_when(
            &env,
            &[
                "build",
                &format!("oci:{}", layout.display()),
                "--include",
                "/etc",
                "--no-load",
                "--oci-dir",
                out.to_str().unwrap(),
            ],
            "… read",
            Duration::from_secs(1),
            signal,
        );
        assert_stopped(&stopped, signal, "a minutes-long read");
        assert!(!Path::new(&out).exists());
    }
}
