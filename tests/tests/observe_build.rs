//! `slimd observe` of a running container, then `slimd build` from one or several reports.
use tests::{ContainerGuard, TagGuard, docker, docker_run, e2e, images};

#[test]
fn attach_to_a_running_loop() {
    attach("attach_to_a_running_loop", "ebpf");
}

#[test]
fn attach_with_fanotify() {
    attach("attach_with_fanotify", "fanotify");
}

fn attach(test: &str, sensor: &str) {
    let Some(env) = e2e(test) else { return };
    let image = images::APPS.ensure().expect("test image");
    let name = format!("slimd-e2e-{test}");
    let name = name.as_str();
    docker(&["rm", "-f", name]);
    let body = "head -1 /etc/os-release; sleep 0.2";
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        image,
        "sh",
        "-c",
        &format!("while true; do {body}; done"),
    ])
    .ok("starting the loop");
    let _container = ContainerGuard(name.into());
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("attach.json");
    let report = report.to_str().unwrap();
    // A host process reads a file of the container through its root file system while it is
    // watched: the container never used that file, so it must not be in the report.
    let merged = docker(&[
        "inspect",
        "--format",
        "{{.GraphDriver.Data.MergedDir}}",
        name,
    ])
    .ok("docker inspect")
    .stdout
    .trim()
    .to_owned();
    let host_reader = std::thread::spawn(move || {
        for _ in 0..10 {
            std::thread::sleep(std::time::Duration::from_millis(150));
            let _ = std::fs::read(format!("{merged}/etc/debian_version"));
        }
    });
    env.slimd(&[
        "observe",
        name,
        "-o",
        report,
        "--duration",
        "2",
        "--sensor",
        sensor,
    ])
    .ok("slimd observe");
    host_reader.join().expect("the host reader");
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).expect("the report")).expect("JSON");
    assert!(
        recorded["paths"].get("/usr/lib/os-release").is_some(),
        "{recorded}"
    );
    assert!(
        recorded["paths"].get("/etc/debian_version").is_none(),
        "a host process's read was attributed to the container"
    );
    let tag = TagGuard::new(test);
    env.slimd(&["build", image, "--report", report, "--tag", tag.as_str()])
        .ok("slimd build");
    let want = docker_run(image, &["sh", "-c", body]).ok("original");
    let got = docker_run(tag.as_str(), &["sh", "-c", body]).ok("slim");
    assert_eq!(got.stdout, want.stdout);
    assert!(want.stdout.starts_with("PRETTY_NAME="), "{}", want.stdout);
}

#[test]
fn merged_reports_serve_both_commands() {
    let Some(env) = e2e("merged_reports_serve_both_commands") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    let python = [
        "python3",
        "-c",
        "import hashlib; print(hashlib.sha256(b'x').hexdigest()[:12])",
    ];
    let perl = [
        "perl",
        "-MList::Util=sum",
        "-e",
        "print sum(1..10), qq{\\n}",
    ];
    let mut reports = Vec::new();
    for (name, cmd) in [("python", &python[..]), ("perl", &perl[..])] {
        let report = dir
            .path()
            .join(format!("{name}.json"))
            .to_str()
            .unwrap()
            .to_owned();
        let tag = TagGuard::new(&format!("merge-{name}"));
        env.slim_run(image, tag.as_str(), &["-o", &report], cmd);
        reports.push(report);
    }
    let tag = TagGuard::new("merged");
    env.slimd(&[
        "build",
        image,
        "-r",
        &reports[0],
        "-r",
        &reports[1],
        "--tag",
        tag.as_str(),
    ])
    .ok("slimd build with two reports");
    for cmd in [&python[..], &perl[..]] {
        let want = docker_run(image, cmd).ok("original");
        let got = docker_run(tag.as_str(), cmd).ok("merged slim image");
        assert_eq!(got.stdout, want.stdout, "{cmd:?}");
    }
}
