//! Reading one uncompressed layer tar into layer entries whose data stays in the file.
use std::{
    io::Read,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::{
    ImageError,
    tar_read::{EntryKind, TarReader},
    tree::{Data, Kind, LayerEntry, MAX_NODES, Node, normalize},
};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The one extended attribute that belongs in an image layer.
pub const CAPABILITY_XATTR: &str = "security.capability";

/// Lists the entries of the layer tar streamed by `stream`, reading it to its end. The
/// stream starts at byte `base` of the file the tree's data references call `blob`; `label`
/// names the layer in errors.
pub fn read_layer(
    stream: impl Read,
    blob: u32,
    base: u64,
    label: &Path,
) -> Result<Vec<LayerEntry>, ImageError> {
    let bad = |e: std::io::Error| ImageError::Layer(label.to_path_buf(), e.to_string());
    let mut tar = TarReader::new(stream, |name| name == CAPABILITY_XATTR);
    let mut out = Vec::new();
    while let Some(header) = tar.next_entry().map_err(bad)? {
        if out.len() >= MAX_NODES {
            return Err(ImageError::Layer(
                label.to_path_buf(),
                format!("it holds more than {MAX_NODES} entries"),
            ));
        }
        let raw = Path::new(std::ffi::OsStr::from_bytes(&header.path));
        let Some(path) = normalize(raw) else {
            tracing::warn!(path = %raw.display(), "layer entry escapes the root; skipped");
            continue;
        };
        if path == Path::new("/") {
            continue;
        }
        let name = path.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
        if name == OPAQUE_MARKER {
            out.push(LayerEntry::Opaque(parent_of(&path)));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                tracing::warn!(path = %path.display(), "whiteout of no name; skipped");
                continue;
            }
            out.push(LayerEntry::Whiteout(
                parent_of(&path).join(std::ffi::OsStr::from_bytes(hidden)),
            ));
            continue;
        }
        let target = || PathBuf::from(std::ffi::OsStr::from_bytes(&header.link));
        let kind = match header.kind {
            EntryKind::File => Kind::File,
            EntryKind::Dir => Kind::Dir,
            EntryKind::Symlink => Kind::Symlink(target()),
            EntryKind::Hardlink => {
                match normalize(&target()) {
                    Some(target) => out.push(LayerEntry::Link { path, target }),
                    None => {
                        tracing::warn!(path = %path.display(), "hard link escapes the root; skipped")
                    }
                }
                continue;
            }
            EntryKind::CharDevice => Kind::CharDevice {
                major: header.dev_major,
                minor: header.dev_minor,
            },
            EntryKind::BlockDevice => Kind::BlockDevice {
                major: header.dev_major,
                minor: header.dev_minor,
            },
            EntryKind::Fifo => Kind::Fifo,
            EntryKind::Sparse => {
                return Err(ImageError::Unsupported(format!(
                    "sparse file {} in layer {}",
                    path.display(),
                    label.display()
                )));
            }
            // Vendor extensions carry no file.
            EntryKind::Other(_) => continue,
        };
        let is_file = kind == Kind::File;
        out.push(LayerEntry::Add(
            path,
            Node {
                mode: header.mode,
                uid: header.uid,
                gid: header.gid,
                mtime: header.mtime,
                size: if is_file { header.size } else { 0 },
                xattrs: header.xattrs,
                data: if is_file {
                    Data::Blob {
                        blob,
                        offset: base + header.data_offset,
                    }
                } else {
                    Data::None
                },
                kind,
            },
        ));
    }
    tar.drain(u64::MAX).map_err(bad)?;
    Ok(out)
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_path_buf()
}
