//! Building the slim image: select the used paths of the original image, write them as one
//! layer, carry the config over, and load the result into the engine.
mod libs;
pub mod select;
pub mod tag;

use std::{
    collections::BTreeMap,
    io::BufWriter,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::{
    image::{
        ImageError,
        engine::{self, EngineImage, EngineImageError, Via},
        output, writer,
    },
    report::{AccessReport, ReportError},
    runtime::{Docker, RuntimeError},
};
pub use select::Selection;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Engine(#[from] EngineImageError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "report {0} is of image {1}, not of {2} ({3}); build it against the image it was recorded from"
    )]
    ForeignReport(PathBuf, String, String, String),
    #[error(
        "report {0} is incomplete ({1}); re-record it, or pass --allow-incomplete to build from it anyway"
    )]
    Incomplete(PathBuf, String),
    #[error("the engine loaded {0} with id {1}, but slimd wrote {2}")]
    LoadMismatch(String, String, String),
    #[error("{0}")]
    Config(String),
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The tag to give the slim image; default `<repo>:<tag>-slim`.
    pub tag: Option<String>,
    pub allow_incomplete: bool,
    pub via: Via,
    /// Clamp mtimes and fix `created` (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildSummary {
    pub original: String,
    pub tag: String,
    pub image_id: String,
    pub original_size: u64,
    pub slim_size: u64,
    pub kept_files: usize,
    pub total_files: usize,
    pub not_in_image: usize,
    pub missing_libraries: Vec<String>,
}

/// Reads report files.
pub fn read_reports(paths: &[PathBuf]) -> Result<Vec<(PathBuf, AccessReport)>, BuildError> {
    paths
        .iter()
        .map(|p| Ok((p.clone(), AccessReport::read(p)?)))
        .collect()
}

/// Builds the slim image of `image` from reports recorded against it.
pub async fn build(
    docker: &Docker,
    image: &str,
    reports: Vec<(PathBuf, AccessReport)>,
    options: &BuildOptions,
) -> Result<BuildSummary, BuildError> {
    let original = engine::open(docker, image, options.via).await?;
    check_reports(&original, image, &reports, options.allow_incomplete)?;
    let report = AccessReport::merge(
        reports
            .into_iter()
            .map(|(p, r)| (p.display().to_string(), r))
            .collect(),
    )?;
    let tag = match &options.tag {
        Some(t) => t.clone(),
        None => tag::slim_tag(image, &original.info.id),
    };
    build_from(docker, &original, image, &report, &tag, options).await
}

fn check_reports(
    original: &EngineImage,
    image: &str,
    reports: &[(PathBuf, AccessReport)],
    allow_incomplete: bool,
) -> Result<(), BuildError> {
    for (path, report) in reports {
        if report.image.id != original.info.id {
            return Err(BuildError::ForeignReport(
                path.clone(),
                report.image.id.clone(),
                image.to_owned(),
                original.info.id.clone(),
            ));
        }
        if !report.complete && !allow_incomplete {
            let e = &report.events;
            return Err(BuildError::Incomplete(
                path.clone(),
                format!(
                    "{} events lost, {} paths unreadable, {} paths too long",
                    e.lost, e.unreadable, e.truncated
                ),
            ));
        }
    }
    Ok(())
}

/// Builds from an image already read and a (merged) report.
pub async fn build_from(
    docker: &Docker,
    original: &EngineImage,
    image: &str,
    report: &AccessReport,
    tag: &str,
    options: &BuildOptions,
) -> Result<BuildSummary, BuildError> {
    let config: Value = serde_json::from_slice(&original.config)
        .map_err(|e| BuildError::Config(format!("the config of {image} is not JSON: {e}")))?;
    let needs = select::ImageNeeds {
        working_dir: config
            .pointer("/config/WorkingDir")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        ld_library_path: config
            .pointer("/config/Env")
            .and_then(Value::as_array)
            .and_then(|env| {
                env.iter()
                    .filter_map(Value::as_str)
                    .find_map(|e| e.strip_prefix("LD_LIBRARY_PATH="))
                    .map(str::to_owned)
            }),
    };
    let selection = select::select(&original.files, report, &needs);
    for lib in &selection.missing_libraries {
        tracing::warn!("a used executable needs {lib}, which is not in the image");
    }

    let work = tempfile::Builder::new()
        .prefix("slimd-build-")
        .tempdir()
        .map_err(|e| ImageError::io("creating a build directory", e))?;
    let layer_path = work.path().join("layer.tar");
    let layer = write_layer(&original.files, &selection.keep, options, &layer_path)?;
    let created = options.source_date_epoch.map(rfc3339);
    let created_by = format!("slimd build {image}");
    let comment = format!(
        "single layer of the paths {} of image {} used in {} container(s)",
        selection.keep.len(),
        original.info.id,
        report.containers.len()
    );
    let config = output::slim_config(
        &original.config,
        &layer.diff_id,
        &created_by,
        &comment,
        created.as_deref(),
    )?;
    let image_id = output::digest(&config);

    let archive_path = work.path().join("image.tar");
    let archive = std::fs::File::create(&archive_path)
        .map_err(|e| ImageError::io("creating the image archive", e))?;
    output::write_docker_archive(
        BufWriter::new(archive),
        &config,
        &layer_path,
        &layer.diff_id,
        &[tag.to_owned()],
    )
    .map_err(|e| ImageError::io("writing the image archive", e))?;
    docker.load_image(&archive_path).await?;
    let loaded = docker.image(tag).await?;
    if loaded.id != image_id {
        return Err(BuildError::LoadMismatch(
            tag.to_owned(),
            loaded.id,
            image_id,
        ));
    }
    Ok(BuildSummary {
        original: image.to_owned(),
        tag: tag.to_owned(),
        image_id,
        original_size: original.info.size,
        slim_size: loaded.size,
        kept_files: count_files(&selection.keep, original),
        total_files: original
            .files
            .tree
            .iter()
            .filter(|(_, n)| !n.is_dir())
            .count(),
        not_in_image: selection.not_in_image.len(),
        missing_libraries: selection.missing_libraries,
    })
}

fn count_files(keep: &BTreeMap<PathBuf, writer::Keep>, original: &EngineImage) -> usize {
    keep.keys()
        .filter(|p| original.files.tree.get(p).is_some_and(|n| !n.is_dir()))
        .count()
}

fn write_layer(
    files: &crate::image::ImageFiles,
    keep: &BTreeMap<PathBuf, writer::Keep>,
    options: &BuildOptions,
    path: &Path,
) -> Result<writer::LayerSummary, ImageError> {
    let file = std::fs::File::create(path).map_err(|e| ImageError::io("creating the layer", e))?;
    writer::write_layer(
        files,
        keep,
        writer::LayerOptions {
            source_date_epoch: options.source_date_epoch,
        },
        BufWriter::with_capacity(1 << 20, file),
    )
}

fn rfc3339(epoch: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `SOURCE_DATE_EPOCH` from the environment, if set and valid.
pub fn source_date_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}
