//! Test images made locally from Debian packages (no registry is reachable).
//!
//! Root filesystems are made with debootstrap or from a `.deb`, packed into a tarball that is
//! cached under [`cache_dir`] between runs on the same machine, and imported into the engine.
//! Every function is idempotent and safe to call from parallel tests: a file lock serialises
//! the work and an image that already exists (with the same recipe label) is reused.
use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;

use crate::output;
use sha2::{Digest, Sha256};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
const RECIPE_LABEL: &str = "slimd.test.recipe";

/// Minbase with python3, nginx-light and redis-server: the image of ACCEPTANCE.md's yardsticks.
pub const APPS: Rootfs = Rootfs {
    tag: "slimd-test/apps:bookworm",
    packages: &["python3", "nginx-light", "redis-server"],
};

/// A Debian root filesystem made by `debootstrap --variant=minbase`.
#[derive(Clone, Copy, Debug)]
pub struct Rootfs {
    pub tag: &'static str,
    pub packages: &'static [&'static str],
}

/// Where rootfs tarballs and downloaded packages are cached (`SLIMD_TEST_CACHE` overrides).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SLIMD_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/slimd-test"))
}

/// Takes the cache lock; it is held until the returned file is dropped.
fn lock_cache() -> anyhow::Result<File> {
    let dir = cache_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = File::create(dir.join(".lock")).context("creating the cache lock")?;
    file.lock().context("locking the test image cache")?;
    Ok(file)
}

fn recipe_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("{:x}", h.finalize())[..16].to_owned()
}

/// The recipe label of an existing image, or None when the image is not there.
fn image_recipe(tag: &str) -> Option<String> {
    let format = format!("{{{{index .Config.Labels \"{RECIPE_LABEL}\"}}}}");
    output(Command::new("docker").args(["image", "inspect", "--format", &format, tag]))
        .ok()
        .map(|s| s.trim().to_owned())
}

impl Rootfs {
    fn recipe(&self) -> String {
        let mut parts = vec![SUITE, "minbase"];
        parts.extend(self.packages);
        recipe_hash(&parts)
    }

    /// Makes sure the image exists in the engine and returns its tag.
    pub fn ensure(&self) -> anyhow::Result<&'static str> {
        let recipe = self.recipe();
        if image_recipe(self.tag).as_deref() == Some(recipe.as_str()) {
            return Ok(self.tag);
        }
        let _lock = lock_cache()?;
        if image_recipe(self.tag).as_deref() == Some(recipe.as_str()) {
            return Ok(self.tag);
        }
        let tarball = cache_dir().join(format!("rootfs-{recipe}.tar"));
        if !tarball.exists() {
            debootstrap(self.packages, &tarball)?;
        }
        import(&tarball, self.tag, &recipe, &[r#"CMD ["/bin/bash"]"#])?;
        Ok(self.tag)
    }
}

fn debootstrap(packages: &[&str], tarball: &Path) -> anyhow::Result<()> {
    let cache = cache_dir();
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)?;
    let work = cache.join(format!("work-{}", std::process::id()));
    let rootfs = work.join("rootfs");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let include = format!("--include={}", packages.join(","));
    eprintln!(
        "making a {SUITE} rootfs with {} (about a minute)",
        packages.join(", ")
    );
    output(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--cache-dir={}", debs.display()))
            .arg(include)
            .arg(SUITE)
            .arg(&rootfs)
            .arg(MIRROR),
    )
    .context("debootstrap (install it with `apt-get install debootstrap`)")?;
    // Files that only make sense on the machine that ran debootstrap.
    for host_file in ["etc/hostname", "etc/resolv.conf"] {
        let _ = fs::remove_file(rootfs.join(host_file));
    }
    let partial = tarball.with_extension("tar.partial");
    output(
        Command::new("tar")
            .args([
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=security.capability",
            ])
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
    )?;
    fs::rename(&partial, tarball)?;
    fs::remove_dir_all(&work)?;
    Ok(())
}

fn import(tarball: &Path, tag: &str, recipe: &str, changes: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("docker");
    cmd.arg("import");
    for change in changes {
        cmd.args(["--change", change]);
    }
    cmd.args(["--change", &format!("LABEL {RECIPE_LABEL}={recipe}")]);
    cmd.arg(tarball).arg(tag);
    output(&mut cmd).with_context(|| format!("importing {}", tarball.display()))?;
    Ok(())
}

