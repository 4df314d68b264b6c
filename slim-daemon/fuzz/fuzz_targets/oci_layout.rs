//! OCI layouts: the input is a sequence of parts, each a 4-byte little-endian length and
//! that many bytes: index.json first, then blobs (stored under their digests). The layout is
//! read as an image, layers and all.
#![no_main]
use std::fs;

use libfuzzer_sys::fuzz_target;
use slimd::image::{config::digest, source::ImageSpec};

fn parts(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let part = data.get(4..4 + len.min(data.len() - 4))?;
        data = &data[4 + part.len()..];
        Some(part)
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let blobs = dir.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("the blob directory");
    let mut parts = parts(data);
    fs::write(
        dir.path().join("index.json"),
        parts.next().unwrap_or_default(),
    )
    .expect("index.json");
    for part in parts.take(8) {
        fs::write(blobs.join(&digest(part)[7..]), part).expect("a blob");
    }
    let spec = ImageSpec::OciDir {
        dir: dir.path().to_path_buf(),
        reference: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let _ = runtime.block_on(slimd::image::source::open(&spec, None, Default::default()));
});
