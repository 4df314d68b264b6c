//! Real Debian-packaged software, slimmed and run again: python, nginx behind an HTTP probe,
//! redis-server with redis-cli, a coreutils pipeline, perl. Each case compares what both
//! images do and holds the slim image to the size SlimToolkit reached on the same machine
//! (ACCEPTANCE.md), where there is one.
use tests::{E2e, TagGuard, docker_run, e2e, image_size, images, served_root};

/// SlimToolkit's slim image sizes on the same workloads (ACCEPTANCE.md), in bytes.
const SLIMTOOLKIT_PYTHON: u64 = 13_300_000;
const SLIMTOOLKIT_NGINX: u64 = 9_900_000;
const SLIMTOOLKIT_REDIS: u64 = 17_700_000;

const REDIS_CLIENT: &str = "until redis-cli -p $SLIMD_PORT_6379 ping >/dev/null 2>&1; do sleep 0.05; done; \
                            redis-cli -p $SLIMD_PORT_6379 set greeting hello; redis-cli -p $SLIMD_PORT_6379 get greeting";

/// Slims `image` running `cmd`, then runs `cmd` in both; returns the slim image's size.
#[track_caller]
fn same_stdout(env: &E2e, test: &str, image: &str, cmd: &[&str]) -> u64 {
    let tag = TagGuard::new(test);
    env.slim_run(image, tag.as_str(), &[], cmd);
    let want = docker_run(image, cmd).ok("the original image");
    let got = docker_run(tag.as_str(), cmd).ok("the slim image");
    assert_eq!(got.stdout, want.stdout, "{cmd:?}");
    assert!(!want.stdout.is_empty());
    let size = image_size(tag.as_str());
    eprintln!("{test}: slim image {size} bytes");
    size
}

#[test]
fn python_acceptance_one_liner_is_no_larger_than_slimtoolkit() {
    let Some(env) = e2e("python_acceptance_one_liner_is_no_larger_than_slimtoolkit") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let cmd = [
        "python3",
        "-c",
        "import json,sqlite3; print(json.dumps(sqlite3.sqlite_version))",
    ];
    let size = same_stdout(&env, "real-python-acceptance", image, &cmd);
    assert!(
        size <= SLIMTOOLKIT_PYTHON,
        "{size} B is larger than SlimToolkit's {SLIMTOOLKIT_PYTHON} B"
    );
}

#[test]
fn python_standard_library() {
    let Some(env) = e2e("python_standard_library") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let cmd = [
        "python3",
        "-c",
        "import json, sqlite3, ssl, hashlib\n\
         print(json.dumps([sqlite3.sqlite_version, ssl.OPENSSL_VERSION.split()[0], hashlib.sha256(b'slimd').hexdigest()[:16]]))",
    ];
    let size = same_stdout(&env, "real-python-stdlib", image, &cmd);
    assert!(size * 10 < image_size(image));
}

#[test]
fn nginx_serves_the_same_bytes_through_a_loopback_port() {
    let Some(env) = e2e("nginx_serves_the_same_bytes_through_a_loopback_port") else {
        return;
    };
    let image = images::nginx().expect("nginx image");
    let tag = TagGuard::new("real-nginx");
    env.slim_run(&image, tag.as_str(), &["--http-probe"], &[]);
    let want = served_root(&image, "80");
    let got = served_root(tag.as_str(), "80");
    assert!(String::from_utf8_lossy(&want).contains("Welcome to nginx"));
    assert_eq!(got, want, "the slim image serves other bytes for GET /");
    let size = image_size(tag.as_str());
    assert!(
        size <= SLIMTOOLKIT_NGINX,
        "{size} B is larger than SlimToolkit's {SLIMTOOLKIT_NGINX} B"
    );
    env.slimd(&["verify", "--http-probe", &image, tag.as_str()])
        .ok("slimd verify");
}

