//! One observation: the sensor watching one container's cgroup, collecting the distinct
//! accesses of its processes, and turning them into an access report at the end.
use std::{
    collections::{BTreeSet, HashMap},
    future::Future,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::{
    image::ImageFiles,
    interrupt::{self, Interrupted},
    report::{AccessReport, ContainerRef, EventCounts, ImageRef, SensorInfo},
    resolve::{
        ResolveStats, Resolver,
        mountinfo::{self, ContainerMounts},
    },
    runtime::cgroup::Cgroup,
    seccomp::Syscalls,
    sensor::{Access, AccessKey, AccessOp, FirstUse, Sensor, SensorError, SensorEvent},
};

/// Distinct accesses one observation keeps. A container that names millions of distinct
/// paths (on purpose or not) makes its report incomplete rather than slimd's memory endless.
pub const MAX_ACCESSES: usize = 500_000;

/// Live numbers, for progress displays.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    pub events: u64,
    pub distinct: usize,
}

pub struct Observation {
    sensor: Sensor,
    watch_id: u64,
    /// The watched container's cgroup (or the parent it will start in).
    cgroup: Cgroup,
    accesses: HashMap<AccessKey, FirstUse>,
    received: u64,
    /// Distinct accesses not kept (beyond `MAX_ACCESSES`).
    over_limit: u64,
    started_at: SystemTime,
    mounts: Option<ContainerMounts>,
    tried_pids: BTreeSet<u32>,
    batch: Vec<SensorEvent>,
}

/// What an observation saw, before it is resolved against the image.
pub struct Recording {
    pub sensor: SensorInfo,
    pub accesses: Vec<Access>,
    pub mounts: Option<ContainerMounts>,
    pub events: EventCounts,
    /// None when the sensor cannot see syscalls.
    pub syscalls: Option<Syscalls>,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
}

impl Observation {
    /// Records the events of an armed sensor whose events carry `watch_id`; `cgroup` is the
    /// container's cgroup (or the parent it will start in).
    pub fn new(sensor: Sensor, watch_id: u64, cgroup: Cgroup) -> Self {
        Observation {
            sensor,
            watch_id,
            cgroup,
            accesses: HashMap::new(),
            received: 0,
            over_limit: 0,
            started_at: SystemTime::now(),
            mounts: None,
            tried_pids: BTreeSet::new(),
            batch: Vec::new(),
        }
    }

    /// Takes the container's mount table from one of its processes (the first that answers).
    pub fn learn_mounts_from(&mut self, pid: u32) {
        if self.mounts.is_some() || !self.tried_pids.insert(pid) {
            return;
        }
        if let Ok(table) = mountinfo::read_pid(pid) {
            self.mounts = Some(ContainerMounts::from_mounts(&table, None));
        }
    }

    /// Records what the processes already in the watched cgroup use now: their executable,
    /// their working directory and every file they have mapped (libraries loaded before the
    /// observation began). For attaching to a running container.
    pub fn snapshot_running(&mut self) {
        let Ok(procs) = std::fs::read_to_string(self.cgroup.dir.join("cgroup.procs")) else {
            return;
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            self.learn_mounts_from(pid);
            for access in running_process_accesses(pid) {
                self.keep(access);
            }
        }
    }

    pub fn progress(&self) -> Progress {
        Progress {
            events: self.received,
            distinct: self.accesses.len(),
        }
    }

