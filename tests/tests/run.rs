//! `slimd run`: one command from an image to a slim image that does the same.
use std::{fs, process::Command};

use serde_json::Value;
use tests::{TagGuard, docker_run, e2e, image_config, image_size, images};

const PYTHON: &str = "import json,sqlite3; print(json.dumps(sqlite3.sqlite_version))";

/// Runs `cmd` in the original and the slim image; both must succeed and print the same.
#[track_caller]
fn assert_same_output(original: &str, slim: &str, cmd: &[&str]) -> String {
    let want = docker_run(original, cmd).ok("the original image");
    let got = docker_run(slim, cmd).ok("the slim image");
    assert_eq!(got.stdout, want.stdout, "stdout differs for {cmd:?}");
    assert!(!want.stdout.trim().is_empty(), "{cmd:?} printed nothing");
    want.stdout
}

#[test]
fn python_one_liner() {
    let Some(env) = e2e("python_one_liner") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let tag = TagGuard::new("python");
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let cmd = ["python3", "-c", PYTHON];
    let out = env.slim_run(image, tag.as_str(), &["-o", report.to_str().unwrap()], &cmd);
    assert!(out.stdout.contains("Slimmed"), "no summary: {}", out.stdout);

    assert_same_output(image, tag.as_str(), &cmd);
    let (original, slim) = (image_size(image), image_size(tag.as_str()));
    assert!(
        slim * 10 < original,
        "slim image {slim} B is not under 10% of {original} B"
    );
    // The command given after `--` was only for the observation.
    assert_eq!(
        image_config(tag.as_str())["Cmd"],
        image_config(image)["Cmd"]
    );

    let report: Value =
        serde_json::from_slice(&fs::read(&report).expect("report kept")).expect("JSON");
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["complete"], true);
    assert_eq!(report["events"]["lost"], 0);
    let python = &report["paths"]["/usr/bin/python3.11"];
    assert!(
        python["uses"]
            .as_array()
            .expect("uses")
            .contains(&Value::from("exec")),
        "{python}"
    );
    assert_eq!(report["paths"]["/usr/bin/python3"]["kind"], "symlink");
}

#[test]
fn busybox_shell() {
    let Some(env) = e2e("busybox_shell") else {
        return;
    };
    let image = images::busybox().expect("test image");
    let tag = TagGuard::new("busybox");
    let cmd = ["sh", "-c", "ls / | wc -l"];
    env.slim_run(image, tag.as_str(), &[], &cmd);
    assert_same_output(image, tag.as_str(), &cmd);
    assert!(image_size(tag.as_str()) <= image_size(image));
}

#[test]
fn shell_pipeline_lists_the_same_directory() {
    let Some(env) = e2e("shell_pipeline_lists_the_same_directory") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let tag = TagGuard::new("pipeline");
    let cmd = ["sh", "-c", "ls /etc | sort | head -3 | tr a-z A-Z"];
    env.slim_run(image, tag.as_str(), &[], &cmd);
    assert_same_output(image, tag.as_str(), &cmd);
    assert!(image_size(tag.as_str()) * 20 < image_size(image));
}

#[test]
fn default_command_and_config_carry_over() {
    let Some(env) = e2e("default_command_and_config_carry_over") else {
        return;
    };
    let base = images::APPS.ensure().expect("test image");
    let app =
        b"import os\nprint(os.environ['GREETING'], os.getcwd(), open('data.txt').read().strip())\n";
    let image = images::derived(
        "slimd-e2e/app:1.0",
        &format!(
            "FROM {base}\nWORKDIR /srv\nENV GREETING=hello\nCOPY app.py data.txt /srv/\n\
             EXPOSE 8080\nLABEL org.example.role=test\nSTOPSIGNAL SIGINT\n\
             ENTRYPOINT [\"python3\"]\nCMD [\"/srv/app.py\"]"
        ),
        &[("app.py", app), ("data.txt", b"from the image\n")],
    )
    .expect("derived image");
    let slim = TagGuard("slimd-e2e/app:1.0-slim".into());
    env.slimd(&["run", &image]).ok("slimd run");
    let want = tests::docker(&["run", "--rm", &image]).ok("original");
    let got = tests::docker(&["run", "--rm", slim.as_str()]).ok("slim");
    assert_eq!(got.stdout, want.stdout);
    assert_eq!(want.stdout, "hello /srv from the image\n");
    let (a, b) = (image_config(&image), image_config(slim.as_str()));
    for key in [
        "Entrypoint",
        "Cmd",
        "Env",
        "WorkingDir",
        "ExposedPorts",
        "Labels",
        "StopSignal",
        "User",
    ] {
        assert_eq!(a[key], b[key], "{key} differs");
    }
}

