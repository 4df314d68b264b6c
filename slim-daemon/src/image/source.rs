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
    io,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{ImageError, ImageFiles, archive, config::digest, oci};
use crate::runtime::{Docker, ImageInfo, RuntimeError};

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
            // A reference has no slash; a directory may well have a colon.
            return match rest.rsplit_once(':') {
                Some((dir, reference)) if !reference.contains('/') && !reference.is_empty() => {
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
    /// Files that live as long as the image: the save stream, decompressed layers.
    _temps: Vec<tempfile::TempPath>,
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
        ImageSpec::OciDir { dir, reference } => Ok(from_oci(dir, reference.as_deref())?),
        ImageSpec::Archive(path) => Ok(from_archive_file(path, None)?),
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
                    _temps: Vec::new(),
                });
            }
            Err(reason) if via == Via::Layers => {
                return Err(SourceError::NoLayerDirs(reference.to_owned(), reason));
            }
            Err(reason) => tracing::debug!("reading {reference} from the save stream: {reason}"),
        }
    }
    let stream = temp_file("slimd-save-", ".tar")?;
    docker.save_image(&info.id, &stream).await?;
    let mut image = from_archive_file(&stream, Some(&info.id))?;
    image._temps.push(stream);
    Ok(SourceImage {
        name,
        size: info.size,
        via: Via::Save,
        ..image
    })
}

fn temp_file(prefix: &str, suffix: &str) -> Result<tempfile::TempPath, ImageError> {
    Ok(tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile()
        .map_err(|e| ImageError::io("creating a temporary file", e))?
        .into_temp_path())
}

/// A docker-archive on disk; `expected_id` checks that it holds that image.
fn from_archive_file(path: &Path, expected_id: Option<&str>) -> Result<SourceImage, ImageError> {
    let saved = archive::read(path)?;
    let id = digest(&saved.config);
    if let Some(expected) = expected_id
        && id != expected
    {
        return Err(ImageError::Archive(
            path.to_path_buf(),
            format!("its config digest {id} is not the image id {expected}"),
        ));
    }
    let layers: Vec<(PathBuf, (u64, u64))> = saved
        .layers
        .iter()
        .map(|r| (path.to_path_buf(), *r))
        .collect();
    let files = ImageFiles::from_tars(&layers)?;
    Ok(SourceImage {
        id,
        name: saved.repo_tags.first().cloned(),
        size: files.tree.file_bytes(),
        config: saved.config,
        files,
        via: Via::Auto,
        _temps: Vec::new(),
    })
}

fn from_oci(dir: &Path, reference: Option<&str>) -> Result<SourceImage, ImageError> {
    let image = oci::read(dir, reference)?;
    let mut temps = Vec::new();
    let mut layers = Vec::with_capacity(image.layers.len());
    for (blob, compression) in &image.layers {
        let path = match compression {
            oci::Compression::None => blob.clone(),
            oci::Compression::Gzip => {
                let temp = temp_file("slimd-layer-", ".tar")?;
                gunzip(blob, &temp)?;
                let path = temp.to_path_buf();
                temps.push(temp);
                path
            }
        };
        let len = std::fs::metadata(&path)
            .map_err(|e| ImageError::io(format!("reading {}", path.display()), e))?
            .len();
        layers.push((path, (0, len)));
    }
    let files = ImageFiles::from_tars(&layers)?;
    Ok(SourceImage {
        id: digest(&image.config),
        name: image.name,
        size: files.tree.file_bytes(),
        config: image.config,
        files,
        via: Via::Auto,
        _temps: temps,
    })
}

fn gunzip(from: &Path, to: &Path) -> Result<(), ImageError> {
    let err = |e: io::Error| ImageError::io(format!("decompressing layer {}", from.display()), e);
    let mut input =
        flate2::read::MultiGzDecoder::new(io::BufReader::new(File::open(from).map_err(err)?));
    let mut output = io::BufWriter::new(File::create(to).map_err(err)?);
    io::copy(&mut input, &mut output).map_err(err)?;
    Ok(())
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
    let files = ImageFiles::from_layer_dirs(&dirs).map_err(|e| e.to_string())?;
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
    let config = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
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
    }
}
