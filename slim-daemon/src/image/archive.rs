//! The docker-archive format: what `docker save` writes (classic layout, or the OCI layout of
//! Engine 25+, which also carries `manifest.json`) and `docker load` reads.
//!
//! Reading extracts nothing: members are located by byte range and layers are read in place.
use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Write},
    os::unix::fs::FileExt,
    path::Path,
};

use serde::Deserialize;
use serde_json::json;

use super::{
    ImageError,
    config::{digest, hex_of},
};

/// Members larger than this are not JSON documents we read into memory.
const MAX_JSON: u64 = 16 << 20;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One image found in an archive.
#[derive(Debug)]
pub struct ArchiveImage {
    /// The image config exactly as stored; its SHA-256 is the image id.
    pub config: Vec<u8>,
    /// Byte ranges (start, length) of the layer tars, bottom layer first.
    pub layers: Vec<(u64, u64)>,
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

/// Finds the image in the archive at `path`.
pub fn read(path: &Path) -> Result<ArchiveImage, ImageError> {
    let bad = |msg: String| ImageError::Archive(path.to_path_buf(), msg);
    let file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let members = index_members(&file).map_err(|e| bad(e.to_string()))?;
    let member = |name: &str| -> Result<(u64, u64), ImageError> {
        members
            .get(name.trim_start_matches("./"))
            .copied()
            .ok_or_else(|| bad(format!("it lists {name} but does not contain it")))
    };
    let manifest_range = member("manifest.json").map_err(|_| {
        bad("it has no manifest.json (not a docker-archive or docker save stream)".into())
    })?;
    let manifest: Vec<ManifestEntry> = serde_json::from_slice(
        &read_range(&file, manifest_range, MAX_JSON).map_err(|e| bad(e.to_string()))?,
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
    let config =
        read_range(&file, member(&entry.config)?, MAX_JSON).map_err(|e| bad(e.to_string()))?;
    let mut layers = Vec::with_capacity(entry.layers.len());
    for layer in &entry.layers {
        let range = member(layer)?;
        let mut magic = [0u8; 2];
        if range.1 >= 2 {
            file.read_exact_at(&mut magic, range.0)
                .map_err(|e| bad(e.to_string()))?;
        }
        if magic == GZIP_MAGIC {
            return Err(ImageError::Unsupported(format!(
                "compressed layer {layer} in {}",
                path.display()
            )));
        }
        layers.push(range);
    }
    Ok(ArchiveImage {
        config,
        layers,
        repo_tags: entry.repo_tags.clone().unwrap_or_default(),
    })
}

/// Member name → (data offset, size) of every regular file in the outer tar.
fn index_members(file: &File) -> io::Result<HashMap<String, (u64, u64)>> {
    let mut archive = tar::Archive::new(file);
    let mut members = HashMap::new();
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.header().entry_type().is_file() {
            let name = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
    }
    Ok(members)
}

fn read_range(file: &File, (start, len): (u64, u64), max: u64) -> io::Result<Vec<u8>> {
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "JSON member too large",
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    BlobReader::new(file, start, len).read_to_end(&mut buf)?;
    Ok(buf)
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
            end: start + len,
        }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
/// image with one layer.
pub fn write(
    out: impl Write,
    config: &[u8],
    layer: &Path,
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
    let mut file = File::open(layer)?;
    let len = file.metadata()?.len();
    let mut header = file_header(len);
    tar.append_data(&mut header, &layer_name, &mut file)?;
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
