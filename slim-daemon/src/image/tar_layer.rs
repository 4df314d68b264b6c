//! Reading one uncompressed layer tar into layer entries whose data stays in the file.
use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Take},
    path::{Path, PathBuf},
};

use tar::EntryType;

use super::tree::{Data, Kind, LayerEntry, Node, normalize};
use crate::image::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The one extended attribute that belongs in an image layer.
pub const CAPABILITY_XATTR: &str = "security.capability";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

type LayerReader = Take<File>;

/// Lists the entries of the layer tar that sits in the file `path` at byte range `range`
/// (a layer inside an image archive, or a whole file). Data references name the file as
/// `blob`, at offsets absolute within it.
pub fn read_layer(
    path: &Path,
    blob: u32,
    range: (u64, u64),
) -> Result<Vec<LayerEntry>, ImageError> {
    let bad = |e: io::Error| ImageError::Layer(path.to_path_buf(), e.to_string());
    let (start, len) = range;
    let mut file = File::open(path).map_err(bad)?;
    file.seek(SeekFrom::Start(start)).map_err(bad)?;
    let mut archive = tar::Archive::new(file.take(len));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw_path = entry.path().map_err(bad)?.into_owned();
        let Some(path_in_image) = normalize(&raw_path) else {
            tracing::warn!(path = %raw_path.display(), "layer entry escapes the root; skipped");
            continue;
        };
        if path_in_image == Path::new("/") {
            continue;
        }
        let name = path_in_image
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        if name == OPAQUE_MARKER {
            out.push(LayerEntry::Opaque(parent_of(&path_in_image)));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            out.push(LayerEntry::Whiteout(parent_of(&path_in_image).join(hidden)));
            continue;
        }
        let header = entry.header();
        let kind = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => Kind::File,
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink(link_target(&entry).map_err(bad)?),
            EntryType::Link => {
                let target = link_target(&entry).map_err(bad)?;
                match normalize(&target) {
                    Some(t) => Kind::Hardlink(t),
                    None => {
                        tracing::warn!(path = %raw_path.display(), "hard link escapes the root; skipped");
                        continue;
                    }
                }
            }
            EntryType::Char => Kind::CharDevice {
                major: header.device_major().ok().flatten().unwrap_or(0),
                minor: header.device_minor().ok().flatten().unwrap_or(0),
            },
            EntryType::Block => Kind::BlockDevice {
                major: header.device_major().ok().flatten().unwrap_or(0),
                minor: header.device_minor().ok().flatten().unwrap_or(0),
            },
            EntryType::Fifo => Kind::Fifo,
            EntryType::GNUSparse => {
                return Err(ImageError::Unsupported(format!(
                    "sparse file {} in layer {}",
                    raw_path.display(),
                    path.display()
                )));
            }
            // Global PAX headers and vendor extensions carry no file.
            _ => continue,
        };
        let mut node = Node {
            mode: header.mode().map_err(bad)? & 0o7777,
            uid: header.uid().map_err(bad)?,
            gid: header.gid().map_err(bad)?,
            mtime: header.mtime().map_err(bad)? as i64,
            size: 0,
            xattrs: Vec::new(),
            data: Data::None,
            kind,
        };
        apply_pax(&mut entry, &mut node).map_err(bad)?;
        if node.kind == Kind::File {
            node.size = entry.size();
            node.data = Data::Blob {
                blob,
                offset: start + entry.raw_file_position(),
            };
        }
        out.push(LayerEntry::Add(path_in_image, node));
    }
    Ok(out)
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new("/")).to_path_buf()
}

fn link_target(entry: &tar::Entry<'_, LayerReader>) -> io::Result<PathBuf> {
    entry
        .link_name()?
        .map(|p| p.into_owned())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "link without a target"))
}

/// PAX records that override the ustar fields, and the capability xattr.
fn apply_pax(entry: &mut tar::Entry<'_, LayerReader>, node: &mut Node) -> io::Result<()> {
    let Some(extensions) = entry.pax_extensions()? else {
        return Ok(());
    };
    for ext in extensions {
        let ext = ext?;
        let key = ext
            .key()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let value = ext.value_bytes();
        let number = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
        };
        match key {
            "uid" => node.uid = number().unwrap_or(node.uid as i64) as u64,
            "gid" => node.gid = number().unwrap_or(node.gid as i64) as u64,
            "mtime" => node.mtime = number().unwrap_or(node.mtime),
            _ => {
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX)
                    && name == CAPABILITY_XATTR
                {
                    node.xattrs.push((name.to_owned(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}
