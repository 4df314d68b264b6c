//! Building the slim image: select the used paths of the original image, write them as one
//! layer, carry the config over, and write the result where it was asked for.
pub mod libs;
pub mod select;
pub mod tag;

use std::{collections::BTreeMap, fs::File, io::BufWriter, path::PathBuf};

use serde_json::Value;

use crate::{
    fsutil::{Access, AtomicFile},
    image::{
        ImageError, ImageFiles, archive, config, oci,
        source::{self, ImageSpec, SourceError, SourceImage, Via},
        writer,
    },
    interrupt,
    report::{AccessReport, ReportError},
    runtime::{Docker, RuntimeError},
    ui::Ui,
};
pub use select::{Selection, SelectionRules};

/// How the slim image's one history entry starts: this is how slimd knows its own images.
const CREATED_BY_PREFIX: &str = "slimd build ";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Source(#[from] SourceError),
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
    #[error("nothing to keep: give --report, --include or --include-bin")]
    NothingToKeep,
    #[error("--include-bin {0}: {1}")]
    IncludeBin(PathBuf, String),
    #[error("the engine did not load {0} as image {1}, which slimd wrote")]
    LoadMismatch(String, String),
    #[error(
        "{0} already names an image that slimd did not build; choose another --tag, or pass --force to move it"
    )]
    TagTaken(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Interrupted(#[from] interrupt::Interrupted),
}

/// Where the slim image goes; any combination.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// Load it into the engine and tag it.
    pub load: bool,
    /// Write an OCI image layout to this (new) directory.
    pub oci_dir: Option<PathBuf>,
    /// Write a docker-archive (for `docker load`) to this file.
    pub archive: Option<PathBuf>,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            load: true,
            oci_dir: None,
            archive: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The tag to give the slim image; default `<repo>:<tag>-slim`.
    pub tag: Option<String>,
    pub allow_incomplete: bool,
    pub via: Via,
    /// Clamp mtimes and fix `created` (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    pub outputs: Outputs,
    pub rules: SelectionRules,
    /// Move the tag even off an image slimd did not build.
    pub force: bool,
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildSummary {
    pub original: String,
    pub tag: String,
    pub image_id: String,
    pub original_size: u64,
    /// As the engine reports it when loaded, else the layer's size.
    pub slim_size: u64,
    pub kept_files: usize,
    pub total_files: usize,
    pub not_in_image: usize,
    pub missing_libraries: Vec<String>,
    /// Where the image was written, for people to read.
    pub written: Vec<String>,
}

/// Reads reports: files, or `http://` URLs.
pub async fn read_reports(sources: &[String]) -> Result<Vec<(PathBuf, AccessReport)>, BuildError> {
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
        out.push((PathBuf::from(source), AccessReport::load(source).await?));
    }
    Ok(out)
}

/// Builds the slim image of `spec` from reports recorded against it (none is fine when the
/// selection rules name what to keep).
pub async fn build(
    docker: Option<&Docker>,
    spec: &ImageSpec,
    reports: Vec<(PathBuf, AccessReport)>,
    options: &BuildOptions,
    ui: &Ui,
) -> Result<BuildSummary, BuildError> {
    if reports.is_empty() && options.rules.is_empty() {
        return Err(BuildError::NothingToKeep);
    }
    let original = read_original(docker, spec, &spec.to_string(), options.via, ui).await?;
    check_reports(&original, spec, &reports, options.allow_incomplete)?;
    let report = if reports.is_empty() {
        None
    } else {
        Some(AccessReport::merge_files(reports)?)
    };
    let tag = match &options.tag {
        Some(t) => t.clone(),
        None => tag::slim_tag(
            original.name.as_deref().unwrap_or(&original.id),
            &original.id,
        ),
    };
    build_from(
        docker,
        &original,
        &spec.to_string(),
        report.as_ref(),
        &tag,
        options,
        ui,
    )
    .await
}