#[test]
fn fanotify_sensor_says_what_it_cannot_see() {
    let Some(env) = e2e("fanotify_sensor_says_what_it_cannot_see") else {
        return;
    };
    let image = images::busybox().expect("test image");
    let tag = TagGuard::new("fanotify-busybox");
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("report.json");
    let cmd = ["sh", "-c", "ls / | wc -l"];
    env.slim_run(
        image,
        tag.as_str(),
        &["--sensor", "fanotify", "-o", report.to_str().unwrap()],
        &cmd,
    );
    assert_same_output(image, tag.as_str(), &cmd);
    let report: Value =
        serde_json::from_slice(&fs::read(&report).expect("report kept")).expect("JSON");
    assert_eq!(report["sensor"]["kind"], "fanotify");
    let spots = report["sensor"]["blind_spots"].to_string();
    assert!(
        spots.contains("stat") && spots.contains("symlinks"),
        "{spots}"
    );
}

#[test]
fn lost_events_are_counted_and_refused() {
    let Some(env) = e2e("lost_events_are_counted_and_refused") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let tag = TagGuard::new("lossy");
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("lossy.json");
    let report = report.to_str().unwrap();
    // A ring buffer of one page, flooded by 200,000 distinct paths.
    let flood = "import os\nfor i in range(200000): os.path.exists(f'/nonexistent/{i}')";
    let out = env.slimd(&[
        "run",
        "--ring-buffer-kb",
        "4",
        "--tag",
        tag.as_str(),
        "-o",
        report,
        image,
        "--",
        "python3",
        "-c",
        flood,
    ]);
    assert_ne!(out.code, Some(0), "a lossy run built an image");
    assert!(out.stderr.contains("events were lost"), "{}", out.stderr);
    assert!(!tests::image_exists(tag.as_str()));
    let kept: Value =
        serde_json::from_slice(&fs::read(report).expect("the report is kept")).expect("JSON");
    assert_eq!(kept["complete"], false);
    assert!(
        kept["events"]["lost"].as_u64().unwrap() > 0,
        "{}",
        kept["events"]
    );
    let per_cpu: u64 = kept["events"]["lost_per_cpu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(per_cpu, kept["events"]["lost"].as_u64().unwrap());
    let refused = env.slimd(&["build", image, "-r", report, "--tag", tag.as_str()]);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("is incomplete"),
        "{}",
        refused.stderr
    );
}

#[test]
fn auto_falls_back_to_fanotify_where_bpf_is_refused() {
    let Some(env) = e2e("auto_falls_back_to_fanotify_where_bpf_is_refused") else {
        return;
    };
    let image = images::busybox().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    // A seccomp filter that refuses bpf(2), as hosts that do not permit BPF do.
    let nobpf = dir.path().join("nobpf");
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/support/nobpf.c");
    tests::run(
        Command::new("gcc")
            .arg("-O2")
            .arg("-o")
            .arg(&nobpf)
            .arg(source),
    )
    .ok("compiling nobpf.c");
    let report = dir.path().join("report.json");
    let tag = TagGuard::new("fallback");
    let cmd = ["sh", "-c", "ls / | wc -l"];
    let out = tests::run(
        Command::new(&nobpf)
            .arg(&env.slimd)
            .args([
                "run",
                "--sensor",
                "auto",
                "--tag",
                tag.as_str(),
                "-o",
                report.to_str().unwrap(),
                image,
                "--",
            ])
            .args(cmd),
    )
    .ok("slimd run with bpf(2) refused");
    assert!(
        out.stderr.contains("watching with fanotify"),
        "{}",
        out.stderr
    );
    assert_same_output(image, tag.as_str(), &cmd);
    let report: Value = serde_json::from_slice(&fs::read(&report).expect("report")).expect("JSON");
    assert_eq!(report["sensor"]["kind"], "fanotify");
}
