//! Every failure a user can cause: one clear line, a non-zero exit, nothing half-written.
use std::{fs, path::Path, process::Command};

use serde_json::Value;
use tests::{
    ContainerGuard, E2e, TagGuard, assert_one_line_error, docker, e2e, image_exists, images, run,
};

/// A report of the busybox image; `test` keeps the slim image's tag apart from other tests'.
fn busybox_report(env: &E2e, dir: &Path, test: &str) -> String {
    let image = images::busybox().expect("test image");
    let report = dir.join("busybox.json").to_str().unwrap().to_owned();
    let tag = TagGuard::new(&format!("{test}-busybox"));
    env.slim_run(image, tag.as_str(), &["-q", "-o", &report], &["true"]);
    report
}

#[test]
fn unknown_and_stopped_containers() {
    let Some(env) = e2e("unknown_and_stopped_containers") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("r.json");
    let out = env.slimd(&[
        "observe",
        "slimd-no-such-container",
        "-o",
        report.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, "no such container: slimd-no-such-container");
    assert!(!report.exists());

    let name = "slimd-e2e-stopped";
    docker(&["rm", "-f", name]);
    docker(&["run", "--name", name, images::busybox().unwrap(), "true"])
        .ok("a container that exits");
    let _guard = ContainerGuard(name.into());
    let out = env.slimd(&["observe", name, "-o", report.to_str().unwrap()]);
    assert_one_line_error(&out, "is not running");
    assert!(!report.exists());
}

#[test]
fn missing_images() {
    let Some(env) = e2e("missing_images") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let report = busybox_report(&env, dir.path(), "missing-images");
    let out = env.slimd(&["build", "slimd-e2e/no-such-image:1", "-r", &report]);
    assert_one_line_error(&out, "no such image: slimd-e2e/no-such-image:1");
    assert!(!image_exists("slimd-e2e/no-such-image:1-slim"));

    let out = env.slimd(&["run", "slimd-e2e/no-such-image:1"]);
    assert_one_line_error(&out, "no such image");
    // Other tests' runs may be under way: only a container of this image would be this one's.
    let leftovers = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=slimd.run",
        "--format",
        "{{.Image}}",
    ])
    .ok("docker ps");
    assert!(
        !leftovers.stdout.contains("no-such-image"),
        "slimd run left containers behind"
    );
}

#[test]
fn reports_that_cannot_be_used() {
    let Some(env) = e2e("reports_that_cannot_be_used") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let apps = images::APPS.ensure().expect("test image");
    let good = busybox_report(&env, dir.path(), "bad-report");
    let tag = TagGuard::new("bad-report");
    let build = |report: &str| env.slimd(&["build", apps, "-r", report, "--tag", tag.as_str()]);

    let missing = dir.path().join("missing.json");
    assert_one_line_error(&build(missing.to_str().unwrap()), "cannot read report");

    let garbage = dir.path().join("garbage.json");
    fs::write(&garbage, "this is not JSON").unwrap();
    assert_one_line_error(
        &build(garbage.to_str().unwrap()),
        "is not a slimd access report",
    );

    let other = dir.path().join("other.json");
    fs::write(&other, r#"{"kind": "something else"}"#).unwrap();
    assert_one_line_error(
        &build(other.to_str().unwrap()),
        "is not a slimd access report",
    );

    let mut report: Value = serde_json::from_slice(&fs::read(&good).unwrap()).unwrap();
    report["schema_version"] = 99.into();
    let future = dir.path().join("future.json");
    fs::write(&future, report.to_string()).unwrap();
    assert_one_line_error(&build(future.to_str().unwrap()), "schema version 99");

    // A busybox report does not describe the apps image.
    assert_one_line_error(&build(&good), "is of image");
    assert!(!image_exists(tag.as_str()), "a failed build left a tag");
}

#[test]
fn incomplete_reports_need_consent() {
    let Some(env) = e2e("incomplete_reports_need_consent") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let busybox = images::busybox().expect("test image");
    let good = busybox_report(&env, dir.path(), "incomplete");
    let mut report: Value = serde_json::from_slice(&fs::read(&good).unwrap()).unwrap();
    report["complete"] = false.into();
    report["events"]["lost"] = 3.into();
    let lossy = dir.path().join("lossy.json");
    fs::write(&lossy, report.to_string()).unwrap();
    let tag = TagGuard::new("incomplete");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            busybox,
            "-r",
            lossy.to_str().unwrap(),
            "--tag",
            tag.as_str(),
        ];
        args.extend(extra);
        env.slimd(&args)
    };
    assert_one_line_error(&build(&[]), "3 events lost");
    assert!(!image_exists(tag.as_str()));
    build(&["--allow-incomplete"]).ok("build with --allow-incomplete");
    assert!(image_exists(tag.as_str()));
}

#[test]
fn no_engine_and_no_root() {
    let Some(env) = e2e("no_engine_and_no_root") else {
        return;
    };
    let busybox = images::busybox().expect("test image");
    let out = run(Command::new(&env.slimd)
        .args(["run", busybox])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"));
    assert_one_line_error(
        &out,
        "cannot reach the Docker engine at /nonexistent/docker.sock",
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("r.json");
    let nobody = |args: &[&str]| {
        run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&env.slimd)
            .args(args))
    };
    assert_one_line_error(&nobody(&["run", busybox]), "run slimd as root");
    assert_one_line_error(
        &nobody(&["observe", "anything", "-o", report.to_str().unwrap()]),
        "run slimd as root",
    );
    assert!(!report.exists());
}

#[test]
fn values_out_of_range() {
    let Some(env) = e2e("values_out_of_range") else {
        return;
    };
    let image = images::busybox().expect("test image");
    for (option, value) in [
        ("--duration", "inf"),
        ("--duration", "nan"),
        ("--duration", "-0.5"),
        ("--continue-after", "1e300"),
    ] {
        let out = env.slimd(&["run", &format!("{option}={value}"), image, "--", "true"]);
        assert_eq!(out.code, Some(2), "{option} {value}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: invalid value"),
            "{option} {value}: {}",
            out.stderr
        );
    }
    let tag = TagGuard::new("epoch");
    let out = run(std::process::Command::new(&env.slimd)
        .env("SOURCE_DATE_EPOCH", "300000000000")
        .args(["run", "--tag", tag.as_str(), image, "--", "true"]));
    // Refused before a container is made.
    assert_one_line_error(&out, "SOURCE_DATE_EPOCH=300000000000");
    assert!(!image_exists(tag.as_str()));
}
