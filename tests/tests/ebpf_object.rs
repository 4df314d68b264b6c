//! The committed eBPF object must be built from the eBPF sources in the tree.

#[test]
fn committed_ebpf_object_matches_its_sources() {
    if let Err(e) = xtask::ebpf::check(&xtask::workspace_root()) {
        panic!("{e:#}");
    }
}
