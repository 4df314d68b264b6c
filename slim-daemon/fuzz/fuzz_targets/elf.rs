//! ELF parsing: the interpreter alone, and the whole dynamic-linking needs.
#![no_main]
use libfuzzer_sys::fuzz_target;
use slimd::image::elf;

fuzz_target!(|data: &[u8]| {
    let interp = elf::interpreter(data);
    let deps = elf::elf_deps(data);
    if let Some(deps) = deps {
        assert!(deps.needed.len() <= 1024);
        if deps.interpreter.is_some() {
            assert_eq!(interp, deps.interpreter);
        }
    }
    let _ = elf::shebang(data);
});
