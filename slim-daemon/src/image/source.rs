//! Where an original image is read from: the Docker engine, an OCI layout directory, or a
//! docker-archive file.
//!
//! From the engine, the fast path reads the image's overlay2 layer directories in place, with
//! the config from the engine's image store (checked against the image id), so the cost grows
//! with what is read, not with the image. Otherwise, and whenever anything about the fast path
//! does not check out, the image is read from the `docker save` stream.
use std::{
    fmt,
    fs::File,
    io::{self, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{
    ImageError, ImageFiles, archive,
    archive::BlobReader,
    config::digest,
    hashing::{HashingReader, TeeReader},
    oci, tar_layer,
    tree::LayerEntry,
};
use crate::{
    interrupt,
    runtime::{Docker, ImageInfo, RuntimeError},
};

/// Decompressed layer bytes one image may hold unless `SLIMD_MAX_IMAGE_BYTES` says otherwise:
/// a gzip bomb fills no disk.
const DEFAULT_MAX_IMAGE_BYTES: u64 = 64 << 30;

/// An image config larger than this is not read.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

fn max_image_bytes() -> u64 {
    std::env::var("SLIMD_MAX_IMAGE_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_IMAGE_BYTES)
}

/// How to read an image from the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Layer directories when available, else the save stream.
    #[default]
    Auto,
    /// Layer directories only.
    Layers,
    /// The `docker save` stream only.
    Save,
}

/// An image as the user names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSpec {
    /// A name, tag or id in the engine.
    Engine(String),
    /// `oci:DIR` or `oci:DIR:REF`.
    OciDir {
        dir: PathBuf,
        reference: Option<String>,
    },
    /// `docker-archive:FILE`.
    Archive(PathBuf),
}

impl ImageSpec {
    pub fn parse(text: &str) -> Self {
        if let Some(rest) = text.strip_prefix("oci:") {
            // A directory may hold colons, and a reference holds no slash: the whole is the
            // directory when there is one by that name.
            return match rest.rsplit_once(':') {
                Some((dir, reference))
                    if !reference.contains('/')
                        && !reference.is_empty()
                        && !Path::new(rest).is_dir() =>
                {
                    ImageSpec::OciDir {
                        dir: dir.into(),
                        reference: Some(reference.into()),
                    }
                }
                _ => ImageSpec::OciDir {
                    dir: rest.into(),
                    reference: None,
                },
            };
        }
        if let Some(file) = text.strip_prefix("docker-archive:") {
            return ImageSpec::Archive(file.into());
        }
        ImageSpec::Engine(text.to_owned())
    }

    pub fn is_engine(&self) -> bool {
        matches!(self, ImageSpec::Engine(_))
    }
}

impl fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSpec::Engine(r) => f.write_str(r),
            ImageSpec::OciDir {
                dir,
                reference: None,
            } => write!(f, "oci:{}", dir.display()),
            ImageSpec::OciDir {
                dir,
                reference: Some(r),
            } => write!(f, "oci:{}:{r}", dir.display()),
            ImageSpec::Archive(p) => write!(f, "docker-archive:{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("the layers of image {0} cannot be read in place: {1}")]
    NoLayerDirs(String, String),
}

/// An original image, read.
#[derive(Debug)]
pub struct SourceImage {
    /// `sha256:<hex>` of the config.
    pub id: String,
    /// A name for it (`app:1.0`), when the source has one.
    pub name: Option<String>,
    /// Its size: as the engine reports it, or the bytes of its files.
    pub size: u64,
    /// The image config exactly as stored.
    pub config: Vec<u8>,
    pub files: ImageFiles,
    /// How an engine image was read (`Auto` for the other sources).
    pub via: Via,
}

/// Reads an image; `docker` is needed for engine images only.
pub async fn open(
    spec: &ImageSpec,
    docker: Option<&Docker>,
    via: Via,
) -> Result<SourceImage, SourceError> {
    match spec {
        ImageSpec::Engine(reference) => {
            let docker = docker.expect("engine images are read with an engine connection");
            from_engine(docker, reference, via).await
        }
        ImageSpec::OciDir { dir, reference } => {
            Ok(interrupt::blocking(|| from_oci(dir, reference.as_deref()))?)
        }
        ImageSpec::Archive(path) => {
            let file = crate::fsutil::open_regular(path)
                .map_err(|e| ImageError::Archive(path.clone(), e.to_string()))?;
            Ok(interrupt::blocking(|| from_archive(file, path, None))?)
        }
    }
}

async fn from_engine(
    docker: &Docker,
    reference: &str,
    via: Via,
) -> Result<SourceImage, SourceError> {
    let info = docker.image(reference).await?;
    let name = info
        .repo_tags
        .first()
        .cloned()
        .or_else(|| Some(reference.to_owned()));
    if via != Via::Save {
        match in_place(docker, &info).await {
            Ok((config, files)) => {
                return Ok(SourceImage {
                    id: info.id,
                    name,
                    size: info.size,
                    config,
                    files,
                    via: Via::Layers,
                });
            }
            Err(reason) => {
                // Stopped by a signal, it does not fall back to anything.
                interrupt::check().map_err(ImageError::from)?;
                if via == Via::Layers {
                    return Err(SourceError::NoLayerDirs(reference.to_owned(), reason));
                }
                tracing::debug!("reading {reference} from the save stream: {reason}");
            }
        }
    }
    // An unnamed file: nothing is left behind, whatever happens to slimd.
    let stream =
        tempfile::tempfile().map_err(|e| ImageError::io("creating a temporary file", e))?;
    let writer = stream
        .try_clone()
        .map_err(|e| ImageError::io("creating a temporary file", e))?;
    docker.save_image(&info.id, writer).await?;
    let image = interrupt::blocking(|| {
        from_archive(stream, Path::new("the docker save stream"), Some(&info.id))
    })?;
    Ok(SourceImage {
        name,
        size: info.size,
        via: Via::Save,
        ..image
    })
}

fn bad_layer(label: &Path, position: usize, what: String) -> ImageError {
    ImageError::Archive(
        label.to_path_buf(),
        format!("layer {}: {what}", position + 1),
    )
}

/// The config's `rootfs.diff_ids`: what each layer's uncompressed tar must hash to.
fn diff_ids(config: &[u8], label: &Path, layers: usize) -> Result<Vec<String>, ImageError> {
    let bad = |msg: String| ImageError::Archive(label.to_path_buf(), msg);
    let value: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| bad(format!("the image config is not JSON: {e}")))?;
    let ids: Vec<String> = value
        .pointer("/rootfs/diff_ids")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("the image config lists no rootfs.diff_ids".into()))?
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("the image config's rootfs.diff_ids are not strings".into()))?;
    if ids.len() != layers {
        return Err(bad(format!(
            "the manifest lists {layers} layers, the config {}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// A docker-archive or save stream in `file` (named `label`); `expected_id` checks that it
/// holds that image. Every layer must hash to its diff id.
fn from_archive(
    file: File,
    label: &Path,
    expected_id: Option<&str>,
) -> Result<SourceImage, ImageError> {
    let saved = archive::read(&file, label)?;
    let id = digest(&saved.config);
    if let Some(expected) = expected_id
        && id != expected
    {
        return Err(ImageError::Archive(
            label.to_path_buf(),
            format!("its config digest {id} is not the image id {expected}"),
        ));
    }
    let diff_ids = diff_ids(&saved.config, label, saved.layers.len())?;
    let mut layers: Vec<Vec<LayerEntry>> = Vec::with_capacity(saved.layers.len());
    for (i, (member, diff_id)) in saved.layers.iter().zip(&diff_ids).enumerate() {
        if member.digest != *diff_id {
            return Err(bad_layer(
                label,
                i,
                format!(
                    "it hashes to {}, not to its diff id {diff_id}",
                    member.digest
                ),
            ));
        }
        let earlier = saved.layers[..i].iter().position(|m| m == member);
        let entries = match earlier {
            Some(j) => layers[j].clone(),
            None => {
                let stream = BufReader::with_capacity(
                    1 << 20,
                    BlobReader::new(&file, member.start, member.len),
                );
                tar_layer::read_layer(stream, 0, member.start, label)?
            }
        };
        layers.push(entries);
    }
    let files = ImageFiles::from_layers(vec![file], layers)?;
    Ok(SourceImage {
        id,
        name: saved.repo_tags.first().cloned(),
        size: files.tree.file_bytes(),
        config: saved.config,
        files,
        via: Via::Auto,
    })
}

fn from_oci(dir: &Path, reference: Option<&str>) -> Result<SourceImage, ImageError> {
    let image = oci::read(dir, reference)?;
    let diff_ids = diff_ids(&image.config, dir, image.layers.len())?;
    let mut budget = max_image_bytes();
    let mut files = Vec::with_capacity(image.blobs.len());
    let mut parsed: Vec<(Vec<LayerEntry>, String)> = Vec::with_capacity(image.blobs.len());
    for (index, blob) in image.blobs.into_iter().enumerate() {
        let position = image
            .layers
            .iter()
            .position(|&l| l == index)
            .expect("every blob is a layer");
        let bad = |what: String| bad_layer(dir, position, what);
        let (file, entries, diff_id, bytes) = read_oci_layer(blob, index as u32, budget, dir)
            .map_err(|e| match e {
                LayerReadError::Image(e) => e,
                LayerReadError::Digest(d, want) => {
                    bad(format!("the blob hashes to {d}, not to its digest {want}"))
                }
                LayerReadError::Io(e) => bad(e.to_string()),
            })?;
        budget = budget.saturating_sub(bytes);
        files.push(file);
        parsed.push((entries, diff_id));
    }
    let mut layers = Vec::with_capacity(image.layers.len());
    for (position, (&blob, want)) in image.layers.iter().zip(&diff_ids).enumerate() {
        let (entries, diff_id) = &parsed[blob];
        if diff_id != want {
            return Err(bad_layer(
                dir,
                position,
                format!("its tar hashes to {diff_id}, not to its diff id {want}"),
            ));
        }
        layers.push(entries.clone());
    }
    let files = ImageFiles::from_layers(files, layers)?;
    Ok(SourceImage {
        id: digest(&image.config),
        name: image.name,
        size: files.tree.file_bytes(),
        config: image.config,
        files,
        via: Via::Auto,
    })
}

enum LayerReadError {
    Image(ImageError),
    /// What the blob hashed to, and its digest.
    Digest(String, String),
    Io(io::Error),
}

impl From<io::Error> for LayerReadError {
    fn from(e: io::Error) -> Self {
        LayerReadError::Io(e)
    }
}

/// Reads one layer blob in one pass: hashed as it streams, decompressed (into an unnamed file,
/// at most `budget` bytes) when it is compressed, and its tar parsed. The file that holds the
/// tar, its entries, the tar's digest and its size.
fn read_oci_layer(
    blob: oci::LayerBlob,
    index: u32,
    budget: u64,
    label: &Path,
) -> Result<(File, Vec<LayerEntry>, String, u64), LayerReadError> {
    let len = blob.file.metadata()?.len();
    let compressed = HashingReader::new(
        BufReader::with_capacity(1 << 20, BlobReader::new(&blob.file, 0, len)),
        u64::MAX,
        "a layer blob",
    );
    let (blob_digest, tar_file, entries, diff_id, bytes) = match blob.compression {
        oci::Compression::None => {
            let mut stream = compressed;
            let entries = tar_layer::read_layer(&mut stream, index, 0, label)
                .map_err(LayerReadError::Image)?;
            let (d, _) = stream.finish()?;
            // An uncompressed blob is its own tar: no bytes of the budget.
            (d.clone(), None, entries, d, 0)
        }
        oci::Compression::Gzip => {
            let tar = tempfile::tempfile()?;
            let tee = TeeReader {
                inner: flate2::read::MultiGzDecoder::new(compressed),
                copy: BufWriter::with_capacity(1 << 20, tar.try_clone()?),
            };
            let mut stream = HashingReader::new(tee, budget, "the decompressed layers");
            let entries = tar_layer::read_layer(&mut stream, index, 0, label)
                .map_err(LayerReadError::Image)?;
            let bytes = stream.bytes_read();
            let (diff_id, tee) = stream.finish()?;
            let TeeReader { inner, mut copy } = tee;
            copy.flush()?;
            drop(copy);
            let (d, _) = inner.into_inner().finish()?;
            (d, Some(tar), entries, diff_id, bytes)
        }
    };
    if blob_digest != blob.digest {
        return Err(LayerReadError::Digest(blob_digest, blob.digest));
    }
    Ok((tar_file.unwrap_or(blob.file), entries, diff_id, bytes))
}

/// The image's layer directories and config, read in place.
async fn in_place(docker: &Docker, info: &ImageInfo) -> Result<(Vec<u8>, ImageFiles), String> {
    let dirs = overlay2_layer_dirs(info)?;
    let engine = docker.engine_info().await.map_err(|e| e.to_string())?;
    let config = config_from_store(
        Path::new(&engine.root_dir),
        &engine.storage_driver,
        &info.id,
    )?;
    let files =
        interrupt::blocking(|| ImageFiles::from_layer_dirs(&dirs)).map_err(|e| e.to_string())?;
    Ok((config, files))
}

/// The overlay2 layer directories of an image, bottom layer first.
pub fn overlay2_layer_dirs(info: &ImageInfo) -> Result<Vec<PathBuf>, String> {
    let (driver, data) = info
        .graph_driver
        .as_ref()
        .ok_or("the engine reports no storage driver data")?;
    if driver != "overlay2" {
        return Err(format!("storage driver {driver} is not overlay2"));
    }
    let mut dirs: Vec<PathBuf> = data
        .get("LowerDir")
        .map(|l| {
            l.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    dirs.reverse();
    dirs.push(PathBuf::from(data.get("UpperDir").ok_or("no UpperDir")?));
    if dirs.len() != info.layer_count {
        return Err(format!(
            "{} layer directories for {} layers",
            dirs.len(),
            info.layer_count
        ));
    }
    if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
        return Err(format!("{} is not a readable directory", missing.display()));
    }
    Ok(dirs)
}

/// The image config from the engine's image store, if it hashes to the image id.
fn config_from_store(root: &Path, driver: &str, id: &str) -> Result<Vec<u8>, String> {
    let hex = id
        .strip_prefix("sha256:")
        .ok_or("the image id is not a sha256 digest")?;
    let path = root
        .join("image")
        .join(driver)
        .join("imagedb/content/sha256")
        .join(hex);
    let config = crate::fsutil::open_regular(&path)
        .and_then(|f| crate::fsutil::read_bounded(f, MAX_CONFIG_BYTES, "the image config"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if format!("{:x}", Sha256::digest(&config)) != hex {
        return Err(format!("{} does not hash to the image id", path.display()));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_image_specs() {
        assert_eq!(
            ImageSpec::parse("app:1.0"),
            ImageSpec::Engine("app:1.0".into())
        );
        assert_eq!(
            ImageSpec::parse("oci:/tmp/layout"),
            ImageSpec::OciDir {
                dir: "/tmp/layout".into(),
                reference: None
            }
        );
        assert_eq!(
            ImageSpec::parse("oci:/tmp/layout:1.0-slim"),
            ImageSpec::OciDir {
                dir: "/tmp/layout".into(),
                reference: Some("1.0-slim".into())
            }
        );
        assert_eq!(
            ImageSpec::parse("docker-archive:/x/a.tar"),
            ImageSpec::Archive("/x/a.tar".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let with_colon = dir.path().join("layout:v2");
        std::fs::create_dir(&with_colon).unwrap();
        assert_eq!(
            ImageSpec::parse(&format!("oci:{}", with_colon.display())),
            ImageSpec::OciDir {
                dir: with_colon.clone(),
                reference: None
            }
        );
        assert_eq!(
            ImageSpec::parse(&format!("oci:{}:1.0", with_colon.display())),
            ImageSpec::OciDir {
                dir: with_colon,
                reference: Some("1.0".into())
            }
        );
    }
}
