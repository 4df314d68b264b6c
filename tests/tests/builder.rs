//! The builder: exact metadata, reproducible output, every output format, selection rules.
use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::Command,
};

use tests::{E2e, TagGuard, docker, docker_run, e2e, extract_image, image_config, images, run};

/// `cap_net_bind_service+ep` as a `security.capability` value (VFS_CAP_REVISION_2).
const CAP_NET_BIND_SERVICE: &str = "0100000200040000000000000000000000000000";

/// Several layers: a file deleted and a directory made opaque in upper layers, hard links, a
/// setuid binary, a file with a capability, a user, a working directory.
fn layered_image() -> String {
    let base = images::APPS.ensure().expect("test image");
    let dockerfile = format!(
        "FROM {base}\n\
         RUN mkdir -p /data/keep /data/opaque && echo one > /data/keep/a && echo gone > /data/keep/deleted \\\n\
          && echo old > /data/opaque/old\n\
         RUN rm /data/keep/deleted && rm -rf /data/opaque && mkdir /data/opaque && echo new > /data/opaque/new\n\
         RUN echo linked > /data/hl1 && ln /data/hl1 /data/hl2\n\
         RUN cp /bin/true /usr/local/bin/suidtrue && chmod 4755 /usr/local/bin/suidtrue \\\n\
          && cp /bin/true /usr/local/bin/captrue \\\n\
          && python3 -c \"import os; os.setxattr('/usr/local/bin/captrue', 'security.capability', bytes.fromhex('{CAP_NET_BIND_SERVICE}'))\"\n\
         RUN useradd -u 1234 -m app\n\
         USER app\n\
         WORKDIR /data\n\
         ENV GREETING=hi\n\
         EXPOSE 8080\n\
         VOLUME /data/volume\n\
         STOPSIGNAL SIGINT\n\
         HEALTHCHECK --interval=30s CMD true\n\
         ONBUILD RUN echo child\n\
         SHELL [\"/bin/sh\", \"-eu\", \"-c\"]\n\
         ENTRYPOINT [\"sh\", \"-c\"]\n\
         CMD [\"cat keep/a opaque/new hl1 hl2; ls opaque; id -u; echo $GREETING\"]"
    );
    images::derived("slimd-e2e/layered:1", &dockerfile, &[]).expect("layered image")
}

/// What the workload of the layered image uses, beyond its default command.
const USES: &str = "cat keep/a opaque/new hl1 hl2; ls opaque; id -u; echo $GREETING; \
                    /usr/local/bin/suidtrue; /usr/local/bin/captrue";

fn slim_layered(env: &E2e, tag: &str, extra: &[&str]) -> String {
    let image = layered_image();
    env.slim_run(&image, tag, extra, &[USES]);
    image
}

#[test]
fn layers_flatten_and_metadata_survive() {
    let Some(env) = e2e("layers_flatten_and_metadata_survive") else {
        return;
    };
    let tag = TagGuard::new("layered");
    let image = slim_layered(&env, tag.as_str(), &[]);
    let want = docker(&["run", "--rm", &image]).ok("original");
    assert_eq!(want.stdout, "one\nnew\nlinked\nlinked\nnew\n1234\nhi\n");
    let got = docker(&["run", "--rm", tag.as_str()]).ok("slim");
    assert_eq!(got.stdout, want.stdout);
    let (a, b) = (image_config(&image), image_config(tag.as_str()));
    for key in [
        "User",
        "WorkingDir",
        "Env",
        "Entrypoint",
        "Cmd",
        "ExposedPorts",
    ] {
        assert_eq!(a[key], b[key], "{key} differs");
    }

    let extracted = extract_image(tag.as_str());
    let root = extracted.path().join("root");
    assert!(
        !root.join("data/keep/deleted").exists(),
        "a deleted file came back"
    );
    assert!(
        !root.join("data/opaque/old").exists(),
        "an opaque directory let a lower file through"
    );
    let (hl1, hl2) = (
        fs::metadata(root.join("data/hl1")).unwrap(),
        fs::metadata(root.join("data/hl2")).unwrap(),
    );
    assert_eq!(hl1.ino(), hl2.ino(), "hard links were split");
    let suid = fs::metadata(root.join("usr/local/bin/suidtrue")).unwrap();
    assert_eq!(suid.permissions().mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (0, 0));
    let home = fs::metadata(root.join("home/app"));
    assert!(home.is_err() || home.unwrap().uid() == 1234);
    let cap = run(Command::new("python3").arg("-c").arg(format!(
        "import os; print(os.getxattr('{}', 'security.capability').hex())",
        root.join("usr/local/bin/captrue").display()
    )))
    .ok("reading the capability");
    assert_eq!(cap.stdout.trim(), CAP_NET_BIND_SERVICE);
}

