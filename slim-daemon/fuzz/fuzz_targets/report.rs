//! Access reports: parsed, merged with themselves, written back out and parsed again.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use slimd::report::AccessReport;

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
});
