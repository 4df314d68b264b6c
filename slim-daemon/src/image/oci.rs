//! The OCI image layout: reading an image from a layout directory, and writing one.
use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    ImageError,
    config::{digest, hex_of},
};

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

/// One image found in a layout.
#[derive(Debug)]
pub struct OciImage {
    /// The config exactly as stored; its digest is the image id.
    pub config: Vec<u8>,
    /// Layer blobs, bottom layer first.
    pub layers: Vec<(PathBuf, Compression)>,
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

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, String> {
    let (algo, hex) = digest
        .split_once(':')
        .ok_or(format!("bad digest {digest}"))?;
    if algo != "sha256" || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("unsupported digest {digest}"));
    }
    Ok(dir.join("blobs").join(algo).join(hex))
}

fn read_document(path: &Path) -> Result<Vec<u8>, String> {
    let len = fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > MAX_DOCUMENT {
        return Err(format!("{} is too large", path.display()));
    }
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A blob whose content must hash to its digest (index, manifests, config).
fn read_verified(dir: &Path, digest: &str) -> Result<Vec<u8>, String> {
    let data = read_document(&blob_path(dir, digest)?)?;
    if format!("sha256:{:x}", Sha256::digest(&data)) != digest {
        return Err(format!("blob {digest} does not match its digest"));
    }
    Ok(data)
}

/// The image in the layout `dir`: the one named `reference` (its `ref.name` annotation), or
/// the only one.
pub fn read(dir: &Path, reference: Option<&str>) -> Result<OciImage, ImageError> {
    let bad = |msg: String| ImageError::Archive(dir.to_path_buf(), msg);
    let index: Index =
        serde_json::from_slice(&read_document(&dir.join("index.json")).map_err(bad)?)
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
        nested =
            serde_json::from_slice::<Index>(&read_verified(dir, &descriptor.digest).map_err(bad)?)
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
        serde_json::from_slice(&read_verified(dir, &descriptor.digest).map_err(bad)?)
            .map_err(|e| bad(format!("manifest {} is not valid: {e}", descriptor.digest)))?;
    let config = read_verified(dir, &manifest.config.digest).map_err(bad)?;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for layer in &manifest.layers {
        let compression = match layer.media_type.as_str() {
            t if t.ends_with("tar") || t.ends_with(".tar") => Compression::None,
            t if t.ends_with("gzip") => Compression::Gzip,
            t => return Err(ImageError::Unsupported(format!("layers of media type {t}"))),
        };
        layers.push((blob_path(dir, &layer.digest).map_err(bad)?, compression));
    }
    Ok(OciImage {
        config,
        layers,
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

/// Writes an OCI layout holding one image with one uncompressed layer into `dir`, which must
/// not exist: it is written beside it and renamed into place.
pub fn write(
    dir: &Path,
    config: &[u8],
    layer: &Path,
    diff_id: &str,
    tag: &str,
) -> Result<(), ImageError> {
    let io_err =
        |e: io::Error| ImageError::io(format!("writing the OCI layout {}", dir.display()), e);
    if dir.exists() {
        return Err(ImageError::io(
            format!("writing the OCI layout {}", dir.display()),
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "it already exists; name a new directory",
            ),
        ));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".slimd-oci-")
        .tempdir_in(parent)
        .map_err(io_err)?;
    let blobs = staging.path().join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err)?;
    let put = |data: &[u8]| -> io::Result<String> {
        let d = digest(data);
        fs::write(blobs.join(hex_of(&d)), data)?;
        Ok(d)
    };
    fs::copy(layer, blobs.join(hex_of(diff_id))).map_err(io_err)?;
    let layer_size = fs::metadata(layer).map_err(io_err)?.len();
    let config_digest = put(config).map_err(io_err)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": LAYER_MEDIA_TYPE, "digest": diff_id, "size": layer_size }],
    }))
    .expect("JSON values serialise");
    let manifest_digest = put(&manifest).map_err(io_err)?;
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
    fs::write(staging.path().join("index.json"), index).map_err(io_err)?;
    let mut layout = fs::File::create(staging.path().join("oci-layout")).map_err(io_err)?;
    write!(layout, "{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}").map_err(io_err)?;
    let staged = staging.keep();
    fs::rename(&staged, dir).map_err(|e| {
        let _ = fs::remove_dir_all(&staged);
        io_err(e)
    })
}
