//! Access reports: parsed, merged with themselves, written back out and parsed again, and
//! made into seccomp profiles (which only ever name syscalls of the tables).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use slimd::{
    report::AccessReport,
    seccomp::{self, Abi, ProfileOptions},
};

fuzz_target!(|data: &[u8]| {
    let Ok(report) = AccessReport::from_slice(data, Path::new("fuzz")) else {
        return;
    };
    let merged = AccessReport::merge(vec![("a".into(), report.clone()), ("b".into(), report)])
        .expect("a report merges with itself");
    let text = serde_json::to_vec(&merged).expect("reports serialise");
    let again =
        AccessReport::from_slice(&text, Path::new("again")).expect("what slimd writes, it reads");
    assert_eq!(again.paths.len(), merged.paths.len());
    assert_eq!(again.syscalls, merged.syscalls);
    if let Ok(profile) =
        seccomp::profile_of_report("fuzz", &merged, ProfileOptions::default(), true)
    {
        for name in profile["syscalls"][0]["names"].as_array().expect("an allow rule") {
            let name = name.as_str().expect("names are strings");
            assert!(Abi::X86_64.knows(name) || Abi::X86.knows(name), "{name}");
        }
    }
});
