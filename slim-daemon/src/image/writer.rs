//! Writing the slim image's one layer: a reproducible tar of the kept paths.
//!
//! Entries come in the tree's order (a directory before its contents), with numeric owners,
//! every mode bit, `security.capability`, hard links as links and no sparse entries. Names
//! and link targets that do not fit ustar, owners beyond its range and xattrs go into PAX
//! records. Nothing depends on the machine or the time of the build, so the same inputs give
//! the same bytes.
use std::{
    collections::{BTreeMap, HashMap},
    ffi::OsStr,
    io::{self, Read, Write},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use tar::{EntryType, Header};

use super::{
    ImageError, ImageFiles,
    hashing::HashingWriter,
    tree::{Data, Kind, Node},
};

/// How much of a path is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The path with its content.
    Whole,
    /// A regular file kept only so that its directory lists the same names: no content.
    Placeholder,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LayerOptions {
    /// Clamp every mtime to this (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct LayerSummary {
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    pub tar_bytes: u64,
    pub entries: usize,
    /// Bytes of file content in the layer.
    pub file_bytes: u64,
}

const USTAR_NAME: usize = 100;
const USTAR_PREFIX: usize = 155;
const USTAR_MAX_ID: u64 = 0o7_777_777;
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Writes the layer tar of the kept paths of `files` to `out`.
pub fn write_layer(
    files: &ImageFiles,
    keep: &BTreeMap<PathBuf, Keep>,
    options: LayerOptions,
    out: impl Write,
) -> Result<LayerSummary, ImageError> {
    let mut out = HashingWriter::new(out);
    let holders = hardlink_holders(files, keep);
    let mut summary = LayerSummary {
        diff_id: String::new(),
        tar_bytes: 0,
        entries: 0,
        file_bytes: 0,
    };
    for (path, how) in keep {
        crate::interrupt::check()?;
        if path == Path::new("/") {
            continue;
        }
        let Some(node) = files.tree.get(path) else {
            continue;
        };
        let io_err =
            |e: io::Error| ImageError::io(format!("writing {} into the layer", path.display()), e);
        let entry = Entry::new(path, node, *how, &holders);
        let content_len = entry.write(&mut out, files, options).map_err(io_err)?;
        summary.entries += 1;
        summary.file_bytes += content_len;
    }
    // Two zero blocks end a tar archive.
    out.write_all(&[0u8; 1024])
        .map_err(|e| ImageError::io("finishing the layer", e))?;
    out.flush()
        .map_err(|e| ImageError::io("finishing the layer", e))?;
    summary.tar_bytes = out.written();
    summary.diff_id = out.finish().0;
    Ok(summary)
}

/// For every group of kept files that are one file of the image (hard links: the same data
/// of the same layer), the first in write order carries the bytes and the others become tar
/// hard links to it. Paths whose link partner is not kept are plain files.
fn hardlink_holders<'a>(
    files: &'a ImageFiles,
    keep: &'a BTreeMap<PathBuf, Keep>,
) -> HashMap<&'a Path, &'a Path> {
    let mut first_of: HashMap<&Data, &Path> = HashMap::new();
    let mut holders = HashMap::new();
    for (path, how) in keep {
        if *how != Keep::Whole {
            continue;
        }
        let Some(node) = files.tree.get(path) else {
            continue;
        };
        if !node.has_data() || node.data == Data::None {
            continue;
        }
        let first = *first_of.entry(&node.data).or_insert(path);
        if first != path.as_path() {
            holders.insert(path.as_path(), first);
        }
    }
    holders
}

/// One tar entry to write.
struct Entry<'a> {
    path: &'a Path,
    node: &'a Node,
    kind: EntryKind<'a>,
}

enum EntryKind<'a> {
    /// A regular file with `len` bytes of content (0 for a placeholder).
    File {
        len: u64,
    },
    /// A tar hard link to a path written earlier.
    Link(&'a Path),
    Other,
}

impl<'a> Entry<'a> {
    fn new(path: &'a Path, node: &'a Node, how: Keep, holders: &HashMap<&Path, &'a Path>) -> Self {
        let kind = if node.has_data() {
            match holders.get(path) {
                Some(holder) => EntryKind::Link(holder),
                None if how == Keep::Placeholder => EntryKind::File { len: 0 },
                None => EntryKind::File { len: node.size },
            }
        } else {
            EntryKind::Other
        };
        Entry { path, node, kind }
    }

    fn write(
        &self,
        out: &mut impl Write,
        files: &ImageFiles,
        options: LayerOptions,
    ) -> io::Result<u64> {
        let node = self.node;
        let mut header = Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut name = rel_bytes(self.path);
        if node.is_dir() {
            name.push(b'/');
        }
        set_name(&mut header, &name, &mut pax);
        header.set_mode(node.mode);
        set_id(node.uid, "uid", &mut pax, |v| header.set_uid(v));
        set_id(node.gid, "gid", &mut pax, |v| header.set_gid(v));
        let mtime = match options.source_date_epoch {
            Some(epoch) => node.mtime.min(epoch),
            None => node.mtime,
        }
        .max(0);
        header.set_mtime(mtime as u64);
        header.set_size(0);
        let mut content_len = 0;
        match (&self.kind, &node.kind) {
            (EntryKind::File { len }, _) => {
                header.set_entry_type(EntryType::Regular);
                header.set_size(*len);
                content_len = *len;
            }
            (EntryKind::Link(holder), _) => {
                header.set_entry_type(EntryType::Link);
                set_link(&mut header, &rel_bytes(holder), &mut pax);
            }
            (EntryKind::Other, Kind::Dir) => header.set_entry_type(EntryType::Directory),
            (EntryKind::Other, Kind::Symlink(target)) => {
                header.set_entry_type(EntryType::Symlink);
                set_link(&mut header, target.as_os_str().as_bytes(), &mut pax);
            }
            (
                EntryKind::Other,
                Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor },
            ) => {
                let char_dev = matches!(node.kind, Kind::CharDevice { .. });
                header.set_entry_type(if char_dev {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                header.set_device_major(*major)?;
                header.set_device_minor(*minor)?;
            }
            (EntryKind::Other, Kind::Fifo) => header.set_entry_type(EntryType::Fifo),
            (EntryKind::Other, Kind::File) => unreachable!("files carry data"),
        }
        if !matches!(self.kind, EntryKind::Link(_)) {
            for (key, value) in &node.xattrs {
                pax.push((format!("{PAX_XATTR_PREFIX}{key}"), value.clone()));
            }
        }
        if !pax.is_empty() {
            write_pax(out, &name, &pax)?;
        }
        header.set_cksum();
        out.write_all(header.as_bytes())?;
        if content_len > 0 {
            let mut src = files.open(node)?.take(content_len);
            let copied = io::copy(&mut src, out)?;
            if copied != content_len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("expected {content_len} bytes, found {copied}"),
                ));
            }
            pad(out, content_len)?;
        }
        Ok(content_len)
    }
}

