//! Building the eBPF object and checking that the committed one matches its sources.
//!
//! `cargo build` of slimd needs only the stable toolchain: the compiled object is committed
//! under `slim-daemon/ebpf/` together with a stamp (a SHA-256 over the eBPF sources). This
//! module rebuilds it with nightly and bpf-linker and computes the stamp.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

/// Where the committed object lives, relative to the workspace root.
pub const OBJECT: &str = "slim-daemon/ebpf/slimd-ebpf.o";
/// The stamp of the sources the committed object was built from.
pub const STAMP: &str = "slim-daemon/ebpf/slimd-ebpf.o.stamp";
/// Crates whose sources make up the eBPF object.
const SOURCE_CRATES: [&str; 2] = ["slim-ebpf", "slim-common"];

/// SHA-256 over every source file of the eBPF object, in a fixed order.
pub fn source_stamp(root: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    for krate in SOURCE_CRATES {
        files.push(root.join(krate).join("Cargo.toml"));
        collect_files(&root.join(krate).join("src"), &mut files)?;
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in &files {
        let rel = file.strip_prefix(root).expect("collected under the root");
        let content = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// The stamp committed next to the object.
pub fn committed_stamp(root: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(root.join(STAMP)).context("reading the eBPF stamp")?;
    Ok(text.trim().to_owned())
}

/// Fails when the committed object was built from other sources than the ones checked out.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let want = source_stamp(root)?;
    let have = committed_stamp(root)?;
    ensure!(
        want == have,
        "{OBJECT} is stale: its stamp is {have} but the eBPF sources hash to {want}; \
         run `cargo xtask build-ebpf` and commit the result"
    );
    Ok(())
}

/// Builds the eBPF crate with nightly and bpf-linker, then installs the object and its stamp.
/// The sources are formatted first, so that a later `cargo fmt` cannot make the stamp stale.
pub fn build(root: &Path) -> anyhow::Result<()> {
    let fmt = Command::new("cargo")
        .current_dir(root)
        .args(["fmt", "--package", "slim-ebpf", "--package", "slim-common"])
        .status()
        .context("running cargo fmt")?;
    if !fmt.success() {
        bail!("cargo fmt failed ({fmt})");
    }
    let target_dir = root.join("target/ebpf");
    let status = Command::new("cargo")
        .current_dir(root)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env(
            "RUSTFLAGS",
            "--cfg bpf_target_arch=\"x86_64\" -C debuginfo=2 -C link-arg=--btf",
        )
        .args(["+nightly", "build", "--package", "slim-ebpf", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .context(
            "running cargo +nightly (needs the nightly toolchain with rust-src and bpf-linker)",
        )?;
    if !status.success() {
        bail!("building slim-ebpf failed ({status})");
    }
    let built = target_dir.join("bpfel-unknown-none/release/slimd-ebpf");
    fs::copy(&built, root.join(OBJECT))
        .with_context(|| format!("copying {} to {OBJECT}", built.display()))?;
    fs::write(root.join(STAMP), format!("{}\n", source_stamp(root)?))
        .context("writing the eBPF stamp")?;
    Ok(())
}