    /// Records until `stop` completes; its output. `progress` hears the live numbers.
    pub async fn record_until<F: Future>(
        &mut self,
        stop: F,
        mut progress: impl FnMut(Progress),
    ) -> Result<F::Output, SensorError> {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                out = &mut stop => {
                    self.drain();
                    return Ok(out);
                }
                res = self.sensor.next_batch(&mut self.batch) => {
                    res?;
                    self.absorb();
                    progress(self.progress());
                }
            }
        }
    }

    fn drain(&mut self) {
        self.sensor.drain(&mut self.batch);
        self.absorb();
    }

    fn absorb(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        for event in batch.drain(..) {
            if event.watch_id != self.watch_id {
                continue;
            }
            self.received += 1;
            if let Some(access) = event.access {
                self.learn_mounts_from(access.pid);
                self.keep(access);
            }
        }
        self.batch = batch;
    }

    /// Keeps an access unless it is known, or there is no room for more.
    fn keep(&mut self, access: Access) {
        let (key, first) = access.into_parts();
        if self.accesses.contains_key(&key) {
            return;
        }
        if self.accesses.len() >= MAX_ACCESSES {
            self.over_limit += 1;
            return;
        }
        self.accesses.insert(key, first);
    }

    /// Stops watching (the sensor is unloaded) and returns what was recorded.
    pub fn finish(mut self) -> Result<Recording, SensorError> {
        self.drain();
        let counters = self.sensor.counters()?;
        let problems = self.sensor.problems();
        let syscalls = self
            .sensor
            .syscalls_of_watch(self.watch_id)
            .map(|bits| bits.named(counters.syscalls_unrecorded));
        let mut accesses: Vec<Access> = self
            .accesses
            .into_iter()
            .map(|(key, first)| Access::from_parts(key, first))
            .collect();
        accesses.sort_by_key(|a| a.at_ms);
        Ok(Recording {
            sensor: SensorInfo {
                kind: self.sensor.kind().to_owned(),
                blind_spots: self.sensor.blind_spots(),
            },
            accesses,
            mounts: self.mounts,
            events: EventCounts {
                received: self.received,
                deduplicated: counters.deduplicated,
                lost: counters.lost(),
                lost_per_cpu: counters.lost_per_cpu,
                unreadable: problems.unreadable + counters.stranded,
                truncated: problems.truncated,
                read_on_exit: counters.retried,
                over_limit: self.over_limit,
            },
            syscalls,
            started_at: self.started_at,
            ended_at: SystemTime::now(),
        })
    }
}

/// The executable, working directory and mapped files of a running process, as paths in
/// its own mount namespace (the kernel prints them relative to the process's root).
pub fn running_process_accesses(pid: u32) -> Vec<Access> {
    let Ok(process) = procfs::process::Process::new(pid as i32) else {
        return Vec::new();
    };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let comm = process.stat().map(|s| s.comm).unwrap_or_default();
    let access = |op: AccessOp, path: &[u8]| Access {
        op,
        path: path.to_vec(),
        dir: None,
        nofollow: false,
        flags: 0,
        pid,
        comm: comm.clone(),
        at_ms: 0,
    };
    let mut out = Vec::new();
    let cwd = process.cwd().ok();
    for (target, op) in [
        (process.exe().ok(), AccessOp::Exec),
        (cwd.clone(), AccessOp::Chdir),
    ] {
        if let Some(target) = target {
            out.push(access(op, target.as_os_str().as_bytes()));
        }
    }
    // The name it was started by, which may be a symlink (`sh` -> `dash`) found on PATH. (Read
    // raw: an argument need not be UTF-8.)
    let argv0 = std::fs::read(proc_dir.join("cmdline"))
        .ok()
        .and_then(|c| c.split(|&b| b == 0).next().map(<[u8]>::to_vec))
        .unwrap_or_default();
    if argv0.contains(&b'/') {
        let mut a = access(AccessOp::Exec, &argv0);
        a.dir = cwd;
        out.push(a);
    } else if !argv0.is_empty() {
        for dir in search_path(&proc_dir) {
            let mut candidate = dir;
            candidate.push(b'/');
            candidate.extend_from_slice(&argv0);
            out.push(access(AccessOp::Exec, &candidate));
        }
    }
    if let Ok(maps) = process.maps() {
        let mut seen = BTreeSet::new();
        for map in maps.0 {
            let procfs::process::MMapPath::Path(path) = map.pathname else {
                continue;
            };
            let path = path.as_os_str().as_bytes();
            if path.starts_with(b"/")
                && !path.ends_with(b" (deleted)")
                && seen.insert(path.to_vec())
            {
                out.push(access(AccessOp::Open, path));
            }
        }
    }
    out
}

