//! Reading an image out of the Docker engine.
//!
//! Fast path: when slimd runs on the engine's host with the overlay2 driver, the image's
//! layer directories are read in place and its config comes from the engine's image store
//! (checked against the image id), so the cost grows with what is read, not with the image.
//! Otherwise, and whenever anything about the fast path does not check out, the image is
//! read from the `docker save` stream.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ImageError, ImageFiles, archive};
use crate::runtime::{Docker, ImageInfo, RuntimeError};

/// How to read an image.
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

#[derive(Debug, thiserror::Error)]
pub enum EngineImageError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("the layers of image {0} cannot be read in place: {1}")]
    NoLayerDirs(String, String),
}

/// An image read from the engine.
#[derive(Debug)]
pub struct EngineImage {
    pub info: ImageInfo,
    /// The image config exactly as the engine stores it.
    pub config: Vec<u8>,
    pub files: ImageFiles,
    /// How it was read (never `Auto`).
    pub via: Via,
    /// The save stream on disk, removed on drop.
    _archive: Option<tempfile::TempPath>,
}

/// Reads `reference` (name, tag or id) from the engine.
pub async fn open(
    docker: &Docker,
    reference: &str,
    via: Via,
) -> Result<EngineImage, EngineImageError> {
    let info = docker.image(reference).await?;
    if via != Via::Save {
        match in_place(docker, &info).await {
            Ok((config, files)) => {
                return Ok(EngineImage {
                    info,
                    config,
                    files,
                    via: Via::Layers,
                    _archive: None,
                });
            }
            Err(reason) if via == Via::Layers => {
                return Err(EngineImageError::NoLayerDirs(reference.to_owned(), reason));
            }
            Err(reason) => tracing::debug!("reading {reference} from the save stream: {reason}"),
        }
    }
    let archive_path = tempfile::Builder::new()
        .prefix("slimd-save-")
        .suffix(".tar")
        .tempfile()
        .map_err(|e| ImageError::io("creating a temporary file for the save stream", e))?
        .into_temp_path();
    docker.save_image(&info.id, &archive_path).await?;
    let saved = archive::read(&archive_path)?;
    let digest = format!("sha256:{:x}", Sha256::digest(&saved.config));
    if digest != info.id {
        return Err(ImageError::Archive(
            archive_path.to_path_buf(),
            format!("its config digest {digest} is not the image id {}", info.id),
        )
        .into());
    }
    let files = ImageFiles::from_archive(&archive_path, &saved.layers)?;
    Ok(EngineImage {
        info,
        config: saved.config,
        files,
        via: Via::Save,
        _archive: Some(archive_path),
    })
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
