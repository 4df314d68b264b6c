//! The hostile corpus: layouts, layers, archives, executables, configuration files, reports,
//! HTTP answers and containers made to hurt slimd. Each case ends in one clear error or a
//! correct result, within bounded memory (the kernel's peak-RSS accounting of the slimd
//! process) and without hanging (a watchdog kills and fails a run that does).
use std::{
    fs,
    io::Write,
    net::TcpListener,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tests::{
    E2e, Measured, TagGuard, assert_one_line_error,
    crafted::{self, Layer},
    docker, e2e, images, run,
};

/// Peak memory any hostile case may cost slimd. An honest build of these tiny images takes
/// about 30 MiB; each attack would take gigabytes.
const MAX_RSS_MIB: u64 = 200;

#[track_caller]
fn assert_bounded(m: &Measured, what: &str) {
    eprintln!("{what}: {} MiB, {:?}", m.max_rss_mib, m.wall);
    assert!(
        m.max_rss_mib <= MAX_RSS_MIB,
        "{what}: slimd peaked at {} MiB\nstderr:\n{}",
        m.max_rss_mib,
        m.run.stderr
    );
}

/// An honest layer: `/etc/hello`.
fn hello_layer() -> Vec<u8> {
    crafted::tar(&[
        crafted::entry("etc/", b'5', b"", ""),
        crafted::entry("etc/hello", b'0', b"hello\n", ""),
    ])
}

/// `slimd build oci:<layout>` into a new layout beside it, measured.
fn build_layout(env: &E2e, layout: &Path, extra_env: &[(&str, &str)]) -> (Measured, bool) {
    let out = layout.with_extension("slim");
    let m = env.slimd_measured(
        &[
            "build",
            &format!("oci:{}", layout.display()),
            "--include",
            "/etc/hello",
            "--no-load",
            "--oci-dir",
            out.to_str().unwrap(),
        ],
        extra_env,
    );
    (m, out.exists())
}

#[test]
fn oci_layouts_that_lie_are_refused() {
    let Some(env) = e2e("oci_layouts_that_lie_are_refused") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = |name: &str, layers: &[Layer], order: &[usize]| {
        let d = dir.path().join(name);
        crafted::oci_layout(&d, layers, order, None);
        d
    };

    // The control: an honest layout builds, so every refusal below is the lie's doing.
    let victim = layout("victim", &[Layer::tar(hello_layer())], &[0]);
    let (m, written) = build_layout(&env, &victim, &[]);
    m.ok("building an honest layout");
    assert!(written);

    /// What is tried, the layout, what the error must say, and the environment.
    type Case<'a> = (
        &'a str,
        std::path::PathBuf,
        &'a str,
        Vec<(&'a str, &'a str)>,
    );
    let mut cases: Vec<Case> = Vec::new();

    // blobs/ is a symlink to another (private) layout's content store.
    let thief = dir.path().join("thief");
    fs::create_dir(&thief).unwrap();
    fs::copy(victim.join("index.json"), thief.join("index.json")).unwrap();
    std::os::unix::fs::symlink(victim.join("blobs"), thief.join("blobs")).unwrap();
    cases.push(("blobs/ is a symlink", thief, "symbolic links", vec![]));

    // index.json is a symlink to /dev/zero, a FIFO, or too large.
    let zero = layout("zero", &[Layer::tar(hello_layer())], &[0]);
    fs::remove_file(zero.join("index.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("index.json")).unwrap();
    cases.push(("index.json -> /dev/zero", zero, "symbolic links", vec![]));
    let fifo = layout("fifo", &[Layer::tar(hello_layer())], &[0]);
    fs::remove_file(fifo.join("index.json")).unwrap();
    run(std::process::Command::new("mkfifo").arg(fifo.join("index.json"))).ok("mkfifo");
    cases.push(("index.json is a FIFO", fifo, "not a regular file", vec![]));
    let big = layout("big-index", &[Layer::tar(hello_layer())], &[0]);
    fs::write(big.join("index.json"), vec![b' '; 8 << 20]).unwrap();
    cases.push(("an 8 MiB index.json", big, "larger than", vec![]));

    // A blob whose bytes changed after its digest was taken.
    let tampered = layout("tampered", &[Layer::tar(hello_layer())], &[0]);
    let blob = tampered
        .join("blobs/sha256")
        .join(&crafted::sha256(&hello_layer())[7..]);
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.windows(6).position(|w| w == b"hello\n").unwrap();
    bytes[at] = b'j';
    fs::write(&blob, bytes).unwrap();
    cases.push((
        "a tampered layer blob",
        tampered,
        "not to its digest",
        vec![],
    ));

    // A descriptor whose size is not the blob's.
    let sized = dir.path().join("size-lie");
    crafted::oci_layout(&sized, &[Layer::tar(hello_layer())], &[0], Some(7));
    cases.push((
        "a descriptor size lie",
        sized,
        "its descriptor says",
        vec![],
    ));

    // A config whose diff id is not the layer's.
    let mut wrong = Layer::tar(hello_layer());
    wrong.diff_id = Some(crafted::sha256(b"another layer"));
    let diff = layout("diff-lie", &[wrong], &[0]);
    cases.push(("a diff id lie", diff, "not to its diff id", vec![]));

    // A gzip bomb: 300 MB of zeros in a few hundred KB, against a 64 MiB budget.
    let bomb = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let size = 300u64 << 20;
        enc.write_all(&crafted::header(b"zeros", b'0', size, b""))
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..(size >> 20) {
            enc.write_all(&chunk).unwrap();
        }
        enc.write_all(&[0u8; 1024]).unwrap();
        Layer {
            blob: enc.finish().unwrap(),
            gzip: true,
            diff_id: Some(crafted::sha256(b"unknown")),
        }
    };
    assert!(bomb.blob.len() < 2 << 20, "{} bytes", bomb.blob.len());
    let bomb_dir = layout("bomb", &[bomb], &[0]);
    cases.push((
        "a gzip bomb",
        bomb_dir,
        "larger than 67108864 bytes",
        vec![("SLIMD_MAX_IMAGE_BYTES", "67108864")],
    ));

    // Layer tars whose headers lie or ask for too much.
    let long_path = "d/".repeat(100_000) + "f";
    let tars: [(&str, Vec<u8>, &str); 4] = [
        (
            "a 200 KB PAX path",
            crafted::tar(&[
                crafted::pax(&[("path", long_path.as_bytes())]),
                crafted::entry("f", b'0', b"x", ""),
            ]),
            "a name of 200001 bytes",
        ),
        (
            "a 7 GiB entry that is not there",
            {
                let mut t = crafted::header(b"huge", b'0', 7 << 30, b"").to_vec();
                t.extend_from_slice(&[7u8; 4096]);
                t
            },
            "ends inside",
        ),
        (
            "a bad header checksum",
            {
                let mut t = hello_layer();
                t[0] = b'x';
                t
            },
            "checksum",
        ),
        (
            "a 2 GiB GNU long name",
            crafted::header(b"././@LongLink", b'L', 2 << 30, b"").to_vec(),
            "metadata record",
        ),
    ];
    for (name, tar, expected) in tars {
        let d = layout(&name.replace(' ', "-"), &[Layer::tar(tar)], &[0]);
        cases.push((name, d, expected, vec![]));
    }

    for (name, dir, expected, extra_env) in &cases {
        let (m, written) = build_layout(&env, dir, extra_env);
        assert_one_line_error(&m.run, expected);
        assert_bounded(&m, name);
        assert!(!written, "{name}: an output was written");
    }
}

#[test]
fn odd_layers_are_read_as_the_kernel_would() {
    let Some(env) = e2e("odd_layers_are_read_as_the_kernel_would") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let odd = crafted::tar(&[
        crafted::entry("etc/", b'5', b"", ""),
        crafted::entry("etc/hello", b'0', b"hello\n", ""),
        crafted::entry("etc/hello-link", b'1', b"", "etc/hello"),
        crafted::entry("dev/", b'5', b"", ""),
        crafted::entry("dev/null", b'3', b"", ""),
        crafted::entry("run/", b'5', b"", ""),
        crafted::entry("run/fifo", b'6', b"", ""),
        crafted::entry("../escape", b'0', b"out", ""),
        crafted::entry("etc/../../escape2", b'0', b"out", ""),
        crafted::entry("etc/.wh..", b'0', b"", ""),
        crafted::entry("etc/.wh...", b'0', b"", ""),
        crafted::entry("link-out", b'1', b"", "../../etc/passwd"),
    ]);
    let delete = crafted::tar(&[crafted::entry("etc/.wh.hello", b'0', b"", "")]);
    // The first layer listed again after the one that deletes its file: it comes back.
    let layout = dir.path().join("odd");
    crafted::oci_layout(
        &layout,
        &[Layer::tar(odd), Layer::tar(delete)],
        &[0, 1, 0],
        None,
    );
    let out = dir.path().join("out");
    let m = env.slimd_measured(
        &[
            "build",
            &format!("oci:{}", layout.display()),
            "--include",
            "/",
            "--no-load",
            "--oci-dir",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let m = m.ok("building the odd layout");
    assert_bounded(&m, "odd layers");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(out.join("blobs/sha256").join(&manifest_digest[7..])).unwrap(),
    )
    .unwrap();
    let layer = out
        .join("blobs/sha256")
        .join(&manifest["layers"][0]["digest"].as_str().unwrap()[7..]);
    let listing = run(std::process::Command::new("tar").arg("-tvf").arg(&layer))
        .ok("listing the slim layer")
        .stdout;
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name) || l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} is not in the slim layer:\n{listing}"))
            .to_owned()
    };
    assert!(line("dev/null").starts_with('c'), "{listing}");
    assert!(line("run/fifo").starts_with('p'), "{listing}");
    assert!(line("etc/hello").contains(" 6 "), "{listing}");
    assert!(
        line("etc/hello-link").contains("link to etc/hello"),
        "{listing}"
    );
    assert!(!listing.contains("escape"), "{listing}");
    assert!(!listing.contains("link-out"), "{listing}");
    assert!(!listing.contains(".wh."), "{listing}");
}

