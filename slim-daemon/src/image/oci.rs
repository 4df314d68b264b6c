//! The OCI image layout: reading an image from a layout directory, and writing one.
//!
//! A layout is hostile input: every file in it is opened relative to the layout's directory,
//! beneath it and through no symlink, must be a regular file, and is read with a bound. Each
//! blob is opened once and that one descriptor serves every later read.
use std::{
    fs::File,
    io::{self, Write},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    ImageError,
    archive::BlobReader,
    config::{digest, hex_of},
};
use crate::fsutil::{self, AtomicDir};

const LAYOUT_VERSION: &str = "1.0.0";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Index and manifest documents larger than this are refused.
const MAX_DOCUMENT: u64 = 4 << 20;

/// How a layer blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// A layer blob of a layout, opened.
#[derive(Debug)]
pub struct LayerBlob {
    pub file: File,
    /// `sha256:<hex>` the blob must hash to.
    pub digest: String,
    pub compression: Compression,
}

/// One image found in a layout.
#[derive(Debug)]
pub struct OciImage {
    /// The config exactly as stored; its digest is the image id.
    pub config: Vec<u8>,
    /// Layer blobs, bottom layer first; a blob listed twice is opened once (`index` into
    /// `blobs`).
    pub layers: Vec<usize>,
    pub blobs: Vec<LayerBlob>,
    /// The image's name from the index annotations, if any.
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The blob's path relative to the layout.
fn blob_path(digest: &str) -> Result<PathBuf, String> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or(format!("bad digest {digest}"))?;
    if algo != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("unsupported digest {digest}"));
    }
    Ok(Path::new("blobs").join(algo).join(hex))
}

fn open_in(dir: &OwnedFd, rel: &Path) -> Result<File, String> {
    fsutil::open_beneath(dir, rel).map_err(|e| format!("{}: {e}", rel.display()))
}

fn read_document(dir: &OwnedFd, rel: &Path) -> Result<Vec<u8>, String> {
    let file = open_in(dir, rel)?;
    fsutil::read_bounded(file, MAX_DOCUMENT, &rel.display().to_string()).map_err(|e| e.to_string())
}

/// A blob whose content must hash to its digest (index, manifests, config).
fn read_verified(dir: &OwnedFd, d: &Descriptor) -> Result<Vec<u8>, String> {
    let data = read_document(dir, &blob_path(&d.digest)?)?;
    if format!("sha256:{:x}", Sha256::digest(&data)) != d.digest {
        return Err(format!("blob {} does not match its digest", d.digest));
    }
    check_size(d, data.len() as u64)?;
    Ok(data)
}

fn check_size(d: &Descriptor, actual: u64) -> Result<(), String> {
    match d.size {
        Some(size) if size != actual => Err(format!(
            "blob {} has {actual} bytes, but its descriptor says {size}",
            d.digest
        )),
        _ => Ok(()),
    }
}