#[test]
fn redis_script_with_server_and_client() {
    let Some(env) = e2e("redis_script_with_server_and_client") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let script = "redis-server --daemonize yes --save '' >/dev/null && \
                  until redis-cli ping >/dev/null 2>&1; do sleep 0.05; done; \
                  redis-cli set greeting hello; redis-cli get greeting; redis-cli shutdown nosave";
    same_stdout(&env, "real-redis-script", image, &["sh", "-c", script]);
}

#[test]
fn redis_service_exercised_from_the_host() {
    let Some(env) = e2e("redis_service_exercised_from_the_host") else {
        return;
    };
    let image = images::redis().expect("redis image");
    let tag = TagGuard::new("real-redis");
    env.slim_run(&image, tag.as_str(), &["--host-exec", REDIS_CLIENT], &[]);
    let verified = env
        .slimd(&["verify", "--host-exec", REDIS_CLIENT, &image, tag.as_str()])
        .ok("slimd verify");
    assert!(verified.stdout.contains("Verified"), "{}", verified.stdout);
    let size = image_size(tag.as_str());
    assert!(
        size <= SLIMTOOLKIT_REDIS,
        "{size} B is larger than SlimToolkit's {SLIMTOOLKIT_REDIS} B"
    );
}

#[test]
fn coreutils_pipeline() {
    let Some(env) = e2e("coreutils_pipeline") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let cmd = [
        "sh",
        "-c",
        "seq 1 20 | sort -rn | head -3 | tr '\\n' ' ' | wc -c; echo slimd | md5sum | cut -c1-8; date -u -d @0 +%Y",
    ];
    same_stdout(&env, "real-coreutils", image, &cmd);
}

#[test]
fn perl_one_liner() {
    let Some(env) = e2e("perl_one_liner") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let cmd = [
        "perl",
        "-e",
        "my %h = map { $_ => length } qw(alpha beta gamma); print join(',', map { \"$_=$h{$_}\" } sort keys %h), qq{\\n}",
    ];
    same_stdout(&env, "real-perl", image, &cmd);
}

#[test]
fn exec_in_the_container_counts() {
    let Some(env) = e2e("exec_in_the_container_counts") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let tag = TagGuard::new("real-exec");
    env.slim_run(
        image,
        tag.as_str(),
        &[
            "--exec",
            "cat /etc/debian_version",
            "--continue-after",
            "probes",
        ],
        &["sleep", "600"],
    );
    let want = docker_run(image, &["cat", "/etc/debian_version"]).ok("original");
    let got = docker_run(tag.as_str(), &["cat", "/etc/debian_version"]).ok("what the exec used");
    assert_eq!(got.stdout, want.stdout);
}

#[test]
fn verify_names_what_a_broken_image_lacks() {
    let Some(env) = e2e("verify_names_what_a_broken_image_lacks") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("python.json").to_str().unwrap().to_owned();
    let cmd = [
        "python3",
        "-c",
        "import json,sqlite3; print(json.dumps(sqlite3.sqlite_version))",
    ];
    let good = TagGuard::new("verify-good");
    env.slim_run(image, good.as_str(), &["-o", &report, "--verify"], &cmd);
    let broken = TagGuard::new("verify-broken");
    env.slimd(&[
        "build",
        image,
        "-r",
        &report,
        "--exclude",
        "/usr/lib/x86_64-linux-gnu/libsqlite3*",
        "--tag",
        broken.as_str(),
    ])
    .ok("building a broken image");
    let mut args = vec!["verify", image, broken.as_str(), "--"];
    args.extend(cmd);
    let out = env.slimd(&args);
    assert_ne!(out.code, Some(0), "verify passed a broken image");
    let error = out.stderr.lines().last().unwrap_or_default();
    assert!(
        error.contains("exit code") && error.contains("libsqlite3"),
        "{error}"
    );
    assert!(error.contains("standard output"), "{error}");
}
