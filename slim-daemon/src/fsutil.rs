//! File writing that never leaves a half-written file behind.
use std::{
    fs,
    io::{self, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
};

/// Writes `data` to a temporary file next to `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(data)?;
    persist(tmp, path)
}

/// A temporary file in the directory of `path`, removed unless persisted.
pub fn temp_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new().prefix(".slimd-").tempfile_in(dir)
}

/// Syncs a temporary file and renames it to `path`, readable by everyone like a normal file.
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> io::Result<()> {
    tmp.as_file().sync_all()?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