/// The image in the layout `dir`: the one named `reference` (its `ref.name` annotation), or
/// the only one.
pub fn read(dir: &Path, reference: Option<&str>) -> Result<OciImage, ImageError> {
    let bad = |msg: String| ImageError::Archive(dir.to_path_buf(), msg);
    let layout = fsutil::open_dir(dir).map_err(|e| bad(e.to_string()))?;
    let index: Index =
        serde_json::from_slice(&read_document(&layout, Path::new("index.json")).map_err(bad)?)
            .map_err(|e| bad(format!("index.json is not valid: {e}")))?;
    let named = |d: &&Descriptor| {
        reference.is_none_or(|r| {
            d.annotations.get(REF_NAME).map(String::as_str) == Some(r)
                || d.annotations.get(CONTAINERD_NAME).map(String::as_str) == Some(r)
        })
    };
    let candidates: Vec<&Descriptor> = index.manifests.iter().filter(named).collect();
    let mut descriptor = match candidates.as_slice() {
        [one] => *one,
        [] => {
            return Err(bad(format!(
                "it holds no image named {}",
                reference.unwrap_or("")
            )));
        }
        _ => {
            return Err(bad(format!(
                "it holds {} images; name one as oci:DIR:REF",
                candidates.len()
            )));
        }
    };
    let name = descriptor
        .annotations
        .get(CONTAINERD_NAME)
        .or_else(|| descriptor.annotations.get(REF_NAME))
        .cloned();
    // A multi-platform index: take this machine's platform.
    let nested;
    if descriptor.media_type == INDEX_MEDIA_TYPE || descriptor.media_type == DOCKER_MANIFEST_LIST {
        nested = serde_json::from_slice::<Index>(&read_verified(&layout, descriptor).map_err(bad)?)
            .map_err(|e| bad(format!("index {} is not valid: {e}", descriptor.digest)))?;
        descriptor = nested
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == go_arch())
            })
            .ok_or_else(|| bad(format!("no image for linux/{}", go_arch())))?;
    }
    let manifest: Manifest =
        serde_json::from_slice(&read_verified(&layout, descriptor).map_err(bad)?)
            .map_err(|e| bad(format!("manifest {} is not valid: {e}", descriptor.digest)))?;
    let config = read_verified(&layout, &manifest.config).map_err(bad)?;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    let mut blobs: Vec<LayerBlob> = Vec::new();
    for layer in &manifest.layers {
        let compression = match layer.media_type.as_str() {
            t if t.ends_with("tar") || t.ends_with(".tar") => Compression::None,
            t if t.ends_with("gzip") => Compression::Gzip,
            t => return Err(ImageError::Unsupported(format!("layers of media type {t}"))),
        };
        if let Some(i) = blobs.iter().position(|b| b.digest == layer.digest) {
            layers.push(i);
            continue;
        }
        let file = open_in(&layout, &blob_path(&layer.digest).map_err(bad)?).map_err(bad)?;
        let len = file.metadata().map_err(|e| bad(e.to_string()))?.len();
        check_size(layer, len).map_err(bad)?;
        blobs.push(LayerBlob {
            file,
            digest: layer.digest.clone(),
            compression,
        });
        layers.push(blobs.len() - 1);
    }
    Ok(OciImage {
        config,
        layers,
        blobs,
        name,
    })
}

/// The architecture as OCI (Go) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Stages an OCI layout holding one image with one uncompressed layer (all of `layer`)
/// beside `dir`; [`commit`] renames it into place. It is readable by its owner only: it holds
/// the original image's root-only files.
pub fn write(
    dir: &Path,
    config: &[u8],
    layer: &File,
    diff_id: &str,
    tag: &str,
) -> Result<AtomicDir, ImageError> {
    let io_err =
        |e: io::Error| ImageError::io(format!("writing the OCI layout {}", dir.display()), e);
    let mut out = AtomicDir::create(dir).map_err(io_err)?;
    out.mkdir(Path::new("blobs")).map_err(io_err)?;
    out.mkdir(Path::new("blobs/sha256")).map_err(io_err)?;
    let blob = |d: &str| Path::new("blobs/sha256").join(hex_of(d));
    let put = |out: &mut AtomicDir, data: &[u8]| -> io::Result<String> {
        let d = digest(data);
        let mut file = out.create_file(&blob(&d))?;
        file.write_all(data)?;
        file.sync_all()?;
        Ok(d)
    };
    let layer_size = layer.metadata().map_err(io_err)?.len();
    let mut layer_blob = out.create_file(&blob(diff_id)).map_err(io_err)?;
    io::copy(&mut BlobReader::new(layer, 0, layer_size), &mut layer_blob)
        .and_then(|_| layer_blob.sync_all())
        .map_err(io_err)?;
    let config_digest = put(&mut out, config).map_err(io_err)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": LAYER_MEDIA_TYPE, "digest": diff_id, "size": layer_size }],
    }))
    .expect("JSON values serialise");
    let manifest_digest = put(&mut out, &manifest).map_err(io_err)?;
    let short_tag = tag
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { REF_NAME: short_tag, CONTAINERD_NAME: tag },
        }],
    }))
    .expect("JSON values serialise");
    for (name, data) in [
        ("index.json", index),
        (
            "oci-layout",
            format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}").into_bytes(),
        ),
    ] {
        let mut file = out.create_file(Path::new(name)).map_err(io_err)?;
        file.write_all(&data)
            .and_then(|()| file.sync_all())
            .map_err(io_err)?;
    }
    Ok(out)
}

/// Puts a staged layout at `dir`, which must not exist.
pub fn commit(staged: AtomicDir, dir: &Path) -> Result<(), ImageError> {
    let io_err =
        |e: io::Error| ImageError::io(format!("writing the OCI layout {}", dir.display()), e);
    staged.commit().map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ImageError::io(
                format!("writing the OCI layout {}", dir.display()),
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "it already exists; name a new directory",
                ),
            )
        } else {
            io_err(e)
        }
    })
}
