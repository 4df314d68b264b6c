//! Container runtimes: Docker through its API, and the cgroups containers run in. A runtime
//! is one small interface (list, events, identity and labels, where its containers' cgroups
//! are born, image access) with one implementation per engine.
pub mod cgroup;
pub mod cleanup;
pub mod docker;

use std::{
    collections::BTreeMap,
    future::Future,
    path::{Path, PathBuf},
};

pub use docker::{ContainerInfo, CreateSpec, Docker, EngineInfo, ImageInfo, RuntimeError};
use futures_util::Stream;

use crate::image::source::{SourceError, SourceImage};

/// Who a container is, as a daemon needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub name: String,
    /// The image as the container was created from it (`app:1.0`).
    pub image_ref: String,
    /// `sha256:<hex>` of the image config.
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// The pid of its first process, while it runs.
    pub pid: Option<u32>,
    pub running: bool,
    /// When its current (or last) run started.
    pub started: Option<std::time::SystemTime>,
    /// Where volumes and bind mounts are, inside it.
    pub mount_destinations: Vec<String>,
}

/// What happened to a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Created,
    Started,
    Exited,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub id: String,
    pub what: Lifecycle,
    /// The container's labels, when the event carries them (a first look, before asking).
    pub labels: Option<BTreeMap<String, String>>,
}

/// A container runtime, as the daemon uses it.
pub trait Runtime {
    /// Its name, for logs and reports (`docker`).
    fn name(&self) -> &'static str;

    /// Every container it knows, running or not.
    fn list(&self) -> impl Future<Output = Result<Vec<Identity>, RuntimeError>>;

    /// One container; None when there is no such container.
    fn identity(&self, id: &str) -> impl Future<Output = Result<Option<Identity>, RuntimeError>>;

    /// What happens to containers from `since` on (events between `since` and now are
    /// replayed, so that nothing falls between a listing and the stream).
    fn events(
        &self,
        since: std::time::SystemTime,
    ) -> impl Stream<Item = Result<RuntimeEvent, RuntimeError>> + Unpin + '_;

    /// The cgroups (below the unified root) under which its containers' cgroups are made.
    fn cgroup_parents(&self) -> Vec<PathBuf>;

    /// The container a cgroup belongs to, from the cgroup's path below the unified root.
    fn container_of_cgroup(&self, path: &Path) -> Option<String>;

    /// An image, read for resolving paths and building.
    fn image(&self, image_id: &str) -> impl Future<Output = Result<SourceImage, SourceError>>;
}
