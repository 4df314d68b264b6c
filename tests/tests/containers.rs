//! Processes and containers: exec sessions are captured, and with several containers observed
//! at once, no path is attributed to the wrong one.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use serde_json::Value;
use tests::{ContainerGuard, docker, e2e, images};

/// `slimd observe <name>` in the background, returned once it is armed.
fn observe(slimd: &std::path::Path, name: &str, report: &str) -> Child {
    let mut child = Command::new(slimd)
        .args(["observe", name, "-o", report])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting slimd observe");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .expect("slimd observe ended before it was armed")
            .expect("stderr");
        if line.contains("observing container") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

fn paths(report: &str) -> Vec<String> {
    let report: Value =
        serde_json::from_slice(&std::fs::read(report).expect("report")).expect("JSON");
    report["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect()
}

/// Lets a `waiting` container go on. It may finish and exit while `touch` itself is still
/// being torn down, which kills the exec (137): that is a start, too.
fn go(name: &str) {
    let out = docker(&["exec", name, "touch", "/tmp/go"]);
    assert!(matches!(out.code, Some(0 | 137)), "go {name}: {out:?}");
}

/// A container that waits for /tmp/go, then runs `script`.
fn waiting(name: &str, image: &str, script: &str) -> ContainerGuard {
    docker(&["rm", "-f", name]);
    let script = format!("while [ ! -e /tmp/go ]; do sleep 0.05; done; {script}");
    docker(&["run", "-d", "--name", name, image, "sh", "-c", &script]).ok("starting a container");
    ContainerGuard(name.into())
}

#[test]
fn two_containers_observed_at_once() {
    let Some(env) = e2e("two_containers_observed_at_once") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = ("slimd-e2e-pair-a", "slimd-e2e-pair-b");
    let _ga = waiting(a, image, "cat /etc/debian_version > /dev/null");
    let _gb = waiting(b, image, "cat /etc/issue.net > /dev/null");
    let (ra, rb) = (
        dir.path().join("a.json").to_str().unwrap().to_owned(),
        dir.path().join("b.json").to_str().unwrap().to_owned(),
    );
    let mut oa = observe(&env.slimd, a, &ra);
    let mut ob = observe(&env.slimd, b, &rb);
    go(a);
    go(b);
    assert!(oa.wait().expect("observe a").success());
    assert!(ob.wait().expect("observe b").success());
    let (pa, pb) = (paths(&ra), paths(&rb));
    assert!(pa.contains(&"/etc/debian_version".to_owned()), "{pa:?}");
    assert!(
        !pa.contains(&"/etc/issue.net".to_owned()),
        "b's file in a's report: {pa:?}"
    );
    assert!(pb.contains(&"/etc/issue.net".to_owned()), "{pb:?}");
    assert!(
        !pb.contains(&"/etc/debian_version".to_owned()),
        "a's file in b's report: {pb:?}"
    );
}

#[test]
fn exec_sessions_are_captured() {
    let Some(env) = e2e("exec_sessions_are_captured") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    let name = "slimd-e2e-exec";
    let _guard = waiting(name, image, "true");
    let report = dir.path().join("exec.json").to_str().unwrap().to_owned();
    let mut observer = observe(&env.slimd, name, &report);
    docker(&["exec", name, "sh", "-c", "cat /etc/host.conf > /dev/null"]).ok("docker exec");
    go(name);
    assert!(observer.wait().expect("observe").success());
    let found = paths(&report);
    assert!(found.contains(&"/etc/host.conf".to_owned()), "{found:?}");
    assert!(found.contains(&"/usr/bin/cat".to_owned()), "{found:?}");
}
