//! Container content is hostile input: symlinks in an image must never make slimd read or
//! copy a file of the host.
use std::fs;

use tests::{TagGuard, docker_run, e2e, image_layers, images};

const SECRET_PATH: &str = "/etc/slimd-e2e-host-only-secret";
const SECRET: &str = "HOST-ONLY-7f3a9c";

/// Removes the host file when dropped.
struct HostFile;

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(SECRET_PATH);
    }
}

#[test]
fn symlinks_to_host_files_stay_inside_the_image() {
    let Some(env) = e2e("symlinks_to_host_files_stay_inside_the_image") else {
        return;
    };
    fs::write(SECRET_PATH, SECRET).expect("writing the host-only file");
    let _secret = HostFile;
    let base = images::APPS.ensure().expect("test image");
    let image = images::derived(
        "slimd-e2e/hostile:1",
        &format!(
            "FROM {base}\n\
             RUN ln -s {SECRET_PATH} /evil-abs \\\n\
              && ln -s ../../../../../..{SECRET_PATH} /evil-rel \\\n\
              && ln -s ../../../../.. /srv/evil-dir \\\n\
              && ln -s /proc/1/root{SECRET_PATH} /evil-proc"
        ),
        &[],
    )
    .expect("hostile image");
    let cmd = [
        "sh",
        "-c",
        &format!(
            "for p in /evil-abs /evil-rel /srv/evil-dir{SECRET_PATH} /evil-proc; do cat $p; [ -e $p ]; done; echo done"
        ),
    ];
    let tag = TagGuard::new("hostile");
    env.slim_run(&image, tag.as_str(), &[], &cmd);
    let got = docker_run(tag.as_str(), &cmd).ok("the slim image");
    assert_eq!(got.stdout, "done\n");

    let (paths, content) = image_layers(tag.as_str());
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("slimd-e2e-host-only-secret")),
        "{paths:?}"
    );
    assert!(
        !content
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes()),
        "the host file's content is in the slim image"
    );
}
