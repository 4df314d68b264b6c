//! Developer and CI tasks, also used as a library by the end-to-end tests.
pub mod bench;
pub mod ebpf;
pub mod images;
pub mod setup;

use std::path::PathBuf;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}