#[test]
fn builds_are_reproducible_and_both_readers_agree() {
    let Some(env) = e2e("builds_are_reproducible_and_both_readers_agree") else {
        return;
    };
    let image = layered_image();
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("layered.json").to_str().unwrap().to_owned();
    let first = TagGuard::new("repro-first");
    env.slim_run(&image, first.as_str(), &["-o", &report], &[USES]);
    let mut ids = Vec::new();
    for (name, source) in [("repro-layers", "layers"), ("repro-save", "save")] {
        let tag = TagGuard::new(name);
        run(Command::new(&env.slimd)
            .args([
                "build",
                &image,
                "-r",
                &report,
                "--tag",
                tag.as_str(),
                "--image-source",
                source,
            ])
            .env("SOURCE_DATE_EPOCH", "1700000000"))
        .ok("slimd build");
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", tag.as_str()]).ok("inspect");
        ids.push(id.stdout.trim().to_owned());
        let created =
            docker(&["image", "inspect", "--format", "{{.Created}}", tag.as_str()]).ok("inspect");
        assert_eq!(created.stdout.trim(), "2023-11-14T22:13:20Z");
    }
    assert_eq!(ids[0], ids[1], "the two readers built different images");
}

#[test]
fn every_output_format_is_accepted_by_an_independent_reader() {
    let Some(env) = e2e("every_output_format_is_accepted_by_an_independent_reader") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    let oci = dir.path().join("oci");
    let archive = dir.path().join("slim.tar");
    let tag = TagGuard::new("formats");
    env.slimd(&[
        "build",
        image,
        "--include-bin",
        "/bin/bash",
        "--tag",
        tag.as_str(),
        "--no-load",
        "--oci-dir",
        oci.to_str().unwrap(),
        "--archive",
        archive.to_str().unwrap(),
    ])
    .ok("slimd build");
    assert!(
        !tests::image_exists(tag.as_str()),
        "--no-load loaded the image"
    );
    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}", oci.display())))
    .ok("skopeo inspect");
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("JSON");
    assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(1));
    docker(&["load", "-i", archive.to_str().unwrap()]).ok("docker load");
    let out = docker_run(tag.as_str(), &["bash", "-c", "echo ok"]).ok("the loaded image");
    assert_eq!(out.stdout, "ok\n");

    // Both outputs are inputs too: bash rebuilt from them still runs.
    let rebuilt_bash_runs = |input: &str, name: &str| {
        let tag = TagGuard::new(name);
        env.slimd(&[
            "build",
            input,
            "--include-bin",
            "/bin/bash",
            "--tag",
            tag.as_str(),
        ])
        .ok(&format!("slimd build from {input}"));
        let out = docker_run(tag.as_str(), &["bash", "-c", "echo again"]).ok("rebuilt image");
        assert_eq!(out.stdout, "again\n");
    };
    rebuilt_bash_runs(&format!("oci:{}", oci.display()), "formats-from-oci");

    // What `docker save` writes since Engine 25: an OCI layout plus manifest.json.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(oci.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .replace("sha256:", "");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(oci.join("blobs/sha256").join(&manifest_digest)).unwrap())
            .unwrap();
    let blob = |d: &serde_json::Value| {
        format!(
            "blobs/sha256/{}",
            d.as_str().unwrap().replace("sha256:", "")
        )
    };
    let docker_manifest = serde_json::json!([{
        "Config": blob(&manifest["config"]["digest"]),
        "RepoTags": ["slimd-e2e/engine25:1"],
        "Layers": [blob(&manifest["layers"][0]["digest"])],
    }]);
    fs::write(oci.join("manifest.json"), docker_manifest.to_string()).unwrap();
    let saved = dir.path().join("engine25.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&oci)
        .arg("-cf")
        .arg(&saved)
        .arg("."))
    .ok("packing the layout");
    rebuilt_bash_runs(
        &format!("docker-archive:{}", saved.display()),
        "formats-from-engine25",
    );
}

