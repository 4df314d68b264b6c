//! The Docker engine, through its API (bollard), with the API version negotiated.
use std::{collections::HashMap, path::Path};

use bollard::{
    container::LogOutput,
    errors::Error as BollardError,
    exec::{CreateExecOptions, StartExecResults},
    models::{ContainerCreateBody, HostConfig, PortBinding},
    query_parameters::{
        CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
        RemoveImageOptions, StopContainerOptions, WaitContainerOptions,
    },
};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::image::history::HistoryEntry;

/// Failures of the container runtime, each naming what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the Docker engine at {0} ({1}); start dockerd or set DOCKER_HOST")]
    Unreachable(String, String),
    #[error("permission denied on the Docker socket {0}; run slimd as root")]
    Permission(String),
    #[error("no such container: {0} (see `docker ps`)")]
    NoSuchContainer(String),
    #[error(
        "container {0} is not running ({1}); start it, or use `slimd run <image>` to run and observe it"
    )]
    NotRunning(String, String),
    #[error("no such image: {0} (see `docker images`)")]
    NoSuchImage(String),
    #[error("the Docker engine failed while {0}: {1}")]
    Api(String, String),
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
}

type Result<T> = std::result::Result<T, RuntimeError>;

/// What slimd needs to know about a container.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    pub id: String,
    /// Without Docker's leading slash.
    pub name: String,
    /// `sha256:<hex>` of the container's image.
    pub image_id: String,
    /// The image as the container was created from it (`app:1.0`).
    pub image_ref: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub running: bool,
    /// When its current (or last) run started.
    pub started: Option<std::time::SystemTime>,
    pub status: String,
    /// The pid of the container's first process, as the host sees it.
    pub pid: Option<u32>,
    pub exit_code: Option<i64>,
    /// Where Docker mounted volumes and bind mounts inside the container.
    pub mount_destinations: Vec<String>,
    /// Where the engine mounts the container's root file system on the host (overlay2).
    pub merged_dir: Option<std::path::PathBuf>,
    /// Published ports: the container's port (`80/tcp`) and its port on 127.0.0.1.
    pub published: Vec<(String, u16)>,
}

/// What slimd needs to know about an image.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// `sha256:<hex>`: the digest of the image config.
    pub id: String,
    pub repo_tags: Vec<String>,
    /// Bytes the engine reports for the image.
    pub size: u64,
    pub layer_count: usize,
    /// Storage driver name and data: a hint for reading layers in place.
    pub graph_driver: Option<(String, HashMap<String, String>)>,
    /// The run configuration (Cmd, Env, ...) as the engine reports it, for display.
    pub run_config: serde_json::Value,
    /// Ports the image exposes (`80/tcp`).
    pub exposed_ports: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct EngineInfo {
    pub root_dir: String,
    pub cgroup_driver: String,
    pub storage_driver: String,
    pub version: String,
}

/// How to create a container for `slimd run`.
#[derive(Clone, Debug, Default)]
pub struct CreateSpec {
    pub image: String,
    pub name: String,
    /// Replaces the image's Cmd, as `docker run <image> <cmd...>` does.
    pub cmd: Option<Vec<String>>,
    pub cgroup_parent: Option<String>,
    pub labels: HashMap<String, String>,
    /// Container ports (`80/tcp`) to publish on a free port of 127.0.0.1.
    pub publish: Vec<String>,
    /// A seccomp profile (its JSON text) instead of the engine's default.
    pub seccomp: Option<String>,
}

/// What a command run in a container did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// The first [`MAX_CAPTURE`] bytes of each.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Bytes of one output stream (a container's, a command's, an HTTP body) kept in memory: a
/// container that writes without end costs slimd no more than this.
pub const MAX_CAPTURE: usize = 16 << 20;

