//! The daemon's state directory: one access report per container, and per image the merge of
//! every container of that image that was ever watched.
//!
//! ```text
//! <state>/containers/<container id>.json   one container (running, or exited and not removed)
//! <state>/images/<hex>.json                the image: its archive merged with its containers
//! <state>/images/<hex>.archive.json        the merge of its containers that were removed
//! ```
//!
//! Every write is atomic, so a kill at any moment leaves each file whole, old or new. Files
//! that are not slimd's reports are skipped with a warning and never deleted.
use std::{
    collections::HashMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use crate::{
    fsutil::{self, Access, AtomicFile},
    report::{AccessReport, ReportError},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot use state directory {0}: {1}; choose a writable --state-dir (slimd runs as root)"
    )]
    Unusable(PathBuf, io::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, io::Error),
}

pub struct Store {
    containers: PathBuf,
    images: PathBuf,
}

/// What a state directory held at start.
#[derive(Default)]
pub struct Loaded {
    /// By container id.
    pub containers: HashMap<String, AccessReport>,
    /// The archives, by image id.
    pub archives: HashMap<String, AccessReport>,
}

fn image_hex(image_id: &str) -> &str {
    image_id.strip_prefix("sha256:").unwrap_or(image_id)
}

/// A container id or image digest: the only names the store makes files of.
fn is_hex_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Store {
    /// Opens (making it if need be) the state directory, and proves it writable.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let unusable = |e| StoreError::Unusable(dir.to_path_buf(), e);
        let store = Store {
            containers: dir.join("containers"),
            images: dir.join("images"),
        };
        for sub in [&store.containers, &store.images] {
            fs::create_dir_all(sub).map_err(unusable)?;
            // A file made and dropped: writable, or the daemon says so now rather than at its
            // first flush.
            let mut probe =
                AtomicFile::create(&sub.join(".probe"), Access::Private).map_err(unusable)?;
            probe.file().write_all(b"x").map_err(unusable)?;
        }
        Ok(store)
    }

    /// Every report in the directory, skipping (with a warning) what is not one.
    pub fn load(&self) -> Loaded {
        let mut loaded = Loaded::default();
        for (path, name) in json_files(&self.containers) {
            match read(&path) {
                Some(report) if report.containers.iter().any(|c| c.id == name) => {
                    loaded.containers.insert(name, report);
                }
                Some(_) => tracing::warn!(
                    "skipping {}: it is not the report of container {name}",
                    path.display()
                ),
                None => {}
            }
        }
        for (path, name) in json_files(&self.images) {
            let Some(hex) = name.strip_suffix(".archive") else {
                continue;
            };
            match read(&path) {
                Some(report) if image_hex(&report.image.id) == hex => {
                    loaded.archives.insert(report.image.id.clone(), report);
                }
                Some(_) => tracing::warn!(
                    "skipping {}: it is not an archive of image sha256:{hex}",
                    path.display()
                ),
                None => {}
            }
        }
        loaded
    }

    fn container_path(&self, id: &str) -> PathBuf {
        self.containers.join(format!("{id}.json"))
    }

    fn image_path(&self, image_id: &str) -> PathBuf {
        self.images.join(format!("{}.json", image_hex(image_id)))
    }

    fn archive_path(&self, image_id: &str) -> PathBuf {
        self.images
            .join(format!("{}.archive.json", image_hex(image_id)))
    }

    pub fn write_container(&self, id: &str, report: &AccessReport) -> Result<(), StoreError> {
        write(&self.container_path(id), report)
    }

    pub fn write_image(&self, report: &AccessReport) -> Result<(), StoreError> {
        write(&self.image_path(&report.image.id), report)
    }

    pub fn write_archive(&self, report: &AccessReport) -> Result<(), StoreError> {
        write(&self.archive_path(&report.image.id), report)
    }

    /// Drops a container's file, once its report is in its image's archive.
    pub fn remove_container(&self, id: &str) {
        if let Err(e) = fs::remove_file(self.container_path(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove the report of container {id}: {e}");
        }
    }

    /// The bytes of a container's report as written, for the API.
    pub fn container_bytes(&self, id: &str) -> Option<Vec<u8>> {
        read_bytes(&self.container_path(id))
    }

    /// The bytes of an image's merged report as written, for the API.
    pub fn image_bytes(&self, image_id: &str) -> Option<Vec<u8>> {
        is_hex_name(image_hex(image_id))
            .then(|| read_bytes(&self.image_path(image_id)))
            .flatten()
    }
}

/// The `*.json` files of a directory, with their names without the extension.
fn json_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
            let base = name.strip_suffix(".archive").unwrap_or(&name);
            if !is_hex_name(base) {
                tracing::warn!("skipping {}: not a file slimd writes", e.path().display());
                return None;
            }
            Some((e.path(), name))
        })
        .collect()
}

fn read(path: &Path) -> Option<AccessReport> {
    match AccessReport::read(path) {
        Ok(report) => Some(report),
        Err(e) => {
            tracing::warn!("skipping {}: {}", path.display(), one_line(&e));
            None
        }
    }
}

fn one_line(e: &ReportError) -> String {
    e.to_string().replace('\n', " ")
}

/// Reports as the API serves them: at most this big.
const MAX_SERVED: u64 = 512 << 20;

fn read_bytes(path: &Path) -> Option<Vec<u8>> {
    let file = fsutil::open_regular(path).ok()?;
    fsutil::read_bounded(file, MAX_SERVED, "a report").ok()
}

fn write(path: &Path, report: &AccessReport) -> Result<(), StoreError> {
    report
        .write(path)
        .map_err(|e| StoreError::Write(path.to_path_buf(), io::Error::other(one_line(&e))))
}
