//! ld.so.conf: the input is split at NUL bytes into /etc/ld.so.conf and the files of
//! /etc/ld.so.conf.d/ it may include, and the library search path is worked out.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use slimd::{build::libs::LibraryFinder, image::ImageFiles, resolve::walk::Walker};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, content: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, content)
            .expect("tar in memory");
    };
    add("etc/ld.so.conf", parts.next().unwrap_or_default());
    for (i, part) in parts.take(16).enumerate() {
        add(&format!("etc/ld.so.conf.d/{i}.conf"), part);
    }
    let bytes = tar.into_inner().expect("tar in memory");
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(&bytes).expect("writing the image");
    let files = ImageFiles::from_tar_files(vec![file]).expect("a well-formed tar reads");
    let mounts = Default::default();
    let walker = Walker::new(&files.tree, &mounts);
    let finder = LibraryFinder::new(&files, &walker, Some("/a:/b"));
    assert!(finder.system_dirs().len() <= 4096 + 8);
});