/// Appends what fits of `chunk` under [`MAX_CAPTURE`]; the rest is dropped.
pub fn capture(buf: &mut Vec<u8>, chunk: &[u8]) {
    let room = MAX_CAPTURE.saturating_sub(buf.len());
    buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

/// Published ports are bound to loopback only: slimd never reaches a container otherwise.
const LOOPBACK: &str = "127.0.0.1";

pub struct Docker {
    client: bollard::Docker,
    socket: String,
    /// The engine's cgroup driver (`cgroupfs` or `systemd`), asked for once.
    cgroup_driver: std::sync::OnceLock<String>,
}

fn socket_path() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".to_owned())
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn message_of(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

impl Docker {
    /// Connects to the engine and negotiates the API version it speaks.
    pub async fn connect() -> Result<Self> {
        let socket = socket_path();
        let path = Path::new(&socket);
        if !path.exists() {
            return Err(RuntimeError::Unreachable(
                socket,
                "the socket does not exist".into(),
            ));
        }
        if rustix::fs::access(
            path,
            rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
        )
        .is_err()
        {
            return Err(RuntimeError::Permission(socket));
        }
        let client = bollard::Docker::connect_with_unix(&socket, 600, bollard::API_DEFAULT_VERSION)
            .map_err(|e| RuntimeError::Unreachable(socket.clone(), e.to_string()))?;
        let client = client
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError::Unreachable(socket.clone(), e.to_string()))?;
        Ok(Docker {
            client,
            socket,
            cgroup_driver: std::sync::OnceLock::new(),
        })
    }

    fn api(&self, doing: &str, e: BollardError) -> RuntimeError {
        match e {
            BollardError::IOError { .. } | BollardError::HyperResponseError { .. } => {
                RuntimeError::Unreachable(self.socket.clone(), e.to_string())
            }
            e => RuntimeError::Api(doing.to_owned(), message_of(&e)),
        }
    }

    pub async fn engine_info(&self) -> Result<EngineInfo> {
        let info = self
            .client
            .info()
            .await
            .map_err(|e| self.api("reading engine info", e))?;
        let info = EngineInfo {
            root_dir: info
                .docker_root_dir
                .unwrap_or_else(|| "/var/lib/docker".into()),
            cgroup_driver: info
                .cgroup_driver
                .map(|d| d.to_string())
                .unwrap_or_else(|| "cgroupfs".into()),
            storage_driver: info.driver.unwrap_or_default(),
            version: info.server_version.unwrap_or_default(),
        };
        let _ = self.cgroup_driver.set(info.cgroup_driver.clone());
        Ok(info)
    }

    pub async fn container(&self, name_or_id: &str) -> Result<ContainerInfo> {
        let c = self
            .client
            .inspect_container(name_or_id, None)
            .await
            .map_err(|e| match status_of(&e) {
                Some(404) => RuntimeError::NoSuchContainer(name_or_id.to_owned()),
                _ => self.api(&format!("inspecting container {name_or_id}"), e),
            })?;
        let state = c.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        Ok(ContainerInfo {
            id: c.id.unwrap_or_default(),
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            image_id: c.image.unwrap_or_default(),
            image_ref: c
                .config
                .as_ref()
                .and_then(|cfg| cfg.image.clone())
                .unwrap_or_default(),
            labels: c
                .config
                .and_then(|cfg| cfg.labels)
                .map(|l| l.into_iter().collect())
                .unwrap_or_default(),
            running,
            started: state
                .started_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok()),
            status: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            pid: state.pid.filter(|p| *p > 0).map(|p| p as u32),
            exit_code: state.exit_code,
            mount_destinations: c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.destination)
                .collect(),
            merged_dir: c
                .graph_driver
                .and_then(|g| g.data.get("MergedDir").map(std::path::PathBuf::from)),
            published: c
                .network_settings
                .and_then(|n| n.ports)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(port, bindings)| {
                    let host = bindings?
                        .into_iter()
                        .filter(|b| b.host_ip.as_deref() == Some(LOOPBACK))
                        .find_map(|b| b.host_port?.parse().ok())?;
                    Some((port, host))
                })
                .collect(),
        })
    }

    /// The container, which must be running.
    pub async fn running_container(&self, name_or_id: &str) -> Result<ContainerInfo> {
        let c = self.container(name_or_id).await?;
        if !c.running || c.pid.is_none() {
            return Err(RuntimeError::NotRunning(name_or_id.to_owned(), c.status));
        }
        Ok(c)
    }

    pub async fn image(&self, reference: &str) -> Result<ImageInfo> {
        let i = self
            .client
            .inspect_image(reference)
            .await
            .map_err(|e| match status_of(&e) {
                Some(404) => RuntimeError::NoSuchImage(reference.to_owned()),
                _ => self.api(&format!("inspecting image {reference}"), e),
            })?;
        Ok(ImageInfo {
            id: i.id.unwrap_or_default(),
            repo_tags: i.repo_tags.unwrap_or_default(),
            size: i.size.unwrap_or(0).max(0) as u64,
            layer_count: i.root_fs.and_then(|r| r.layers).map_or(0, |l| l.len()),
            graph_driver: i.graph_driver.map(|g| (g.name, g.data)),
            exposed_ports: i
                .config
                .as_ref()
                .and_then(|c| c.exposed_ports.clone())
                .unwrap_or_default(),
            run_config: serde_json::to_value(i.config).unwrap_or_default(),
        })
    }

    /// Every container (running or not) that carries the label `key`: its id and the label's
    /// value.
    pub async fn containers_labelled(&self, key: &str) -> Result<Vec<(String, String)>> {
        let list = self
            .summaries(Some(HashMap::from([(
                "label".to_owned(),
                vec![key.to_owned()],
            )])))
            .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let value = c.labels?.get(key)?.clone();
                Some((c.id?, value))
            })
            .collect())
    }

    /// Every container, running or not, that the filters select.
    async fn summaries(
        &self,
        filters: Option<HashMap<String, Vec<String>>>,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let options = ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        };
        self.client
            .list_containers(Some(options))
            .await
            .map_err(|e| self.api("listing containers", e))
    }

    /// Whether an image (by reference or id) exists.
    pub async fn image_exists(&self, reference: &str) -> Result<bool> {
        match self.image(reference).await {
            Ok(_) => Ok(true),
            Err(RuntimeError::NoSuchImage(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn create(&self, spec: &CreateSpec) -> Result<String> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(spec.labels.clone()),
            host_config: Some(HostConfig {
                cgroup_parent: spec.cgroup_parent.clone(),
                security_opt: spec.seccomp.as_ref().map(|p| vec![format!("seccomp={p}")]),
                port_bindings: Some(
                    spec.publish
                        .iter()
                        .map(|port| {
                            let binding = PortBinding {
                                host_ip: Some(LOOPBACK.into()),
                                host_port: Some(String::new()),
                            };
                            (port.clone(), Some(vec![binding]))
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            exposed_ports: (!spec.publish.is_empty()).then(|| spec.publish.clone()),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        // On a task of its own: a caller cancelled meanwhile does not abort the request
        // half-way, so the container is made all the same and can be found by its name.
        let client = self.client.clone();
        let request =
            tokio::spawn(async move { client.create_container(Some(options), body).await });
        let created = request
            .await
            .map_err(|e| RuntimeError::Api("creating a container".into(), e.to_string()))?
            .map_err(|e| match status_of(&e) {
                Some(404) => RuntimeError::NoSuchImage(spec.image.clone()),
                _ => self.api(&format!("creating a container of {}", spec.image), e),
            })?;
        Ok(created.id)
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.client
            .start_container(id, None)
            .await
            .map_err(|e| self.api(&format!("starting container {id}"), e))
    }

    /// Waits until the container stops; its exit code.
    pub async fn wait(&self, id: &str) -> Result<i64> {
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut stream = self.client.wait_container(id, Some(options));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard turns a non-zero exit into this error.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.api(&format!("waiting for container {id}"), e)),
            None => Err(RuntimeError::Api(
                format!("waiting for container {id}"),
                "no answer".into(),
            )),
        }
    }

    /// Stops the container with its StopSignal, killing it after `grace_secs`.
    pub async fn stop(&self, id: &str, grace_secs: i32) -> Result<()> {
        let options = StopContainerOptions {
            t: Some(grace_secs),
            ..Default::default()
        };
        match self.client.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(self.api(&format!("stopping container {id}"), e)),
        }
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.api(&format!("removing container {id}"), e)),
        }
    }

    /// Writes the `docker save` stream of an image into `dest`.
    pub async fn save_image(&self, image: &str, dest: std::fs::File) -> Result<()> {
        let doing = format!("exporting image {image}");
        let mut file = tokio::fs::File::from_std(dest);
        let mut stream = self.client.export_image(image);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match status_of(&e) {
                Some(404) => RuntimeError::NoSuchImage(image.to_owned()),
                _ => self.api(&doing, e),
            })?;
            file.write_all(&chunk)
                .await
                .map_err(|e| RuntimeError::Api(doing.clone(), e.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|e| RuntimeError::Api(doing, e.to_string()))?;
        Ok(())
    }

    /// Runs a command in a running container (`docker exec`) and waits for it.
    pub async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput> {
        let doing = format!("running {cmd:?} in container {id}");
        let created = self
            .client
            .create_exec(
                id,
                CreateExecOptions {
                    cmd: Some(cmd.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.api(&doing, e))?;
        let mut out = ExecOutput::default();
        if let StartExecResults::Attached { mut output, .. } = self
            .client
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.api(&doing, e))?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| self.api(&doing, e))? {
                    LogOutput::StdOut { message } => capture(&mut out.stdout, &message),
                    LogOutput::StdErr { message } => capture(&mut out.stderr, &message),
                    _ => {}
                }
            }
        }
        let inspected = self
            .client
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.api(&doing, e))?;
        out.exit_code = inspected.exit_code.unwrap_or(-1);
        Ok(out)
    }

    /// What the container wrote to its standard output and standard error so far (the first
    /// [`MAX_CAPTURE`] bytes of each).
    pub async fn output(&self, id: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let mut stream = self.client.logs(id, Some(options));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        // Once both could be full, the rest is not read at all (dropping the stream closes
        // it): a container that logs without end costs neither memory nor time.
        let mut seen = 0usize;
        while seen < 2 * MAX_CAPTURE
            && let Some(chunk) = stream.next().await
        {
            match chunk.map_err(|e| self.api(&format!("reading the output of {id}"), e))? {
                LogOutput::StdOut { message } => {
                    seen += message.len();
                    capture(&mut stdout, &message)
                }
                LogOutput::StdErr { message } => {
                    seen += message.len();
                    capture(&mut stderr, &message)
                }
                _ => {}
            }
        }
        Ok((stdout, stderr))
    }

    /// `docker load` of the docker-archive that is all of `archive`.
    pub async fn load_image(&self, archive: &std::fs::File) -> Result<()> {
        let doing = "loading the slim image".to_owned();
        let mut file = tokio::fs::File::from_std(
            archive
                .try_clone()
                .map_err(|e| RuntimeError::Api(doing.clone(), e.to_string()))?,
        );
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| RuntimeError::Api(doing.clone(), e.to_string()))?;
        let body = tokio_util::io::ReaderStream::new(file);
        let mut progress = self.client.import_image_stream(
            bollard::query_parameters::ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            body,
            None,
        );
        while let Some(item) = progress.try_next().await.map_err(|e| self.api(&doing, e))? {
            if let Some(err) = item.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Api(doing, err));
            }
        }
        Ok(())
    }

    /// The image's history, oldest step first.
    pub async fn image_history(&self, reference: &str) -> Result<Vec<HistoryEntry>> {
        let mut items =
            self.client
                .image_history(reference)
                .await
                .map_err(|e| match status_of(&e) {
                    Some(404) => RuntimeError::NoSuchImage(reference.to_owned()),
                    _ => self.api(&format!("reading the history of {reference}"), e),
                })?;
        items.reverse();
        Ok(items
            .into_iter()
            .map(|i| HistoryEntry {
                // Imported images say what made them in the comment.
                created_by: if i.created_by.is_empty() {
                    i.comment
                } else {
                    i.created_by
                },
                size: i.size.max(0) as u64,
            })
            .collect())
    }

    /// Gives the image `id` the name `tag` (`repo:tag`, or `repo` for `latest`).
    pub async fn tag(&self, id: &str, tag: &str) -> Result<()> {
        let last_slash = tag.rfind('/').map_or(0, |i| i + 1);
        let (repo, version) = match tag[last_slash..].rfind(':') {
            Some(i) => (&tag[..last_slash + i], &tag[last_slash + i + 1..]),
            None => (tag, "latest"),
        };
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(version.to_owned()),
        };
        self.client
            .tag_image(id, Some(options))
            .await
            .map_err(|e| self.api(&format!("tagging {id} as {tag}"), e))
    }

    /// Removes the image `id` if it exists and carries no tag (what an interrupted load may
    /// leave); a failure only costs a log line.
    pub async fn remove_untagged(&self, id: &str) {
        match self.image(id).await {
            Ok(info) if info.repo_tags.is_empty() => {
                let options = RemoveImageOptions {
                    force: false,
                    ..Default::default()
                };
                if let Err(e) = self.client.remove_image(id, Some(options), None).await {
                    tracing::debug!("leaving untagged image {id}: {e}");
                }
            }
            _ => {}
        }
    }

    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        let options = RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        match self
            .client
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.api(&format!("removing image {reference}"), e)),
        }
    }
}