/// Reads the original image, as a step of its own (`label` names it for people).
pub async fn read_original(
    docker: Option<&Docker>,
    spec: &ImageSpec,
    label: &str,
    via: Via,
    ui: &Ui,
) -> Result<SourceImage, SourceError> {
    let step = ui.step(format!("read {label}"));
    let original = source::open(spec, docker, via).await?;
    let how = match original.via {
        Via::Layers => "in place",
        Via::Save => "from the save stream",
        Via::Auto => "from disk",
    };
    step.done(format!(
        "{how}: {} paths",
        crate::ui::count(original.files.tree.len())
    ));
    Ok(original)
}

fn check_reports(
    original: &SourceImage,
    spec: &ImageSpec,
    reports: &[(PathBuf, AccessReport)],
    allow_incomplete: bool,
) -> Result<(), BuildError> {
    for (path, report) in reports {
        if report.image.id != original.id {
            return Err(BuildError::ForeignReport(
                path.clone(),
                report.image.id.clone(),
                spec.to_string(),
                original.id.clone(),
            ));
        }
        if !report.complete && !allow_incomplete {
            return Err(BuildError::Incomplete(path.clone(), report.events.gaps()));
        }
    }
    Ok(())
}

/// What the image's own config asks of its file system.
fn image_needs(config: &[u8], image: &str) -> Result<select::ImageNeeds, BuildError> {
    let config: Value = serde_json::from_slice(config)
        .map_err(|e| BuildError::Config(format!("the config of {image} is not JSON: {e}")))?;
    Ok(select::ImageNeeds {
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
    })
}

/// Builds from an image already read and a (merged) report.
pub async fn build_from(
    docker: Option<&Docker>,
    original: &SourceImage,
    image: &str,
    report: Option<&AccessReport>,
    tag: &str,
    options: &BuildOptions,
    ui: &Ui,
) -> Result<BuildSummary, BuildError> {
    let step = ui.step("write the slim layer");
    let needs = image_needs(&original.config, image)?;
    let (selection, layer_file, layer) = interrupt::blocking(|| -> Result<_, BuildError> {
        let selection = select::select(&original.files, report, &needs, &options.rules)?;
        // Unnamed files: nothing is left behind, whatever happens to slimd.
        let layer_file =
            tempfile::tempfile().map_err(|e| ImageError::io("creating the layer file", e))?;
        let layer = write_layer(&original.files, &selection.keep, options, &layer_file)?;
        Ok((selection, layer_file, layer))
    })?;
    for lib in &selection.missing_libraries {
        tracing::warn!("a kept executable needs {lib}, which is not in the image");
    }
    let created = options.source_date_epoch.map(rfc3339);
    let created_by = format!("{CREATED_BY_PREFIX}{image}");
    let containers = report.map_or(0, |r| r.containers.len());
    let comment = format!(
        "single layer of {} paths of image {} used in {containers} container(s)",
        selection.keep.len(),
        original.id,
    );
    let config = config::slim_config(
        &original.config,
        &layer.diff_id,
        &created_by,
        &comment,
        created.as_deref(),
    )?;
    let image_id = config::digest(&config);
    step.done(format!(
        "{} paths, {}",
        crate::ui::count(selection.keep.len()),
        crate::ui::size(layer.tar_bytes)
    ));

    // Every output is staged first and put in place only once all of them are written.
    let archive = |out: &File, tags: &[String]| {
        archive::write(
            BufWriter::new(out),
            &config,
            &layer_file,
            &layer.diff_id,
            tags,
        )
        .map_err(|e| ImageError::io("writing the image archive", e))
    };
    let (oci_dir, archive_out) = interrupt::blocking(|| -> Result<_, BuildError> {
        let oci_dir = match &options.outputs.oci_dir {
            Some(dir) => Some(oci::write(dir, &config, &layer_file, &layer.diff_id, tag)?),
            None => None,
        };
        let archive_out = match &options.outputs.archive {
            Some(dest) => {
                let mut out = AtomicFile::create(dest, Access::Private)
                    .map_err(|e| ImageError::io(format!("writing {}", dest.display()), e))?;
                archive(out.file(), &[tag.to_owned()])?;
                Some(out)
            }
            None => None,
        };
        Ok((oci_dir, archive_out))
    })?;
    let mut written = Vec::new();
    let mut slim_size = layer.tar_bytes;
    if options.outputs.load {
        let docker = docker.expect("loading needs an engine connection");
        let step = ui.step(format!("load {tag}"));
        check_tag_is_ours(docker, tag, options.force).await?;
        // Loaded without a name and named once it is in: a load that is interrupted (or
        // fails) leaves no tag behind.
        let untagged = interrupt::blocking(|| -> Result<File, BuildError> {
            let file = tempfile::tempfile()
                .map_err(|e| ImageError::io("creating the image archive", e))?;
            archive(&file, &[])?;
            Ok(file)
        })?;
        if let Err(e) = interrupt::cancellable(docker.load_image(&untagged)).await {
            docker.remove_untagged(&image_id).await;
            return Err(e.into());
        }
        let loaded = match docker.image(&image_id).await {
            Ok(info) => info,
            Err(RuntimeError::NoSuchImage(_)) => {
                return Err(BuildError::LoadMismatch(tag.to_owned(), image_id));
            }
            Err(e) => return Err(e.into()),
        };
        docker.tag(&image_id, tag).await?;
        slim_size = loaded.size;
        step.done("into the engine");
        written.push(format!("engine image {tag}"));
    }
    if let Some(out) = archive_out {
        let dest = out.path().to_path_buf();
        out.commit()
            .map_err(|e| ImageError::io(format!("writing {}", dest.display()), e))?;
        written.push(format!("docker-archive {}", dest.display()));
    }
    if let (Some(staged), Some(dir)) = (oci_dir, &options.outputs.oci_dir) {
        oci::commit(staged, dir)?;
        written.push(format!("OCI layout {}", dir.display()));
    }
    Ok(BuildSummary {
        original: image.to_owned(),
        tag: tag.to_owned(),
        image_id,
        original_size: original.size,
        slim_size,
        kept_files: count_files(&selection.keep, &original.files),
        total_files: original
            .files
            .tree
            .iter()
            .filter(|(_, n)| !n.is_dir())
            .count(),
        not_in_image: selection.not_in_image.len(),
        missing_libraries: selection.missing_libraries,
        written,
    })
}