#[test]
fn include_bin_alone_makes_a_minimal_image() {
    let Some(env) = e2e("include_bin_alone_makes_a_minimal_image") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let tag = TagGuard::new("include-bin");
    env.slimd(&[
        "build",
        image,
        "--include-bin",
        "/bin/bash",
        "--tag",
        tag.as_str(),
    ])
    .ok("slimd build");
    let out = docker_run(tag.as_str(), &["bash", "-c", "echo ok"]).ok("bash in the minimal image");
    assert_eq!(out.stdout, "ok\n");
    assert!(tests::image_size(tag.as_str()) < 5_000_000);
}

#[test]
fn include_and_exclude_rules() {
    let Some(env) = e2e("include_and_exclude_rules") else {
        return;
    };
    let image = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("include.txt");
    fs::write(
        &list,
        "# extra files\n/etc/os-release\n/usr/share/zoneinfo/Asia/T*\n",
    )
    .unwrap();
    let tag = TagGuard::new("rules");
    env.slimd(&[
        "build",
        image,
        "--include-bin",
        "/usr/bin/cat",
        "--include",
        "/etc/debian_version",
        "--include-file",
        list.to_str().unwrap(),
        "--exclude",
        "/usr/share/zoneinfo/Asia/Tbilisi",
        "--tag",
        tag.as_str(),
    ])
    .ok("slimd build");
    let root = extract_image(tag.as_str());
    let root = root.path().join("root");
    for kept in [
        "etc/debian_version",
        "etc/os-release",
        "usr/share/zoneinfo/Asia/Tokyo",
    ] {
        assert!(root.join(kept).exists(), "{kept} is missing");
    }
    assert!(
        !root.join("usr/share/zoneinfo/Asia/Tbilisi").exists(),
        "an excluded file was kept"
    );
    assert!(!Path::new(&root.join("usr/share/zoneinfo/Europe")).exists());
    let out = docker_run(tag.as_str(), &["cat", "/etc/debian_version"]).ok("cat in the slim image");
    assert!(out.stdout.starts_with("12."), "{}", out.stdout);
}

#[test]
fn info_shows_layers_and_a_dockerfile() {
    let Some(env) = e2e("info_shows_layers_and_a_dockerfile") else {
        return;
    };
    let image = layered_image();
    let out = env.slimd(&["info", &image]).ok("slimd info");
    for expected in [
        "Dockerfile",
        "FROM scratch",
        "ADD rootfs.tar /",
        "RUN useradd -u 1234 -m app",
        "USER app",
        "WORKDIR /data",
        "EXPOSE 8080",
        "ENTRYPOINT [\"sh\",\"-c\"]",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} missing from:\n{}",
            out.stdout
        );
    }
}

#[test]
fn merge_command_and_foreign_reports() {
    let Some(env) = e2e("merge_command_and_foreign_reports") else {
        return;
    };
    let apps = images::APPS.ensure().expect("test image");
    let busybox = images::busybox().expect("test image");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let (a, b, c, merged) = (
        path("a.json"),
        path("b.json"),
        path("c.json"),
        path("merged.json"),
    );
    let t = TagGuard::new("merge-cmd");
    env.slim_run(
        apps,
        t.as_str(),
        &["-q", "-o", &a],
        &["cat", "/etc/debian_version"],
    );
    env.slim_run(
        apps,
        t.as_str(),
        &["-q", "-o", &b],
        &["cat", "/etc/host.conf"],
    );
    env.slim_run(busybox, t.as_str(), &["-q", "-o", &c], &["true"]);
    env.slimd(&["merge", &a, &b, "-o", &merged])
        .ok("slimd merge");
    let report: serde_json::Value = serde_json::from_slice(&fs::read(&merged).unwrap()).unwrap();
    let paths = report["paths"].as_object().unwrap();
    assert!(paths.contains_key("/etc/debian_version") && paths.contains_key("/usr/bin/cat"));
    let out = env.slimd(&["merge", &a, &c, "-o", &path("bad.json")]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr
            .contains("reports of different images cannot be merged"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("bad.json").exists());
}
