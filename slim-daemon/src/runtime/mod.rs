//! Container runtimes: Docker through its API, and the cgroups containers run in.
pub mod cgroup;
pub mod cleanup;
pub mod docker;

pub use docker::{ContainerInfo, CreateSpec, Docker, EngineInfo, ImageInfo, RuntimeError};
