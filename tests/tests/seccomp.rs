//! Seccomp profiles from observed syscalls, proven by running the slim images under them with
//! the real engine: the same output and HTTP bytes, services that stop on their StopSignal,
//! threads, and a syscall the workload never made denied with EPERM.
use std::{fs, path::Path, process::Command};

use serde_json::Value;
use tests::{Service, TagGuard, assert_one_line_error, docker, e2e, images, run};

const THREADS: &str = "import threading, socket\n\
    out = []\n\
    ts = [threading.Thread(target=lambda i=i: out.append(i * i)) for i in range(4)]\n\
    [t.start() for t in ts]; [t.join() for t in ts]\n\
    print(sorted(out), socket.gethostbyname('localhost'))";

/// A static program that makes two syscalls no workload here makes, and says how they went.
const PROBE_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>
static void say(const char *what, long r) {
    printf("%s: %s\n", what, r == 0 ? "ok" : strerror(errno));
}
int main(void) {
    say("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
    unsigned cpu;
    say("getcpu", syscall(SYS_getcpu, &cpu, 0, 0));
    return 0;
}
"#;

fn profile(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).expect("the profile is written")).expect("JSON")
}

fn allowed(profile: &Value) -> Vec<String> {
    profile["syscalls"][0]["names"]
        .as_array()
        .expect("an allow rule")
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// `docker run --rm [--security-opt seccomp=FILE] <extra> <image> <cmd>`.
fn run_confined(profile: Option<&Path>, extra: &[&str], image: &str, cmd: &[&str]) -> tests::Run {
    let opt = profile.map(|p| format!("seccomp={}", p.display()));
    let mut args = vec!["run", "--rm"];
    if let Some(opt) = &opt {
        args.extend(["--security-opt", opt.as_str()]);
    }
    args.extend(extra);
    args.push(image);
    args.extend(cmd);
    docker(&args)
}

fn build_probe(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("probe.c");
    fs::write(&src, PROBE_C).unwrap();
    let bin = dir.join("probe");
    run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src))
    .ok("compiling the static probe");
    bin
}

#[test]
fn threads_work_under_the_profile_and_what_was_never_made_is_denied() {
    let Some(env) = e2e("threads_work_under_the_profile_and_what_was_never_made_is_denied") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().unwrap();
    let tag = TagGuard::new("seccomp-threads");
    let path = dir.path().join("profile.json");
    let report = dir.path().join("report.json");
    let script = format!("python3 -c \"{THREADS}\"; getent hosts localhost");
    let cmd = ["sh", "-c", script.as_str()];
    let out = env.slim_run(
        image,
        tag.as_str(),
        &[
            "--seccomp",
            path.to_str().unwrap(),
            "-o",
            report.to_str().unwrap(),
        ],
        &cmd,
    );
    assert!(
        out.stdout.contains("Wrote seccomp profile"),
        "{}",
        out.stdout
    );
    let p = profile(&path);
    assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(p["defaultErrnoRet"], 1);
    assert!(p.get("archMap").is_none());
    let names = allowed(&p);
    for needed in ["exit_group", "fstatfs", "execve", "futex"] {
        assert!(names.iter().any(|n| n == needed), "{needed} not allowed");
    }
    // The runtime's own steps before the filter are not the workload's.
    for runtime_only in [
        "pivot_root",
        "mount",
        "sethostname",
        "unshare",
        "ptrace",
        "getcpu",
    ] {
        assert!(
            !names.iter().any(|n| n == runtime_only),
            "{runtime_only} allowed"
        );
    }
    let report: Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert!(
        report["syscalls"]["x86_64"]
            .as_array()
            .is_some_and(|s| s.iter().any(|n| n == "futex")),
        "the report has no syscalls: {}",
        report["syscalls"]
    );

    let want = run_confined(None, &[], image, &cmd).ok("the original");
    let got = run_confined(Some(&path), &[], tag.as_str(), &cmd).ok("the slim image, confined");
    assert_eq!(got.stdout, want.stdout);
    assert!(want.stdout.contains("[0, 1, 4, 9]"), "{}", want.stdout);

    // A syscall the workload never made fails with EPERM under the profile, and works without.
    let probe = build_probe(dir.path());
    let mount = format!("{}:/probe:ro", probe.display());
    let unconfined = run_confined(
        None,
        &["--security-opt", "seccomp=unconfined", "-v", &mount],
        tag.as_str(),
        &["/probe"],
    )
    .ok("the probe, unconfined");
    assert_eq!(unconfined.stdout, "ptrace: ok\ngetcpu: ok\n");
    let confined = run_confined(Some(&path), &["-v", &mount], tag.as_str(), &["/probe"])
        .ok("the probe, confined");
    assert_eq!(
        confined.stdout,
        "ptrace: Operation not permitted\ngetcpu: Operation not permitted\n"
    );
}

