//! The docker-archive format: what `docker save` writes (classic layout, or the OCI layout of
//! Engine 25+, which also carries `manifest.json`) and `docker load` reads.
//!
//! Reading extracts nothing: members are located by byte range, hashed as they are passed,
//! and layers are read in place.
use std::{
    collections::HashMap,
    fs::File,
    io::{self, BufReader, Read, Write},
    os::unix::fs::FileExt,
    path::Path,
};

use serde::Deserialize;
use serde_json::json;

use super::{
    ImageError,
    config::{digest, hex_of},
    hashing::HashingReader,
    tar_read::{EntryKind, TarReader},
};
use crate::fsutil;

/// Members larger than this are not JSON documents we read into memory.
const MAX_JSON: u64 = 16 << 20;
/// Members an archive may hold (an image of a hundred layers has a few hundred).
const MAX_MEMBERS: usize = 100_000;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A member of the archive: where its bytes are and what they hash to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub start: u64,
    pub len: u64,
    /// `sha256:<hex>` of its bytes.
    pub digest: String,
}

/// One image found in an archive.
#[derive(Debug)]
pub struct ArchiveImage {
    /// The image config exactly as stored; its SHA-256 is the image id.
    pub config: Vec<u8>,
    /// The layer tars, bottom layer first.
    pub layers: Vec<Member>,
    pub repo_tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Finds the image in the archive `file`; `label` names it in errors.
pub fn read(file: &File, label: &Path) -> Result<ArchiveImage, ImageError> {
    let bad = |msg: String| ImageError::Archive(label.to_path_buf(), msg);
    let members = index_members(file).map_err(|e| bad(e.to_string()))?;
    let member = |name: &str| -> Result<&Member, ImageError> {
        members
            .get(name.trim_start_matches("./"))
            .ok_or_else(|| bad(format!("it lists {name} but does not contain it")))
    };
    let manifest_member = member("manifest.json").map_err(|_| {
        bad("it has no manifest.json (not a docker-archive or docker save stream)".into())
    })?;
    let manifest: Vec<ManifestEntry> = serde_json::from_slice(
        &read_member(file, manifest_member, "manifest.json").map_err(|e| bad(e.to_string()))?,
    )
    .map_err(|e| bad(format!("manifest.json is not valid: {e}")))?;
    let entry = match manifest.as_slice() {
        [one] => one,
        [] => return Err(bad("manifest.json lists no image".into())),
        _ => {
            return Err(bad(format!(
                "it holds {} images; slimd reads archives of one image",
                manifest.len()
            )));
        }
    };
    let config = read_member(file, member(&entry.config)?, "the image config")
        .map_err(|e| bad(e.to_string()))?;
    let mut layers = Vec::with_capacity(entry.layers.len());
    for layer in &entry.layers {
        let m = member(layer)?;
        let mut magic = [0u8; 2];
        if m.len >= 2 {
            file.read_exact_at(&mut magic, m.start)
                .map_err(|e| bad(e.to_string()))?;
        }
        if magic == GZIP_MAGIC {
            return Err(ImageError::Unsupported(format!(
                "compressed layer {layer} in {}",
                label.display()
            )));
        }
        layers.push(m.clone());
    }
    Ok(ArchiveImage {
        config,
        layers,
        repo_tags: entry.repo_tags.clone().unwrap_or_default(),
    })
}

/// Member name → where it is and its digest, for every regular file in the outer tar.
fn index_members(file: &File) -> io::Result<HashMap<String, Member>> {
    let len = file.metadata()?.len();
    let mut tar = TarReader::new(
        BufReader::with_capacity(1 << 20, BlobReader::new(file, 0, len)),
        |_| false,
    );
    let mut members = HashMap::new();
    while let Some(header) = tar.next_entry()? {
        if header.kind != EntryKind::File {
            continue;
        }
        if members.len() >= MAX_MEMBERS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it holds more than {MAX_MEMBERS} files"),
            ));
        }
        let name = String::from_utf8_lossy(&header.path)
            .trim_start_matches("./")
            .to_owned();
        let (digest, _) = HashingReader::new(tar.data(), u64::MAX, "a member").finish()?;
        members.insert(
            name,
            Member {
                start: header.data_offset,
                len: header.size,
                digest,
            },
        );
    }
    Ok(members)
}

fn read_member(file: &File, m: &Member, what: &str) -> io::Result<Vec<u8>> {
    fsutil::read_bounded(BlobReader::new(file, m.start, m.len), MAX_JSON, what)
}

/// Reads `len` bytes of `file` from `start`, with positioned reads (the file is shared).
pub struct BlobReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> BlobReader<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Self {
        BlobReader {
            file,
            pos: start,
            end: start.saturating_add(len),
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Every blob read passes here: a signal ends the longest copy or hash promptly.
        crate::interrupt::check_io()?;
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends early",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes a docker-archive (what `docker save` writes and `docker load` reads) holding one
/// image with one layer, whose tar is all of `layer`.
pub fn write(
    out: impl Write,
    config: &[u8],
    layer: &File,
    diff_id: &str,
    repo_tags: &[String],
) -> io::Result<()> {
    let config_name = format!("{}.json", hex_of(&digest(config)));
    let layer_name = format!("{}/layer.tar", hex_of(diff_id));
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": [layer_name],
    }]))
    .expect("JSON values serialise");
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    append_bytes(&mut tar, &config_name, config)?;
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    dir.set_mtime(0);
    tar.append_data(&mut dir, format!("{}/", hex_of(diff_id)), io::empty())?;
    let len = layer.metadata()?.len();
    let mut header = file_header(len);
    tar.append_data(&mut header, &layer_name, BlobReader::new(layer, 0, len))?;
    append_bytes(&mut tar, "manifest.json", &manifest)?;
    tar.into_inner()?.flush()
}

fn file_header(len: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(len);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut header = file_header(data.len() as u64);
    tar.append_data(&mut header, name, data)
}