/// An image whose root holds only Debian's busybox-static: `/bin/busybox` and one symlink per
/// applet.
pub fn busybox() -> anyhow::Result<&'static str> {
    const TAG: &str = "slimd-test/busybox:latest";
    let recipe = recipe_hash(&[SUITE, "busybox-static"]);
    if image_recipe(TAG).as_deref() == Some(recipe.as_str()) {
        return Ok(TAG);
    }
    let _lock = lock_cache()?;
    let tarball = cache_dir().join(format!("busybox-{recipe}.tar"));
    if !tarball.exists() {
        let work = cache_dir().join(format!("busybox-work-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        let root = work.join("root");
        fs::create_dir_all(root.join("bin"))?;
        output(
            Command::new("apt-get")
                .current_dir(&work)
                .args(["download", "busybox-static"]),
        )
        .context("apt-get download busybox-static")?;
        let deb = fs::read_dir(&work)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .context("apt-get download left no .deb")?;
        let unpacked = work.join("unpacked");
        output(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
        fs::copy(unpacked.join("bin/busybox"), root.join("bin/busybox"))?;
        let applets = output(Command::new(root.join("bin/busybox")).arg("--list"))?;
        for applet in applets.lines().filter(|a| *a != "busybox" && !a.is_empty()) {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        for dir in ["etc", "tmp", "proc", "sys", "dev", "root"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let partial = tarball.with_extension("tar.partial");
        output(
            Command::new("tar")
                .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
                .arg(&root)
                .arg("-cf")
                .arg(&partial)
                .arg("."),
        )?;
        fs::rename(&partial, &tarball)?;
        fs::remove_dir_all(&work)?;
    }
    import(
        &tarball,
        TAG,
        &recipe,
        &[r#"ENV PATH=/bin"#, r#"CMD ["/bin/sh"]"#],
    )?;
    Ok(TAG)
}

/// Builds `tag` from a Dockerfile (and optional context files) unless an image with the same
/// recipe exists. The Dockerfile's `FROM` must name an image that already exists.
pub fn derived(tag: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> anyhow::Result<String> {
    let mut parts = vec![dockerfile];
    let contents: Vec<String> = files
        .iter()
        .map(|(name, data)| format!("{name}:{:x}", Sha256::digest(data)))
        .collect();
    parts.extend(contents.iter().map(String::as_str));
    let base = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM "))
        .context("the Dockerfile has no FROM line")?
        .trim();
    let base_id =
        output(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", base]))?;
    parts.push(base_id.trim());
    let recipe = recipe_hash(&parts);
    if image_recipe(tag).as_deref() == Some(recipe.as_str()) {
        return Ok(tag.to_owned());
    }
    let dir = std::env::temp_dir().join(format!("slimd-derived-{}-{}", std::process::id(), recipe));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::write(
        dir.join("Dockerfile"),
        format!("{dockerfile}\nLABEL {RECIPE_LABEL}={recipe}\n"),
    )?;
    for (name, data) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, data)?;
    }
    let result = output(
        Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "--quiet", "--network", "none", "-t", tag])
            .arg(&dir),
    );
    let _ = fs::remove_dir_all(&dir);
    result.with_context(|| format!("building test image {tag}"))?;
    Ok(tag.to_owned())
}

/// nginx from the apps image as a service: `EXPOSE 80`, `nginx -g 'daemon off;'`.
pub fn nginx() -> anyhow::Result<String> {
    let base = APPS.ensure()?;
    derived(
        "slimd-test/nginx:bookworm",
        &format!("FROM {base}\nEXPOSE 80\nCMD [\"nginx\", \"-g\", \"daemon off;\"]"),
        &[],
    )
}

/// redis-server from the apps image as a service on port 6379.
pub fn redis() -> anyhow::Result<String> {
    let base = APPS.ensure()?;
    derived(
        "slimd-test/redis:bookworm",
        &format!(
            "FROM {base}\nEXPOSE 6379\nCMD [\"redis-server\", \"--protected-mode\", \"no\", \"--save\", \"\"]"
        ),
        &[],
    )
}