/// Refuses to move `tag` off an image that slimd did not build, unless `force`: an archive's
/// or a layout's own name must not replace the user's `app:1.0-slim`.
async fn check_tag_is_ours(docker: &Docker, tag: &str, force: bool) -> Result<(), BuildError> {
    if force || !docker.image_exists(tag).await? {
        return Ok(());
    }
    let history = docker.image_history(tag).await?;
    let ours =
        matches!(history.as_slice(), [only] if only.created_by.starts_with(CREATED_BY_PREFIX));
    if ours {
        Ok(())
    } else {
        Err(BuildError::TagTaken(tag.to_owned()))
    }
}

fn count_files(keep: &BTreeMap<PathBuf, writer::Keep>, files: &ImageFiles) -> usize {
    keep.keys()
        .filter(|p| files.tree.get(p).is_some_and(|n| !n.is_dir()))
        .count()
}

fn write_layer(
    files: &ImageFiles,
    keep: &BTreeMap<PathBuf, writer::Keep>,
    options: &BuildOptions,
    file: &std::fs::File,
) -> Result<writer::LayerSummary, ImageError> {
    writer::write_layer(
        files,
        keep,
        writer::LayerOptions {
            source_date_epoch: options.source_date_epoch,
        },
        BufWriter::with_capacity(1 << 20, file),
    )
}

/// The latest `SOURCE_DATE_EPOCH` an RFC 3339 time can say (9999-12-31T23:59:59Z).
const MAX_EPOCH: i64 = 253_402_300_799;

fn rfc3339(epoch: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `SOURCE_DATE_EPOCH` from the environment, if set; an error when it is not a time from
/// 1970 to 9999.
pub fn source_date_epoch() -> Result<Option<i64>, BuildError> {
    let Ok(text) = std::env::var("SOURCE_DATE_EPOCH") else {
        return Ok(None);
    };
    match text.trim().parse::<i64>() {
        Ok(epoch) if (0..=MAX_EPOCH).contains(&epoch) => Ok(Some(epoch)),
        _ => Err(BuildError::Config(format!(
            "SOURCE_DATE_EPOCH={text} is not a time between 1970 and 9999 in seconds; unset it or fix it"
        ))),
    }
}
