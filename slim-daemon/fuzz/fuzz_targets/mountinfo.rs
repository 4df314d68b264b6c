//! mountinfo: parsed, and a container's layers and mounts taken from it.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use slimd::resolve::mountinfo::{ContainerMounts, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mounts = parse(text);
    let container = ContainerMounts::from_mounts(&mounts, Some(Path::new("/var/lib/docker")));
    assert!(container.others.len() <= mounts.len());
});