#[test]
fn an_archive_cannot_take_a_tag_that_slimd_did_not_make() {
    let Some(env) = e2e("an_archive_cannot_take_a_tag_that_slimd_did_not_make") else {
        return;
    };
    let busybox = images::busybox().expect("test image");
    let victim = TagGuard("slimd-e2e/victim:1.0-slim".to_owned());
    docker(&["tag", busybox, victim.as_str()]).ok("tagging the user's own image");
    let id_of = |tag: &str| {
        docker(&["image", "inspect", "--format", "{{.Id}}", tag])
            .ok("docker image inspect")
            .stdout
            .trim()
            .to_owned()
    };
    let original_id = id_of(victim.as_str());

    // An archive of busybox that calls itself slimd-e2e/victim:1.0.
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    let saved = dir.path().join("saved.tar");
    docker(&["save", "-o", saved.to_str().unwrap(), busybox]).ok("docker save");
    run(std::process::Command::new("tar")
        .arg("-xf")
        .arg(&saved)
        .arg("-C")
        .arg(&unpacked))
    .ok("unpacking");
    let manifest_path = unpacked.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
    manifest[0]["RepoTags"] = serde_json::json!(["slimd-e2e/victim:1.0"]);
    fs::write(&manifest_path, manifest.to_string()).unwrap();
    let archive = dir.path().join("hostile.tar");
    run(std::process::Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .arg("."))
    .ok("repacking");

    let build = |extra: &[&str]| {
        let mut args = vec![
            "build".to_owned(),
            format!("docker-archive:{}", archive.display()),
            "--include".to_owned(),
            "/bin/busybox".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.slimd(&args)
    };
    assert_one_line_error(
        &build(&[]),
        "already names an image that slimd did not build",
    );
    assert_eq!(id_of(victim.as_str()), original_id, "the user's tag moved");
    build(&["--force"]).ok("build with --force");
    assert_ne!(id_of(victim.as_str()), original_id);
    // Once the tag names slimd's own image, a rebuild may move it again.
    build(&[]).ok("rebuilding over slimd's own image");
}

#[test]
fn executables_that_amplify_and_exec_storms_cost_little() {
    let Some(env) = e2e("executables_that_amplify_and_exec_storms_cost_little") else {
        return;
    };
    let busybox = images::busybox().expect("test image");
    // 200,000 DT_NEEDED entries naming one 4,000-byte string: 800 MB for a parser that copies
    // each, in a 3 MB file.
    let elf = crafted::amplifying_elf(200_000, 4000);
    let image = images::derived(
        "slimd-e2e/amplify:1",
        &format!("FROM {busybox}\nCOPY big /big\nRUN chmod 755 /big"),
        &[("big", &elf)],
    )
    .expect("amplifying image");
    let tag = TagGuard::new("amplify");
    // Three hundred spellings of one executable, each run.
    let storm = "p=/big; for i in $(seq 300); do $p 2>/dev/null; p=/$p; done; echo done";
    let m = env.slimd_measured(
        &[
            "run",
            "--tag",
            tag.as_str(),
            "--include-bin",
            "/big",
            &image,
            "--",
            "sh",
            "-c",
            storm,
        ],
        &[],
    );
    let m = m.ok("slimd run of the exec storm");
    assert_bounded(&m, "amplifying ELF and exec storm");
}

#[test]
fn ld_so_conf_loops_do_not_hang_a_build() {
    let Some(env) = e2e("ld_so_conf_loops_do_not_hang_a_build") else {
        return;
    };
    let busybox = images::busybox().expect("test image");
    // Each of eleven files includes all eleven, ten times: 11^5 reads without a visited set.
    let mut conf = String::from("/opt/lib\n");
    for _ in 0..10 {
        conf.push_str("include /etc/ld.so.conf\ninclude /etc/ld.so.conf.d/*.conf\n");
    }
    let names: Vec<String> = (0..10).map(|i| format!("conf.d/{i}.conf")).collect();
    let mut files: Vec<(&str, &[u8])> = vec![("ld.so.conf", conf.as_bytes())];
    files.extend(names.iter().map(|n| (n.as_str(), conf.as_bytes())));
    let image = images::derived(
        "slimd-e2e/ldloop:1",
        &format!("FROM {busybox}\nCOPY ld.so.conf /etc/ld.so.conf\nCOPY conf.d /etc/ld.so.conf.d"),
        &files,
    )
    .expect("ld.so.conf loop image");
    let dir = tempfile::tempdir().unwrap();
    let m = env.slimd_measured(
        &[
            "build",
            &image,
            "--include-bin",
            "/bin/busybox",
            "--no-load",
            "--oci-dir",
            dir.path().join("out").to_str().unwrap(),
        ],
        &[],
    );
    let m = m.ok("building with a looping ld.so.conf");
    assert_bounded(&m, "ld.so.conf loop");
}

#[test]
fn hostile_reports() {
    let Some(env) = e2e("hostile_reports") else {
        return;
    };
    let busybox = images::busybox().expect("test image");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("good.json");
    let tag = TagGuard::new("hostile-reports");
    env.slim_run(
        busybox,
        tag.as_str(),
        &["-q", "-o", report.to_str().unwrap()],
        &["true"],
    );
    let good: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();

    let mut future = good.clone();
    future["schema_version"] = serde_json::json!(4_294_967_297u64);
    let future_path = dir.path().join("future.json");
    fs::write(&future_path, future.to_string()).unwrap();
    let fifo = dir.path().join("fifo.json");
    run(std::process::Command::new("mkfifo").arg(&fifo)).ok("mkfifo");
    let out = dir.path().join("merged.json");
    for (report, expected) in [
        (future_path.as_path(), "schema version 4294967297"),
        (fifo.as_path(), "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
    ] {
        let m = env.slimd_measured(
            &[
                "merge",
                report.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert_one_line_error(&m.run, expected);
        assert_bounded(&m, expected);
        assert!(!out.exists());
    }

    // Counters at their maximum merge without wrapping.
    let mut huge = good.clone();
    for key in ["received", "deduplicated", "read_on_exit"] {
        huge["events"][key] = serde_json::json!(u64::MAX);
    }
    let huge_path = dir.path().join("huge.json");
    fs::write(&huge_path, huge.to_string()).unwrap();
    env.slimd(&[
        "merge",
        huge_path.to_str().unwrap(),
        huge_path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .ok("merging reports with huge counters");
    let merged: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
    assert_eq!(merged["events"]["received"], serde_json::json!(u64::MAX));
}

#[test]
fn probes_stay_on_loopback_and_bodies_are_bounded() {
    let Some(env) = e2e("probes_stay_on_loopback_and_bodies_are_bounded") else {
        return;
    };
    let base = images::APPS.ensure().expect("test image");
    let server = br#"import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/endless':
            self.send_response(200)
            self.end_headers()
            chunk = b'x' * 65536
            try:
                while True:
                    self.wfile.write(chunk)
            except Exception:
                pass
        else:
            self.send_response(302)
            self.send_header('Location', sys.argv[1])
            self.end_headers()
http.server.HTTPServer(('', 8080), H).serve_forever()
"#;
    let image = images::derived(
        "slimd-e2e/redirector:1",
        &format!("FROM {base}\nCOPY server.py /srv/server.py\nEXPOSE 8080"),
        &[("server.py", server)],
    )
    .expect("redirecting server image");
    // Where the container would send slimd: a listener of the test's own, which must hear
    // nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}/stolen", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let heard = Arc::new(AtomicUsize::new(0));
    let counter = {
        let heard = heard.clone();
        std::thread::spawn(move || {
            for _ in 0..600 {
                if listener.accept().is_ok() {
                    heard.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let tag = TagGuard::new("redirector");
    let m = env.slimd_measured(
        &[
            "run",
            "--tag",
            tag.as_str(),
            "-v",
            "--http-probe-path",
            "/",
            "--http-probe-path",
            "/endless",
            &image,
            "--",
            "python3",
            "/srv/server.py",
            &target,
        ],
        &[],
    );
    let m = m.ok("slimd run of the redirecting server");
    assert!(
        m.run.stderr.contains("GET / on 8080/tcp -> 302"),
        "{}",
        m.run.stderr
    );
    assert!(
        m.run.stderr.contains(&format!(
            "GET /endless on 8080/tcp -> 200 ({} bytes)",
            16 << 20
        )),
        "{}",
        m.run.stderr
    );
    assert_bounded(&m, "redirects and an endless body");
    assert_eq!(
        heard.load(Ordering::SeqCst),
        0,
        "slimd followed the redirect"
    );
    drop(counter);

    let dir = tempfile::tempdir().unwrap();
    let probes = dir.path().join("probes.json");
    fs::write(&probes, r#"[{"path": "@evil.example/"}]"#).unwrap();
    let out = env.slimd(&["run", "--http-probe-file", probes.to_str().unwrap(), &image]);
    assert_one_line_error(&out, "must start with '/'");
}

#[test]
fn containers_that_flood_slimd() {
    let Some(env) = e2e("containers_that_flood_slimd") else {
        return;
    };
    let apps = images::APPS.ensure().expect("test image");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("flood.json");
    let tag = TagGuard::new("flood");
    // 800,000 distinct paths, each looked up once.
    let flood = "import os\nfor i in range(800000):\n    try:\n        os.stat(f'/nope/{i}')\n    except OSError:\n        pass\n";
    let m = env.slimd_measured(
        &[
            "run",
            "--tag",
            tag.as_str(),
            "-o",
            report.to_str().unwrap(),
            apps,
            "--",
            "python3",
            "-c",
            flood,
        ],
        &[],
    );
    assert_one_line_error(&m.run, "beyond the limit of 500000");
    eprintln!(
        "800,000 distinct paths: {} MiB, {:?}",
        m.max_rss_mib, m.wall
    );
    assert!(m.max_rss_mib < 600, "{} MiB", m.max_rss_mib);
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(written["complete"], false);
    assert!(written["events"]["over_limit"].as_u64().unwrap() > 0);

    // 100 MB of output, of which slimd keeps what verify compares (lines of 16 KiB, as the
    // engine cuts them, so that the engine itself is quick).
    let busybox = images::busybox().expect("test image");
    let tag = TagGuard::new("flood-output");
    let m = env.slimd_measured(
        &[
            "run",
            "--tag",
            tag.as_str(),
            busybox,
            "--",
            "sh",
            "-c",
            "head -c 100000000 /dev/zero | tr '\\0' x",
        ],
        &[],
    );
    let m = m.ok("slimd run of a container that writes 100 MB");
    eprintln!("100 MB of output: {} MiB, {:?}", m.max_rss_mib, m.wall);
    // The sensor's ring buffer alone is 64 MiB of mappings (32 MiB, mapped twice).
    assert!(
        m.max_rss_mib < 180,
        "{} MiB for 100 MB of output",
        m.max_rss_mib
    );
}

#[test]
fn a_hard_link_keeps_its_own_file_when_a_later_layer_replaces_its_partner() {
    let Some(env) = e2e("a_hard_link_keeps_its_own_file_when_a_later_layer_replaces_its_partner")
    else {
        return;
    };
    let base = images::APPS.ensure().expect("test image");
    // Debian's /usr/bin/perl and /usr/bin/perl5.36.0 are one file; a later layer replaces
    // /usr/bin/perl and leaves perl5.36.0 alone.
    let image = images::derived(
        "slimd-e2e/relinked:1",
        &format!(
            "FROM {base}\n\
             RUN [ \"$(stat -c %i /usr/bin/perl)\" = \"$(stat -c %i /usr/bin/perl5.36.0)\" ] \\\n\
              && printf '#!/bin/sh\\necho replaced\\n' > /usr/bin/perl.new \\\n\
              && chmod 755 /usr/bin/perl.new && mv /usr/bin/perl.new /usr/bin/perl"
        ),
        &[],
    )
    .expect("image with a replaced hard link");
    let cmd = [
        "sh",
        "-c",
        "perl; perl5.36.0 -e 'print qq(the real perl\\n)'",
    ];
    let tag = TagGuard::new("relinked");
    env.slim_run(&image, tag.as_str(), &[], &cmd);
    let want = tests::docker_run(&image, &cmd).ok("the original");
    assert_eq!(want.stdout, "replaced\nthe real perl\n");
    let got = tests::docker_run(tag.as_str(), &cmd).ok("the slim image");
    assert_eq!(got.stdout, want.stdout);
}

#[test]
fn what_a_killed_slimd_left_behind_is_removed() {
    let Some(env) = e2e("what_a_killed_slimd_left_behind_is_removed") else {
        return;
    };
    let busybox = images::busybox().expect("test image");
    // A container as a slimd that died by SIGKILL leaves it: its owner's pid is not alive.
    let created = docker(&[
        "create",
        "--label",
        "slimd.owner=4194304:1",
        busybox,
        "true",
    ])
    .ok("creating a leftover container");
    let leftover = created.stdout.trim().to_owned();
    let _guard = tests::ContainerGuard(leftover.clone());
    // One of a live owner (this test process, by pid and start time) stays.
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let start = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .to_owned();
    let mine = docker(&[
        "create",
        "--label",
        &format!("slimd.owner={}:{start}", std::process::id()),
        busybox,
        "true",
    ])
    .ok("creating a container of a live owner");
    let mine = mine.stdout.trim().to_owned();
    let _mine_guard = tests::ContainerGuard(mine.clone());
    let tag = TagGuard::new("cleanup");
    // Its host command starts a process in the background that would outlive slimd.
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let host = format!("sleep 300 & echo $! > {}", pid_file.display());
    env.slim_run(
        busybox,
        tag.as_str(),
        &["--host-exec", &host],
        &["sleep", "1"],
    );
    assert!(
        docker(&["inspect", &leftover]).code != Some(0),
        "the leftover container is still there"
    );
    assert_eq!(docker(&["inspect", &mine]).code, Some(0));
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    // Killed, it is reaped by whoever inherited it; give that a moment.
    let gone = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert!(
        gone,
        "the host command's background process {pid} outlived slimd"
    );
}