/// The container a cgroup path names: `/docker/<id>` (cgroupfs driver), or
/// `/system.slice/docker-<id>.scope` (systemd driver), with any cgroups the container made
/// below its own.
fn container_of(path: &Path) -> Option<String> {
    let names: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
    names.iter().enumerate().find_map(|(i, name)| {
        let scoped = name
            .strip_prefix("docker-")
            .and_then(|n| n.strip_suffix(".scope"));
        match scoped {
            Some(id) if is_container_id(id) => Some(id.to_owned()),
            _ if i > 0 && names[i - 1] == "docker" && is_container_id(name) => {
                Some((*name).to_owned())
            }
            _ => None,
        }
    })
}

/// A container's id: 64 hexadecimal digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl crate::runtime::Runtime for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn list(&self) -> Result<Vec<crate::runtime::Identity>> {
        let list = self.summaries(None).await?;
        let mut out = Vec::with_capacity(list.len());
        for summary in list {
            let Some(id) = summary.id else { continue };
            // Inspected one by one for the pid and the mounts; one that is gone meanwhile is
            // simply not listed.
            if let Some(identity) = crate::runtime::Runtime::identity(self, &id).await? {
                out.push(identity);
            }
        }
        Ok(out)
    }

    async fn identity(&self, id: &str) -> Result<Option<crate::runtime::Identity>> {
        match self.container(id).await {
            Ok(c) => Ok(Some(crate::runtime::Identity {
                id: c.id,
                name: c.name,
                image_ref: c.image_ref,
                image_id: c.image_id,
                labels: c.labels,
                pid: c.pid,
                running: c.running,
                started: c.started,
                mount_destinations: c.mount_destinations,
            })),
            Err(RuntimeError::NoSuchContainer(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn events(
        &self,
        since: std::time::SystemTime,
    ) -> impl futures_util::Stream<Item = Result<crate::runtime::RuntimeEvent>> + Unpin + '_ {
        use crate::runtime::{Lifecycle, RuntimeEvent};
        let since = since
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let options = bollard::query_parameters::EventsOptions {
            since: Some(format!("{}.{:09}", since.as_secs(), since.subsec_nanos())),
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                (
                    "event".to_owned(),
                    ["create", "start", "die", "destroy"]
                        .map(str::to_owned)
                        .to_vec(),
                ),
            ])),
            ..Default::default()
        };
        Box::pin(self.client.events(Some(options)).filter_map(move |e| {
            let event = match e {
                Err(e) => Some(Err(self.api("following events", e))),
                Ok(m) => {
                    let what = match m.action.as_deref() {
                        Some("create") => Some(Lifecycle::Created),
                        Some("start") => Some(Lifecycle::Started),
                        Some("die") => Some(Lifecycle::Exited),
                        Some("destroy") => Some(Lifecycle::Removed),
                        _ => None,
                    };
                    let actor = m.actor.unwrap_or_default();
                    // The engine puts the labels among the event's attributes.
                    let labels = actor.attributes.map(|a| a.into_iter().collect());
                    what.zip(actor.id)
                        .map(|(what, id)| Ok(RuntimeEvent { id, what, labels }))
                }
            };
            std::future::ready(event)
        }))
    }

    fn cgroup_parents(&self) -> Vec<std::path::PathBuf> {
        // The engine puts its containers under `docker` (cgroupfs driver) or, as
        // `docker-<id>.scope`, under `system.slice` (systemd driver).
        match self.cgroup_driver.get().map(String::as_str) {
            Some("systemd") => vec!["/system.slice".into()],
            _ => vec!["/docker".into()],
        }
    }

    fn container_of_cgroup(&self, path: &Path) -> Option<String> {
        container_of(path)
    }

    async fn image(
        &self,
        image_id: &str,
    ) -> std::result::Result<crate::image::source::SourceImage, crate::image::source::SourceError>
    {
        crate::image::source::open(
            &crate::image::source::ImageSpec::Engine(image_id.to_owned()),
            Some(self),
            crate::image::source::Via::Auto,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_cgroups_of_both_drivers() {
        let id = "0123456789abcdef".repeat(4);
        for path in [
            format!("/docker/{id}"),
            format!("/docker/{id}/init.scope"),
            format!("/system.slice/docker-{id}.scope"),
        ] {
            assert_eq!(container_of(Path::new(&path)), Some(id.clone()), "{path}");
        }
        for path in [
            "/docker".to_owned(),
            "/system.slice/ssh.service".to_owned(),
            format!("/other/{id}"),
            "/docker/abc".to_owned(),
        ] {
            assert_eq!(container_of(Path::new(&path)), None, "{path}");
        }
    }
}
