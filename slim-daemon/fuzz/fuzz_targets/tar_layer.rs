//! A layer tar: read into a tree, flattened, and written again as a slim layer of everything.
#![no_main]
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use slimd::image::{ImageFiles, writer};

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(data).expect("writing the input");
    let Ok(files) = ImageFiles::from_tar_files(vec![file]) else {
        return;
    };
    let keep = files
        .tree
        .iter()
        .map(|(p, _)| (p.clone(), writer::Keep::Whole))
        .collect();
    let summary = writer::write_layer(
        &files,
        &keep,
        writer::LayerOptions::default(),
        std::io::sink(),
    )
    .expect("a tree read from a layer writes");
    assert!(summary.entries <= files.tree.len());
});