/// Runs a service under `profile`, fetches `GET /` through a loopback port, stops it with its
/// StopSignal: (body, exit code).
fn serve_and_stop(image: &str, profile: Option<&Path>) -> (Vec<u8>, String) {
    let opt = profile.map(|p| format!("seccomp={}", p.display()));
    let options: Vec<&str> = opt
        .iter()
        .flat_map(|o| ["--security-opt", o.as_str()])
        .collect();
    let service = Service::start(image, "80", &options);
    let body = service.get_root();
    docker(&["stop", "-t", "20", &service.id]).ok("docker stop");
    let code = docker(&["inspect", "--format", "{{.State.ExitCode}}", &service.id])
        .ok("docker inspect")
        .stdout
        .trim()
        .to_owned();
    (body, code)
}

#[test]
fn services_serve_and_stop_under_their_profiles() {
    let Some(env) = e2e("services_serve_and_stop_under_their_profiles") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // nginx behind the HTTP probe: run --verify --seccomp does the whole loop.
    let nginx = images::nginx().expect("nginx image");
    let tag = TagGuard::new("seccomp-nginx");
    let path = dir.path().join("nginx.json");
    let out = env.slim_run(
        &nginx,
        tag.as_str(),
        &[
            "--http-probe",
            "--verify",
            "--seccomp",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.stdout.contains("under"), "{}", out.stdout);
    let (want, want_code) = serve_and_stop(&nginx, None);
    let (got, got_code) = serve_and_stop(tag.as_str(), Some(&path));
    assert_eq!(got, want, "other bytes for GET / under the profile");
    assert_eq!(
        got_code, want_code,
        "nginx stopped otherwise under the profile"
    );
    assert_ne!(got_code, "137", "nginx had to be killed");

    // redis exercised from the host, verified under its profile.
    let redis = images::redis().expect("redis image");
    let tag = TagGuard::new("seccomp-redis");
    let path = dir.path().join("redis.json");
    let client = "until redis-cli -p $SLIMD_PORT_6379 ping >/dev/null 2>&1; do sleep 0.05; done; \
                  redis-cli -p $SLIMD_PORT_6379 set greeting hello; redis-cli -p $SLIMD_PORT_6379 get greeting";
    env.slim_run(
        &redis,
        tag.as_str(),
        &["--host-exec", client, "--seccomp", path.to_str().unwrap()],
        &[],
    );
    let verified = env
        .slimd(&[
            "verify",
            "--seccomp",
            path.to_str().unwrap(),
            "--host-exec",
            client,
            &redis,
            tag.as_str(),
        ])
        .ok("slimd verify --seccomp");
    assert!(verified.stdout.contains("Verified"), "{}", verified.stdout);
}

#[test]
fn merged_reports_give_one_profile_for_both_workloads() {
    let Some(env) = e2e("merged_reports_give_one_profile_for_both_workloads") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let python = ["python3", "-c", THREADS];
    let perl = [
        "perl",
        "-e",
        "opendir(my $d, '/etc') or die; print scalar(grep { !/^\\./ } readdir($d)) > 10 ? \"many\\n\" : \"few\\n\"",
    ];
    let tag = TagGuard::new("seccomp-merged");
    env.slim_run(
        image,
        tag.as_str(),
        &["-o", &d("python.json"), "--no-load"],
        &python,
    );
    env.slim_run(
        image,
        tag.as_str(),
        &["-o", &d("perl.json"), "--no-load"],
        &perl,
    );
    env.slimd(&[
        "build",
        image,
        "--tag",
        tag.as_str(),
        "-r",
        &d("python.json"),
        "-r",
        &d("perl.json"),
        "--seccomp",
        &d("both.json"),
    ])
    .ok("slimd build --seccomp");
    env.slimd(&[
        "seccomp",
        &d("python.json"),
        &d("perl.json"),
        "-o",
        &d("merged.json"),
    ])
    .ok("slimd seccomp");
    assert_eq!(
        profile(d("both.json").as_ref()),
        profile(d("merged.json").as_ref())
    );
    for cmd in [&python[..], &perl[..]] {
        let want = run_confined(None, &[], image, cmd).ok("the original");
        let got = run_confined(Some(d("merged.json").as_ref()), &[], tag.as_str(), cmd)
            .ok("the slim image under the merged profile");
        assert_eq!(got.stdout, want.stdout, "{cmd:?}");
    }
}

#[test]
fn reports_that_cannot_make_a_profile_are_refused_in_one_line() {
    let Some(env) = e2e("reports_that_cannot_make_a_profile_are_refused_in_one_line") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let tag = TagGuard::new("seccomp-refused");
    env.slim_run(
        image,
        tag.as_str(),
        &["-o", good.to_str().unwrap(), "--no-load"],
        &["true"],
    );
    let report: Value = serde_json::from_slice(&fs::read(&good).unwrap()).unwrap();
    let variant = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut r = report.clone();
        edit(&mut r);
        let path = dir.path().join(name);
        fs::write(&path, serde_json::to_vec(&r).unwrap()).unwrap();
        path
    };
    let out_path = dir.path().join("profile.json");
    let out = out_path.to_str().unwrap();
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(&str, Edit, &str); 4] = [
        (
            "fanotify.json",
            &|r| {
                r.as_object_mut().unwrap().remove("syscalls");
            },
            "cannot see them",
        ),
        (
            "bogus.json",
            &|r| {
                r["syscalls"]["x86_64"]
                    .as_array_mut()
                    .unwrap()
                    .push("no_such_call".into());
            },
            "no_such_call",
        ),
        (
            "wrong-table.json",
            &|r| {
                r["syscalls"]["x86_64"]
                    .as_array_mut()
                    .unwrap()
                    .push("socketcall".into());
            },
            "socketcall",
        ),
        (
            "partial.json",
            &|r| {
                r["coverage"]["partial"] = serde_json::json!(["started-before-observer"]);
            },
            "--allow-partial",
        ),
    ];
    for (name, edit, expected) in cases {
        let path = variant(name, edit);
        let got = env.slimd(&["seccomp", path.to_str().unwrap(), "-o", out]);
        assert_one_line_error(&got, expected);
        assert!(!out_path.exists(), "{name}: a profile was written");
    }
    let partial = dir.path().join("partial.json");
    env.slimd(&[
        "seccomp",
        partial.to_str().unwrap(),
        "-o",
        out,
        "--allow-partial",
    ])
    .ok("--allow-partial");
    let complain = dir.path().join("complain.json");
    env.slimd(&[
        "seccomp",
        good.to_str().unwrap(),
        "-o",
        complain.to_str().unwrap(),
        "--complain",
        "--baseline",
        "none",
    ])
    .ok("--complain");
    assert_eq!(profile(&complain)["defaultAction"], "SCMP_ACT_LOG");
}
