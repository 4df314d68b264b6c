//! Capture fidelity: every way a program depends on a path, each case slimmed and run again
//! with identical output.
use tests::{TagGuard, docker_run, e2e, image_layers, images};

/// An image with one fixture per case, derived from the apps image.
fn fixture_image() -> String {
    let base = images::APPS.ensure().expect("test image");
    let dockerfile = format!(
        "FROM {base}\n\
         COPY envpy textproc.sh /usr/local/bin/\n\
         RUN chmod +x /usr/local/bin/envpy /usr/local/bin/textproc.sh \\\n\
          && mkdir -p /srv/data/sub /srv/real \\\n\
          && echo relative-ok > /srv/data/rel.txt \\\n\
          && echo through-links > /srv/real/file.txt \\\n\
          && ln -s link2 /srv/link1 && ln -s /srv/real /srv/link2 \\\n\
          && touch /etc/feature.flag"
    );
    let envpy: &[u8] = b"#!/usr/bin/env python3\nimport platform\nprint('env-python', platform.python_version())\n";
    let textproc: &[u8] =
        b"#!/bin/sh\nprintf 'b 2\\na 1\\nc 3\\n' | sort | awk '{print $2, $1}' | sed 's/ /=/' | grep -v 3\n";
    images::derived(
        "slimd-e2e/fidelity:1",
        &dockerfile,
        &[("envpy", envpy), ("textproc.sh", textproc)],
    )
    .expect("fixture image")
}

/// Slims the fixture image while running `cmd`, then runs `cmd` in both images.
#[track_caller]
fn same_output(test: &str, cmd: &[&str], expected: &str) {
    same_output_with(test, &[], cmd, expected);
}

/// `same_output` with more options for `slimd run` (`--sensor fanotify`).
#[track_caller]
fn same_output_with(test: &str, options: &[&str], cmd: &[&str], expected: &str) {
    let Some(env) = e2e(test) else { return };
    let image = fixture_image();
    let tag = TagGuard::new(test);
    env.slim_run(&image, tag.as_str(), options, cmd);
    let want = docker_run(&image, cmd).ok("the original image");
    assert_eq!(want.stdout, expected, "the original prints something else");
    let got = docker_run(tag.as_str(), cmd).ok("the slim image");
    assert_eq!(
        got.stdout, want.stdout,
        "{cmd:?} prints differently in the slim image"
    );
}

#[test]
fn script_through_env_python3() {
    same_output(
        "script_through_env_python3",
        &["envpy"],
        "env-python 3.11.2\n",
    );
}

#[test]
fn shell_script_with_text_tools() {
    same_output(
        "shell_script_with_text_tools",
        &["textproc.sh"],
        "1=a\n2=b\n",
    );
}

#[test]
fn relative_opens_after_cd() {
    same_output(
        "relative_opens_after_cd",
        &[
            "sh",
            "-c",
            "cd /srv/data && cat sub/../rel.txt && cd sub && cat ../rel.txt",
        ],
        "relative-ok\nrelative-ok\n",
    );
}

#[test]
fn chain_of_symlinks_to_a_directory() {
    same_output(
        "chain_of_symlinks_to_a_directory",
        &["cat", "/srv/link1/file.txt"],
        "through-links\n",
    );
}

#[test]
fn file_only_tested_for_existence() {
    same_output(
        "file_only_tested_for_existence",
        &[
            "sh",
            "-c",
            "[ -e /etc/feature.flag ] && echo on || echo off",
        ],
        "on\n",
    );
}

#[test]
fn zoneinfo_through_tz() {
    same_output(
        "zoneinfo_through_tz",
        &["sh", "-c", "TZ=Asia/Tokyo date -d @0 '+%H:%M %Z'"],
        "09:00 JST\n",
    );
}

#[test]
fn library_loaded_with_ctypes() {
    same_output(
        "library_loaded_with_ctypes",
        &[
            "python3",
            "-c",
            "import ctypes\nlib = ctypes.CDLL('libbz2.so.1.0')\nlib.BZ2_bzlibVersion.restype = ctypes.c_char_p\nprint(lib.BZ2_bzlibVersion().decode())",
        ],
        "1.0.8, 13-Jul-2019\n",
    );
}

#[test]
fn python_multiprocessing() {
    same_output(
        "python_multiprocessing",
        &[
            "python3",
            "-c",
            "import multiprocessing as mp\nif __name__ == '__main__':\n    with mp.Pool(2) as pool:\n        print(sum(pool.map(abs, range(-5, 5))))",
        ],
        "25\n",
    );
}

#[test]
fn perl_xs_module() {
    same_output(
        "perl_xs_module",
        &[
            "perl",
            "-MList::Util=sum,max",
            "-MPOSIX=floor",
            "-e",
            "print sum(1..10), ' ', max(3, 9), ' ', floor(2.5), qq{\\n}",
        ],
        "55 9 2\n",
    );
}

#[test]
fn files_made_at_run_time_stay_out() {
    let test = "files_made_at_run_time_stay_out";
    let Some(env) = e2e(test) else { return };
    let image = fixture_image();
    let tag = TagGuard::new(test);
    let cmd = [
        "sh",
        "-c",
        "echo made > /tmp/made-at-run-time && cat /tmp/made-at-run-time",
    ];
    env.slim_run(&image, tag.as_str(), &[], &cmd);
    let (paths, _) = image_layers(tag.as_str());
    assert!(
        !paths.iter().any(|p| p.contains("made-at-run-time")),
        "a file made at run time landed in the slim image: {paths:?}"
    );
    // The directory it was made in is kept, with its mode, so the command still works.
    let mode = docker_run(
        tag.as_str(),
        &[
            "sh",
            "-c",
            "[ -d /tmp -a -k /tmp -a -w /tmp ] && echo sticky",
        ],
    )
    .ok("testing /tmp");
    assert_eq!(mode.stdout, "sticky\n");
    let again = docker_run(tag.as_str(), &cmd).ok("the command in the slim image");
    assert_eq!(again.stdout, "made\n");
}

// The same cases with the fanotify sensor, except what needs stat visibility: `[ -e ]`,
// directories only passed through (`sub/..`), and Python, which stats its sources before it
// reads the cached bytecode.
const FANOTIFY: &[&str] = &["--sensor", "fanotify"];

#[test]
fn fanotify_shell_script_with_text_tools() {
    same_output_with(
        "fanotify_shell_script_with_text_tools",
        FANOTIFY,
        &["textproc.sh"],
        "1=a\n2=b\n",
    );
}

#[test]
fn fanotify_relative_opens_after_cd() {
    same_output_with(
        "fanotify_relative_opens_after_cd",
        FANOTIFY,
        &["sh", "-c", "cd /srv/data && cat rel.txt"],
        "relative-ok\n",
    );
}

#[test]
fn fanotify_chain_of_symlinks_to_a_directory() {
    same_output_with(
        "fanotify_chain_of_symlinks_to_a_directory",
        FANOTIFY,
        &["cat", "/srv/link1/file.txt"],
        "through-links\n",
    );
}

#[test]
fn fanotify_zoneinfo_through_tz() {
    same_output_with(
        "fanotify_zoneinfo_through_tz",
        FANOTIFY,
        &["sh", "-c", "TZ=Asia/Tokyo date -d @0 '+%H:%M %Z'"],
        "09:00 JST\n",
    );
}

#[test]
fn fanotify_perl_xs_module() {
    same_output_with(
        "fanotify_perl_xs_module",
        FANOTIFY,
        &[
            "perl",
            "-MList::Util=sum",
            "-e",
            "print sum(1..10), qq{\\n}",
        ],
        "55\n",
    );
}