/// The `PATH` a process was started with (the usual default when it has none).
fn search_path(proc_dir: &Path) -> Vec<Vec<u8>> {
    const DEFAULT_PATH: &[u8] = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let environ = std::fs::read(proc_dir.join("environ")).unwrap_or_default();
    let path = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(|&b| b == b':')
        .filter(|d| d.starts_with(b"/"))
        .map(<[u8]>::to_vec)
        .collect()
}

/// The mount points other than the root, from the recording or, when no process of the
/// container could be asked, from what the engine says it mounted.
pub fn mount_points(recording: &Recording, engine_mounts: &[String]) -> BTreeSet<PathBuf> {
    match &recording.mounts {
        Some(m) => m.others.clone(),
        None => default_mount_points(engine_mounts),
    }
}

/// The mounts every container has, with the engine's volumes and bind mounts, for when no
/// process of the container can be asked.
pub fn default_mount_points(engine_mounts: &[String]) -> BTreeSet<PathBuf> {
    const DOCKER_MOUNTS: [&str; 6] = [
        "/proc",
        "/dev",
        "/sys",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
    ];
    DOCKER_MOUNTS
        .iter()
        .map(PathBuf::from)
        .chain(engine_mounts.iter().map(PathBuf::from))
        .collect()
}

/// Resolves a recording against the image it ran and makes the report (off the async
/// workers; a signal stops it).
pub fn make_report(
    recording: &Recording,
    files: &ImageFiles,
    mounts: &BTreeSet<PathBuf>,
    image: ImageRef,
    container: ContainerRef,
) -> Result<(AccessReport, ResolveStats), Interrupted> {
    let mut resolver = Resolver::new(files, mounts);
    interrupt::blocking(|| {
        for (i, access) in recording.accesses.iter().enumerate() {
            if i % 1024 == 0 {
                interrupt::check()?;
            }
            resolver.add(access);
        }
        Ok::<_, Interrupted>(())
    })?;
    let (paths, stats) = resolver.finish();
    let report = AccessReport {
        schema_version: crate::report::SCHEMA_VERSION,
        generator: AccessReport::generator(),
        image,
        containers: vec![container],
        sensor: recording.sensor.clone(),
        started_at: crate::report::rfc3339(recording.started_at),
        ended_at: crate::report::rfc3339(recording.ended_at),
        complete: recording.events.is_complete(),
        coverage: Default::default(),
        containers_omitted: 0,
        events: recording.events.clone(),
        syscalls: recording.syscalls.clone(),
        paths,
    };
    let mut report = report;
    report.update_coverage();
    Ok((report, stats))
}

/// Layer directories of the image from the container's own mount table: the bottom
/// `image_layers` lower directories of its root overlay, bottom first.
pub fn image_layer_dirs(mounts: &ContainerMounts, image_layers: usize) -> Option<Vec<PathBuf>> {
    let lower = &mounts.lower_dirs;
    if image_layers == 0 || lower.len() < image_layers {
        return None;
    }
    let dirs: Vec<PathBuf> = lower[lower.len() - image_layers..]
        .iter()
        .rev()
        .cloned()
        .collect();
    dirs.iter().all(|d| Path::new(d).is_dir()).then_some(dirs)
}

/// Whether two lists name the same directories (through symlinks such as overlay2's `l/`).
pub fn same_dirs(a: &[PathBuf], b: &[PathBuf]) -> bool {
    let canonical = |dirs: &[PathBuf]| -> Option<Vec<PathBuf>> {
        dirs.iter().map(|d| std::fs::canonicalize(d).ok()).collect()
    };
    a.len() == b.len() && canonical(a).is_some_and(|a| canonical(b) == Some(a))
}
