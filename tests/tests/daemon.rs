//! `slimd daemon` against the real engine and kernel: containers that others start, watched
//! from their first instruction; many at once; restarts, kills and faults; real Prometheus.
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    ContainerGuard, E2e, TagGuard, assert_one_line_error, docker, docker_run, e2e, images, run,
};

/// A daemon of the test's own: its own label, port and state directory.
struct Daemon {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Started, and ready: it has taken stock of the engine's containers.
    fn start(env: &E2e, label: &str, state: &Path, extra: &[&str]) -> Self {
        let daemon = Self::start_with(env, label, state, extra, &[]);
        daemon.wait_for("/readyz", |_| true);
        daemon
    }

    /// Started and serving, whether or not it has reached the engine.
    fn start_with(
        env: &E2e,
        label: &str,
        state: &Path,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let log = state.with_extension(format!("{port}.log"));
        let child = Command::new(&env.slimd)
            .envs(vars.iter().copied())
            .args(["daemon", "--state-dir"])
            .arg(state)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--label", label])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting slimd daemon");
        let daemon = Daemon { child, port, log };
        daemon.wait_for("/healthz", |_| true);
        daemon
    }

    /// (status, body) of a GET.
    fn get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn json(&self, path: &str) -> Option<Value> {
        match self.get(path) {
            (200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Polls until `ok` holds for the JSON at `path` (or the 200 body of a non-JSON one).
    #[track_caller]
    fn wait_for(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, body) = self.get(path);
            if code == 200 {
                let value = serde_json::from_str(&body).unwrap_or(Value::String(body.clone()));
                if ok(&value) {
                    return value;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{path} never became what was awaited; last {code}: {}\ndaemon log:\n{}",
                &body[..body.len().min(4000)],
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the daemon has logged `text`.
    #[track_caller]
    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the daemon never logged {text:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` and waits for the exit; the exit code and how long it took.
    fn stop(mut self, signal: i32) -> (Option<i32>, Duration) {
        let sent = Instant::now();
        // SAFETY: a plain syscall to our own child.
        unsafe { libc::kill(self.pid(), signal) };
        let status = self.child.wait().expect("waiting for the daemon");
        (status.code(), sent.elapsed())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a container of `image` with `label` running `script`; its id.
fn run_labelled(label: &str, image: &str, script: &str) -> String {
    docker(&["run", "-d", "-l", label, image, "sh", "-c", script])
        .ok("a labelled container")
        .stdout
        .trim()
        .to_owned()
}

/// A label only this test's daemon selects.
fn label(test: &str) -> String {
    format!("slimd.e2e.{test}=1")
}

fn paths(report: &Value) -> BTreeSet<String> {
    report["paths"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
        .ok("docker image inspect")
        .stdout
        .trim()
        .to_owned()
}

/// The apps image with files that only one workload reads each.
fn marked_image(count: usize) -> String {
    let base = images::APPS.ensure().expect("test image");
    let mut recipe = format!(
        "FROM {base}\nRUN echo first > /etc/first-file && echo never > /etc/unlabelled-file"
    );
    for i in 0..count {
        recipe.push_str(&format!(" && echo {i} > /etc/own-{i}"));
    }
    images::derived(&format!("slimd-e2e/marked:{count}"), &recipe, &[]).expect("marked image")
}

#[test]
fn containers_others_start_are_watched_from_their_first_instruction() {
    let Some(env) = e2e("containers_others_start_are_watched_from_their_first_instruction") else {
        return;
    };
    let image = marked_image(0);
    let dir = tempfile::tempdir().unwrap();
    let label = label("first");
    let daemon = Daemon::start(
        &env,
        &label,
        &dir.path().join("state"),
        &["--flush-interval", "1"],
    );
    let cmd = [
        "sh",
        "-c",
        "cat /etc/first-file; exec python3 -c 'import json; print(json.dumps({\"ok\": 1}))'",
    ];
    // An unlabelled container at the same time.
    let other = docker(&[
        "run",
        "-d",
        &image,
        "sh",
        "-c",
        "cat /etc/unlabelled-file; sleep 3",
    ])
    .ok("the unlabelled container");
    let _other = ContainerGuard(other.stdout.trim().to_owned());
    let mut args = vec!["run", "-d", "-l", label.as_str(), image.as_str()];
    args.extend(cmd);
    let id = docker(&args)
        .ok("the labelled container")
        .stdout
        .trim()
        .to_owned();
    let _container = ContainerGuard(id.clone());
    docker(&["wait", &id]).ok("docker wait");
    let report = daemon.wait_for(&format!("/reports/{id}"), |r| {
        r["containers"][0]["observed_to"].is_string() && paths(r).contains("/usr/bin/python3.11")
    });
    let seen = paths(&report);
    for must in [
        "/etc/first-file",
        "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/bin/dash",
        "/usr/bin/python3.11",
    ] {
        assert!(seen.contains(must), "{must} is not in the report: {seen:?}");
    }
    assert_eq!(
        report["coverage"]["state"], "complete",
        "{}",
        report["coverage"]
    );
    assert_eq!(
        report["containers"][0]["labels"][label.split('=').next().unwrap()],
        "1"
    );
    let image_report = format!(
        "http://127.0.0.1:{}/images/{}/report",
        daemon.port,
        image_id(&image)
    );
    let merged = daemon
        .json(&format!("/images/{}/report", image_id(&image)))
        .expect("image report");
    assert!(
        !paths(&merged).contains("/etc/unlabelled-file"),
        "the unlabelled container was recorded"
    );
    let tag = TagGuard::new("daemon-first");
    env.slimd(&[
        "build",
        &image,
        "--report",
        &image_report,
        "--tag",
        tag.as_str(),
    ])
    .ok("slimd build from the daemon's URL");
    let want = docker_run(&image, &cmd).ok("the original");
    let got = docker_run(tag.as_str(), &cmd).ok("the slim image");
    assert_eq!(got.stdout, want.stdout);
    assert_eq!(want.stdout, "first\n{\"ok\": 1}\n");

    // The image's seccomp profile, from the merged report, runs the slim image.
    let (code, profile) = daemon.get(&format!("/images/{}/seccomp", image_id(&image)));
    assert_eq!(code, 200, "{profile}");
    let profile_file = dir.path().join("profile.json");
    fs::write(&profile_file, &profile).unwrap();
    let opt = format!("seccomp={}", profile_file.display());
    let mut args = vec!["run", "--rm", "--security-opt", opt.as_str(), tag.as_str()];
    args.extend(cmd);
    let confined = docker(&args).ok("the slim image under the daemon's profile");
    assert_eq!(confined.stdout, want.stdout);
    assert_eq!(
        daemon
            .get(&format!(
                "/images/{}/seccomp?baseline=tini",
                image_id(&image)
            ))
            .0,
        400
    );
    let (code, took) = daemon.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
}

#[test]
fn twenty_containers_at_once_keep_their_own_files() {
    let Some(env) = e2e("twenty_containers_at_once_keep_their_own_files") else {
        return;
    };
    const N: usize = 20;
    let image = marked_image(N);
    let dir = tempfile::tempdir().unwrap();
    let label = label("twenty");
    let daemon = Daemon::start(
        &env,
        &label,
        &dir.path().join("state"),
        &["--flush-interval", "1"],
    );
    let starters: Vec<_> = (0..N)
        .map(|i| {
            let (image, label) = (image.clone(), label.clone());
            std::thread::spawn(move || {
                docker(&[
                    "run",
                    "-d",
                    "-l",
                    &label,
                    &image,
                    "sh",
                    "-c",
                    &format!("cat /etc/own-{i}; sleep 1"),
                ])
                .ok("a labelled container")
                .stdout
                .trim()
                .to_owned()
            })
        })
        .collect();
    let ids: Vec<String> = starters.into_iter().map(|t| t.join().unwrap()).collect();
    let _guards: Vec<ContainerGuard> = ids.iter().cloned().map(ContainerGuard).collect();
    for id in &ids {
        docker(&["wait", id]).ok("docker wait");
    }
    let mut cross = 0;
    for (i, id) in ids.iter().enumerate() {
        let report = daemon.wait_for(&format!("/reports/{id}"), |r| {
            r["containers"][0]["observed_to"].is_string()
                && paths(r).contains(&format!("/etc/own-{i}"))
        });
        let seen = paths(&report);
        cross += (0..N)
            .filter(|j| *j != i && seen.contains(&format!("/etc/own-{j}")))
            .count();
    }
    assert_eq!(
        cross, 0,
        "files of one container appeared in another's report"
    );
}

#[test]
fn restarts_kills_and_shutdowns_keep_every_report() {
    let Some(env) = e2e("restarts_kills_and_shutdowns_keep_every_report") else {
        return;
    };
    let image = marked_image(3);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let label = label("lifecycle");
    let daemon = Daemon::start(&env, &label, &state, &["--flush-interval", "0.2"]);
    let id = run_labelled(&label, &image, "cat /etc/own-0; sleep 600");
    let _container = ContainerGuard(id.clone());
    daemon.wait_for(&format!("/reports/{id}"), |r| {
        paths(r).contains("/etc/own-0")
    });
    let (code, took) = daemon.stop(libc::SIGTERM);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
    let report_file = state.join("containers").join(format!("{id}.json"));
    let report: Value = serde_json::from_slice(&fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(
        report["coverage"]["partial"],
        serde_json::json!(["observer-stopped-first"])
    );

    // A restart picks the running container up again, partial, and goes on watching it.
    let daemon = Daemon::start(&env, &label, &state, &["--flush-interval", "0.2"]);
    docker(&["exec", &id, "cat", "/etc/own-1"]).ok("docker exec");
    let report = daemon.wait_for(&format!("/reports/{id}"), |r| {
        paths(r).contains("/etc/own-1")
    });
    assert!(
        paths(&report).contains("/etc/own-0"),
        "the first run's paths were lost"
    );
    let partial = report["coverage"]["partial"].to_string();
    assert!(partial.contains("started-before-observer"), "{partial}");

    // SIGKILL, at any moment of frequent flushes, leaves every report readable.
    let mut daemon = daemon;
    for i in 0..5 {
        docker(&[
            "exec",
            &id,
            "sh",
            "-c",
            "cat /etc/own-2 /etc/os-release > /dev/null",
        ])
        .ok("docker exec");
        std::thread::sleep(Duration::from_millis(150 + 70 * i));
        daemon.stop(libc::SIGKILL);
        for entry in ["containers", "images"]
            .iter()
            .flat_map(|d| fs::read_dir(state.join(d)).unwrap())
        {
            let path = entry.unwrap().path();
            let text = fs::read(&path).unwrap();
            serde_json::from_slice::<Value>(&text)
                .unwrap_or_else(|e| panic!("{} is torn after SIGKILL: {e}", path.display()));
        }
        daemon = Daemon::start(&env, &label, &state, &["--flush-interval", "0.2"]);
    }
    // The second and later restarts lost nothing the first run saw.
    let report = daemon.wait_for(&format!("/reports/{id}"), |r| {
        paths(r).contains("/etc/own-2")
    });
    for own in ["/etc/own-0", "/etc/own-1", "/etc/own-2"] {
        assert!(
            paths(&report).contains(own),
            "{own} was lost across restarts"
        );
    }
    // A container removed while no daemon runs goes to its image's archive.
    daemon.stop(libc::SIGTERM);
    docker(&["rm", "-f", &id]).ok("docker rm");
    let daemon = Daemon::start(&env, &label, &state, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while report_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the removed container's report is still on its own"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let archive = state
        .join("images")
        .join(format!("{}.archive.json", &image_id(&image)[7..]));
    let archived: Value = serde_json::from_slice(&fs::read(&archive).unwrap()).unwrap();
    let merged = daemon
        .json(&format!("/images/{}/report", image_id(&image)))
        .expect("the image's report");
    for own in ["/etc/own-0", "/etc/own-1"] {
        assert!(
            paths(&archived).contains(own),
            "{own} is not in the archive"
        );
        assert!(
            paths(&merged).contains(own),
            "{own} is not in the image's report"
        );
    }
}

#[test]
fn a_real_prometheus_scrapes_the_metrics() {
    let Some(env) = e2e("a_real_prometheus_scrapes_the_metrics") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&env, &label("prometheus"), &dir.path().join("state"), &[]);
    let (code, metrics) = daemon.get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("slimd_sensor_info{"), "{metrics}");
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: slimd\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            daemon.port
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus");
    let query = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=slimd_sensor_info");
    let deadline = Instant::now() + Duration::from_secs(60);
    let scraped = loop {
        let out = run(Command::new("curl").args(["-s", "-m", "5", &query]));
        if out.stdout.contains("\"kind\"") {
            break out.stdout;
        }
        if Instant::now() > deadline {
            break out.stdout;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(
        scraped.contains("\"version\""),
        "Prometheus did not scrape slimd: {scraped}"
    );
}

#[test]
fn faults_cost_one_line_and_keep_the_daemon_and_its_data() {
    let Some(env) = e2e("faults_cost_one_line_and_keep_the_daemon_and_its_data") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Start-up faults: one line each, exit 1 (2 for a bad argument).
    let out = env.slimd(&[
        "daemon",
        "--state-dir",
        "/etc/passwd/x",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_one_line_error(&out, "cannot use state directory /etc/passwd/x");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let state = dir.path().join("state");
    let out = env.slimd(&[
        "daemon",
        "--state-dir",
        state.to_str().unwrap(),
        "--listen",
        &addr,
    ]);
    assert_one_line_error(&out, &format!("cannot listen on {addr}"));
    let out = env.slimd(&["daemon", "--label", "not a label"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("is not KEY or KEY=VALUE"),
        "{}",
        out.stderr
    );

    // Files in the state directory that are not reports are skipped and left alone.
    fs::create_dir_all(state.join("containers")).unwrap();
    let garbage = state
        .join("containers")
        .join(format!("{}.json", "a".repeat(64)));
    fs::write(&garbage, "not a report").unwrap();
    let stray = state.join("containers").join("notes.txt.json");
    fs::write(&stray, "{}").unwrap();

    // A tiny file system: the daemon runs out of space while it flushes.
    let small = dir.path().join("small");
    fs::create_dir(&small).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96k", "tmpfs"])
        .arg(&small))
    .ok("mounting a small tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let label = label("faults");
    let image = images::APPS.ensure().expect("test image");
    let daemon = Daemon::start(
        &env,
        &label,
        &small.join("state"),
        &["--flush-interval", "0.3"],
    );
    let id = run_labelled(&label, image, "cat /etc/os-release; sleep 600");
    let _container = ContainerGuard(id.clone());
    let first = daemon.wait_for(&format!("/reports/{id}"), |r| {
        paths(r).contains("/usr/lib/os-release")
    });
    // Fill the file system, then make the report grow: its flush fails, the old one stays.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 200000 /dev/zero > {}/filler",
            small.display()
        ))
        .status();
    docker(&[
        "exec",
        &id,
        "sh",
        "-c",
        "ls -R /usr/share > /dev/null; cat /etc/passwd",
    ])
    .ok("docker exec");
    daemon.wait_for("/metrics", |m| {
        m.as_str().is_some_and(|t| {
            t.lines()
                .any(|l| l.starts_with("slimd_flush_errors_total ") && !l.ends_with(" 0"))
        })
    });
    let on_disk: Value = serde_json::from_slice(
        &fs::read(small.join("state/containers").join(format!("{id}.json"))).unwrap(),
    )
    .expect("the old report is whole");
    assert_eq!(paths(&on_disk), paths(&first));
    assert!(
        daemon.log_text().contains("No space left on device"),
        "{}",
        daemon.log_text()
    );

    // A labelled container that fails to start costs a log line, and the daemon goes on.
    let failed = docker(&["run", "--rm", "-l", &label, image, "/no/such/command"]);
    assert_ne!(failed.code, Some(0));
    let (code, body) = daemon.get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    drop(daemon);

    // The corrupt and the foreign file are still there, untouched.
    let daemon = Daemon::start(&env, &label, &state, &[]);
    assert_eq!(fs::read_to_string(&garbage).unwrap(), "not a report");
    assert_eq!(fs::read_to_string(&stray).unwrap(), "{}");
    assert!(
        daemon.log_text().contains("skipping"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn healthz_answers_while_a_large_report_is_flushed() {
    let Some(env) = e2e("healthz_answers_while_a_large_report_is_flushed") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let label = label("healthz");
    let image = images::APPS.ensure().expect("test image");
    let daemon = Daemon::start(
        &env,
        &label,
        &dir.path().join("state"),
        &["--flush-interval", "0.5"],
    );
    // Every path of the image, looked at: a report of thousands of paths, flushed twice a
    // second.
    let id = run_labelled(
        &label,
        image,
        "ls -lR /usr /etc /var > /dev/null 2>&1; sleep 600",
    );
    let _container = ContainerGuard(id.clone());
    daemon.wait_for(&format!("/reports/{id}"), |r| paths(r).len() > 5000);
    let mut times = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let (code, _) = daemon.get("/healthz");
        assert_eq!(code, 200);
        times.push(t.elapsed());
    }
    times.sort();
    let p95 = times[times.len() * 95 / 100];
    eprintln!(
        "/healthz during flushes: {} requests, median {:?}, p95 {p95:?}, max {:?}",
        times.len(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
    assert!(p95 < Duration::from_millis(100), "/healthz p95 {p95:?}");
}

/// The engine's socket, passed through a socket of the test's own that it can take away and
/// give back: for the daemon, the engine goes and comes.
struct EngineProxy {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EngineProxy {
    fn up(path: &Path) -> Self {
        use std::os::unix::net::{UnixListener, UnixStream};
        let _ = fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("binding the proxy socket");
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, open) = (stop.clone(), open.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let Ok((client, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    client.set_nonblocking(false).unwrap();
                    let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                        continue;
                    };
                    let mut open = open.lock().unwrap();
                    for (mut from, mut to) in [
                        (client.try_clone().unwrap(), engine.try_clone().unwrap()),
                        (engine.try_clone().unwrap(), client.try_clone().unwrap()),
                    ] {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                    open.push(client);
                    open.push(engine);
                }
            })
        };
        EngineProxy {
            path: path.to_path_buf(),
            stop,
            open,
            thread: Some(thread),
        }
    }

    /// The engine is gone: the socket and every connection through it.
    fn down(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        let _ = fs::remove_file(&self.path);
    }
}

#[test]
fn the_engine_may_come_late_and_go_away() {
    let Some(env) = e2e("the_engine_may_come_late_and_go_away") else {
        return;
    };
    let image = marked_image(3);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("engine.sock");
    let host = format!("unix://{}", socket.display());
    let label = label("engine");
    // No engine at start: the daemon says so, serves, and waits.
    let daemon = Daemon::start_with(
        &env,
        &label,
        &dir.path().join("state"),
        &["--flush-interval", "0.3"],
        &[("DOCKER_HOST", &host)],
    );
    daemon.wait_for_log("waiting for the container runtime");
    assert_eq!(daemon.get("/readyz").0, 503, "ready without an engine");
    let proxy = EngineProxy::up(&socket);
    daemon.wait_for_log("reached the docker runtime");
    daemon.wait_for("/readyz", |_| true);
    let first = run_labelled(&label, &image, "cat /etc/own-0; sleep 600");
    let _first = ContainerGuard(first.clone());
    daemon.wait_for(&format!("/reports/{first}"), |r| {
        paths(r).contains("/etc/own-0")
    });

    // The engine goes away: the daemon keeps its reports and its watch.
    proxy.down();
    daemon.wait_for_log("lost the docker runtime");
    assert_eq!(daemon.get("/readyz").0, 503, "ready without an engine");
    // Meanwhile a container starts and the first one reads on.
    let second = run_labelled(&label, &image, "cat /etc/own-1; sleep 600");
    let _second = ContainerGuard(second.clone());
    docker(&["exec", &first, "cat", "/etc/own-2"]).ok("docker exec");
    assert_eq!(daemon.get("/healthz").0, 200);
    assert!(daemon.json(&format!("/reports/{first}")).is_some());

    // The engine is back: the daemon reconnects, and nothing of the gap is lost.
    let _proxy = EngineProxy::up(&socket);
    daemon.wait_for(&format!("/reports/{second}"), |r| {
        paths(r).contains("/etc/own-1")
    });
    let report = daemon.wait_for(&format!("/reports/{first}"), |r| {
        paths(r).contains("/etc/own-2")
    });
    assert!(paths(&report).contains("/etc/own-0"));
    assert!(
        daemon.log_text().contains("reached the docker runtime"),
        "{}",
        daemon.log_text()
    );
}