fn rel_bytes(path: &Path) -> Vec<u8> {
    path.strip_prefix("/")
        .unwrap_or(path)
        .as_os_str()
        .as_bytes()
        .to_vec()
}

/// Puts `name` into the ustar name (and prefix) fields, or into a PAX `path` record when it
/// does not fit or is not UTF-8.
fn set_name(header: &mut Header, name: &[u8], pax: &mut Vec<(String, Vec<u8>)>) {
    let ustar = header.as_ustar_mut().expect("a ustar header");
    if name.len() <= USTAR_NAME {
        ustar.name[..name.len()].copy_from_slice(name);
    } else if let Some(split) = ustar_split(name) {
        let (prefix, rest) = (&name[..split], &name[split + 1..]);
        ustar.prefix[..prefix.len()].copy_from_slice(prefix);
        ustar.name[..rest.len()].copy_from_slice(rest);
    } else {
        let cut = &name[..USTAR_NAME];
        ustar.name.copy_from_slice(cut);
        pax.push(("path".into(), name.to_vec()));
        return;
    }
    if std::str::from_utf8(name).is_err() {
        pax.push(("path".into(), name.to_vec()));
    }
}

/// Where to split a long name into ustar prefix and name, if anywhere.
fn ustar_split(name: &[u8]) -> Option<usize> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    (0..trimmed.len())
        .rev()
        .filter(|&i| trimmed[i] == b'/')
        .find(|&i| i <= USTAR_PREFIX && name.len() - i - 1 <= USTAR_NAME && i > 0)
}

fn set_link(header: &mut Header, target: &[u8], pax: &mut Vec<(String, Vec<u8>)>) {
    let ustar = header.as_ustar_mut().expect("a ustar header");
    let n = target.len().min(USTAR_NAME);
    ustar.linkname[..n].copy_from_slice(&target[..n]);
    if target.len() > USTAR_NAME || std::str::from_utf8(target).is_err() {
        pax.push(("linkpath".into(), target.to_vec()));
    }
}

fn set_id(id: u64, key: &str, pax: &mut Vec<(String, Vec<u8>)>, set: impl FnOnce(u64)) {
    if id > USTAR_MAX_ID {
        set(0);
        pax.push((key.to_owned(), id.to_string().into_bytes()));
    } else {
        set(id);
    }
}

/// A PAX extended header for the entry that follows.
fn write_pax(out: &mut impl Write, name: &[u8], records: &[(String, Vec<u8>)]) -> io::Result<()> {
    let mut body = Vec::new();
    for (key, value) in records {
        // "<len> <key>=<value>\n", where <len> counts itself.
        let rest = key.len() + value.len() + 3;
        let mut len = rest + rest.to_string().len();
        if len.to_string().len() != rest.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} {key}=").as_bytes());
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    let mut header = Header::new_ustar();
    let base = Path::new(OsStr::from_bytes(name))
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let mut pax_name = b"PaxHeaders/".to_vec();
    pax_name.extend_from_slice(&base[..base.len().min(USTAR_NAME - pax_name.len())]);
    let ustar = header.as_ustar_mut().expect("a ustar header");
    ustar.name[..pax_name.len()].copy_from_slice(&pax_name);
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(body.len() as u64);
    header.set_mtime(0);
    header.set_cksum();
    out.write_all(header.as_bytes())?;
    out.write_all(&body)?;
    pad(out, body.len() as u64)
}

fn pad(out: &mut impl Write, len: u64) -> io::Result<()> {
    let rem = (512 - len % 512) % 512;
    out.write_all(&[0u8; 512][..rem as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        write_pax(&mut out, b"a", &[("path".into(), vec![b'x'; 5])]).unwrap();
        let body = &out[512..];
        let text = std::str::from_utf8(&body[..body.iter().position(|&b| b == b'\n').unwrap() + 1])
            .unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), text.len());
    }

    #[test]
    fn long_names_split_at_a_slash_or_go_to_pax() {
        let mid = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert_eq!(ustar_split(mid.as_bytes()), Some(120));
        let huge = format!("{}/{}", "d".repeat(200), "f".repeat(90));
        assert_eq!(ustar_split(huge.as_bytes()), None);
        let mut header = Header::new_ustar();
        let mut pax = Vec::new();
        set_name(&mut header, huge.as_bytes(), &mut pax);
        assert_eq!(pax, vec![("path".to_string(), huge.into_bytes())]);
    }
}
