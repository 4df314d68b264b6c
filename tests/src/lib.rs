//! Helpers for slimd's end-to-end tests: the slimd binary, Docker, and the test images.
//!
//! The tests need root, a running Docker engine and the slimd binary (`SLIMD_BIN`).
//! `cargo xtask test` provides all three and sets `SLIMD_E2E=required`, which turns a
//! missing prerequisite into a failure. Under a plain `cargo test` such a test prints why it
//! is skipped and returns.
use std::{
    io::Read,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

pub use xtask::images;

pub mod crafted;

/// What an end-to-end test needs, checked once per test.
pub struct E2e {
    pub slimd: PathBuf,
}

/// The prerequisites of an end-to-end test, or None (after saying why) when they are missing
/// and not required.
pub fn e2e(test: &str) -> Option<E2e> {
    match prerequisites() {
        Ok(slimd) => Some(E2e { slimd }),
        Err(reason) if std::env::var("SLIMD_E2E").as_deref() == Ok("required") => {
            panic!("{test}: {reason}")
        }
        Err(reason) => {
            eprintln!("skipped {test}: {reason} (run the suite with `cargo xtask test`)");
            None
        }
    }
}

fn prerequisites() -> Result<PathBuf, String> {
    let slimd = std::env::var_os("SLIMD_BIN")
        .map(PathBuf::from)
        .ok_or("SLIMD_BIN is not set")?;
    if !slimd.is_file() {
        return Err(format!("SLIMD_BIN {} is not a file", slimd.display()));
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        return Err("not running as root".into());
    }
    let info = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !info.is_ok_and(|s| s.success()) {
        return Err("no Docker engine answers".into());
    }
    Ok(slimd)
}

/// A finished command's result, with its output as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics, with everything the command printed, unless it succeeded.
    #[track_caller]
    pub fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The command failed with exactly one error line, which mentions `expected`.
#[track_caller]
pub fn assert_one_line_error(out: &Run, expected: &str) {
    assert!(
        matches!(out.code, Some(c) if c != 0),
        "exit code {:?}; stderr:\n{}",
        out.code,
        out.stderr
    );
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("slimd: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "want one error line, got:\n{}", out.stderr);
    assert_eq!(
        out.stderr.lines().last(),
        Some(errors[0]),
        "output after the error:\n{}",
        out.stderr
    );
    assert!(
        errors[0].contains(expected),
        "{:?} does not mention {expected:?}",
        errors[0]
    );
}

pub fn run(cmd: &mut Command) -> Run {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
        .into()
}

/// What a command cost, by the kernel's own accounting of the process.
#[derive(Debug)]
pub struct Measured {
    pub run: Run,
    /// Peak resident memory in MiB (`ru_maxrss`).
    pub max_rss_mib: u64,
    pub wall: Duration,
}

impl Measured {
    /// Panics, with everything the command printed, unless it succeeded.
    #[track_caller]
    pub fn ok(self, what: &str) -> Self {
        Measured {
            run: self.run.ok(what),
            ..self
        }
    }
}

/// Runs a command; kills it and panics if it is still running after `limit` (a hang, not a
/// slow run: the limit is far above any honest duration).
pub fn measured(cmd: &mut Command, limit: Duration) -> Measured {
    let started = Instant::now();
    // Reaped below with wait4, which also reports the child's peak memory.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped")));
    let stderr = read(Box::new(child.stderr.take().expect("piped")));
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, timed_out) = (done.clone(), timed_out.clone());
        std::thread::spawn(move || {
            while started.elapsed() < limit {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            timed_out.store(true, Ordering::SeqCst);
            // SAFETY: plain syscall; the child is not reaped until wait4 below returns.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it in for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which nothing else reaps.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    done.store(true, Ordering::SeqCst);
    watchdog.join().expect("watchdog");
    let run = Run {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    assert!(
        !timed_out.load(Ordering::SeqCst),
        "{cmd:?} still ran after {limit:?} and was killed\nstderr:\n{}",
        run.stderr
    );
    Measured {
        run,
        max_rss_mib: usage.ru_maxrss as u64 / 1024,
        wall: started.elapsed(),
    }
}

impl E2e {
    /// `slimd <args>` with `env` set, measured (see [`measured`]).
    pub fn slimd_measured(&self, args: &[&str], env: &[(&str, &str)]) -> Measured {
        let mut cmd = Command::new(&self.slimd);
        cmd.args(args).envs(env.iter().copied());
        measured(&mut cmd, Duration::from_secs(180))
    }

    pub fn slimd(&self, args: &[&str]) -> Run {
        run(Command::new(&self.slimd).args(args))
    }

    /// `slimd run --tag <tag> <options...> <image> -- <cmd...>`, which must succeed.
    #[track_caller]
    pub fn slim_run(&self, image: &str, tag: &str, options: &[&str], cmd: &[&str]) -> Run {
        let mut args = vec!["run", "--tag", tag];
        args.extend(options);
        args.push(image);
        if !cmd.is_empty() {
            args.push("--");
            args.extend(cmd);
        }
        self.slimd(&args).ok("slimd run")
    }
}

pub fn docker(args: &[&str]) -> Run {
    run(Command::new("docker").args(args))
}

/// `docker run --rm <image> <cmd...>`.
pub fn docker_run(image: &str, cmd: &[&str]) -> Run {
    let mut args = vec!["run", "--rm", image];
    args.extend(cmd);
    docker(&args)
}

/// The image's size as the engine reports it.
pub fn image_size(image: &str) -> u64 {
    let out =
        docker(&["image", "inspect", "--format", "{{.Size}}", image]).ok("docker image inspect");
    out.stdout.trim().parse().expect("a size")
}

/// The image's config, as JSON.
pub fn image_config(image: &str) -> serde_json::Value {
    let out = docker(&["image", "inspect", "--format", "{{json .Config}}", image])
        .ok("docker image inspect");
    serde_json::from_str(&out.stdout).expect("JSON config")
}

/// The paths in an image's layers and their concatenated content, from `docker save`.
pub fn image_layers(image: &str) -> (Vec<String>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let saved = dir.path().join("image.tar");
    docker(&["save", "-o", saved.to_str().unwrap(), image]).ok("docker save");
    let layers = format!("tar -xOf {} --wildcards '*/layer.tar'", saved.display());
    let list = run(Command::new("sh")
        .arg("-c")
        .arg(format!("{layers} | tar -t")))
    .ok("listing the layers");
    let content = Command::new("sh")
        .arg("-c")
        .arg(layers)
        .output()
        .expect("reading the layers")
        .stdout;
    (list.stdout.lines().map(str::to_owned).collect(), content)
}

/// The files of an image's layers extracted (in order) into a directory, with modes, owners,
/// hard links and `security.capability` as the layers hold them.
pub fn extract_image(image: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let saved = dir.path().join("image.tar");
    docker(&["save", "-o", saved.to_str().unwrap(), image]).ok("docker save");
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root dir");
    let script = format!(
        "cd {dir} && tar -xf image.tar && for l in $(python3 -c 'import json; print(\" \".join(json.load(open(\"manifest.json\"))[0][\"Layers\"]))'); do \
         tar --xattrs --xattrs-include='security.*' --numeric-owner -xpf \"$l\" -C root; done",
        dir = dir.path().display()
    );
    run(Command::new("sh").arg("-c").arg(script)).ok("extracting the layers");
    dir
}

/// Runs `image` as a service with `port` published on 127.0.0.1 and returns the bytes of
/// `GET /`, fetched with curl once the service answers.
pub fn served_root(image: &str, port: &str) -> Vec<u8> {
    let service = Service::start(image, port, &[]);
    service.get_root()
}

/// A service container with one port published on 127.0.0.1, removed when dropped.
pub struct Service {
    pub id: String,
    image: String,
    address: String,
    _guard: ContainerGuard,
}

impl Service {
    /// `docker run -d -p 127.0.0.1::<port> <options...> <image>`.
    pub fn start(image: &str, port: &str, options: &[&str]) -> Self {
        let publish = format!("127.0.0.1::{port}");
        let mut args = vec!["run", "-d", "-p", publish.as_str()];
        args.extend(options);
        args.push(image);
        let id = docker(&args)
            .ok("starting the service")
            .stdout
            .trim()
            .to_owned();
        let guard = ContainerGuard(id.clone());
        let mapped = docker(&["port", &id, port]).ok("docker port");
        let address = mapped
            .stdout
            .lines()
            .next()
            .expect("a published port")
            .trim()
            .to_owned();
        assert!(address.starts_with("127.0.0.1:"), "published on {address}");
        Service {
            id,
            image: image.to_owned(),
            address,
            _guard: guard,
        }
    }

    /// The bytes of `GET /`, once the service answers.
    pub fn get_root(&self) -> Vec<u8> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let out = Command::new("curl")
                .args(["-s", "-f", &format!("http://{}/", self.address)])
                .output()
                .expect("running curl");
            if out.status.success() {
                return out.stdout;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never answered on {}",
                self.image,
                self.address
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

pub fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).code == Some(0)
}

/// Removes an image tag when dropped, so tests leave no images behind.
pub struct TagGuard(pub String);

impl TagGuard {
    /// A tag unique to the test: `slimd-e2e/<name>:slim`.
    pub fn new(name: &str) -> Self {
        let tag = format!("slimd-e2e/{name}:slim");
        docker(&["rmi", "-f", &tag]);
        TagGuard(tag)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for TagGuard {
    fn drop(&mut self) {
        docker(&["rmi", "-f", &self.0]);
    }
}

/// Removes a container when dropped.
pub struct ContainerGuard(pub String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        docker(&["rm", "-f", &self.0]);
    }
}
