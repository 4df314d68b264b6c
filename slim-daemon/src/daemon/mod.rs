//! `slimd daemon`: one sensor for every container of the host; labelled containers are
//! watched from their first instruction, each with its own resolver and report, and the
//! reports of each image are merged as its containers come and go.
//!
//! From the first instruction: the cgroups under which the runtime makes its containers'
//! cgroups are watched in the kernel, so a new container's events flow from its first
//! syscall, tagged with its own cgroup. The daemon finds the container a new cgroup belongs
//! to (by the cgroup's name), asks the runtime for its labels, and then keeps its events, or
//! drops them and has the kernel ignore that cgroup. The syscall program is attached only
//! while a labelled container exists.
pub mod api;
pub mod metrics;
pub mod selector;
pub mod store;
pub mod watch;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;

use self::{
    api::{ApiState, ImageSummary, ReportSummary, Snapshot},
    metrics::Metrics,
    selector::Selector,
    store::Store,
    watch::{Watch, image_report},
};
use crate::{
    image::ImageFiles,
    interrupt,
    report::{AccessReport, SensorInfo},
    resolve::mountinfo::{self, ContainerMounts},
    runtime::{
        Identity, Lifecycle, Runtime, RuntimeError, RuntimeEvent,
        cgroup::{Cgroup, CgroupFs},
    },
    sensor::{Access, Sensor, SensorChoice, SensorEvent},
    session,
};

/// Events of cgroups not identified yet, kept per cgroup and over all.
const MAX_UNKNOWN_EVENTS: usize = 4096;
const MAX_UNKNOWN_CGROUPS: usize = 1024;
/// How long the syscall set of a cgroup nobody has named yet is kept once the cgroup is gone.
const UNATTRIBUTED_GRACE: Duration = Duration::from_secs(300);
/// Containers remembered as not selected (so they are counted once).
const MAX_NOT_SELECTED: usize = 65_536;
/// How long the syscall program stays attached once nothing is watched.
const DETACH_GRACE: Duration = Duration::from_secs(5);
/// The longest pause between attempts to reach the runtime.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct DaemonOptions {
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub selector: Selector,
    pub flush_interval: Duration,
    pub sensor: SensorChoice,
    pub ring_kb: u32,
}

/// Why serving one runtime connection ended.
enum Ended {
    /// SIGTERM or SIGINT.
    Signal,
    /// The runtime went away.
    RuntimeLost(String),
}

/// What a cgroup is to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// A cgroup of this selected container.
    Container(String),
    /// Not recorded (an unselected container, or not a container).
    Ignored,
}

pub struct Daemon {
    options: DaemonOptions,
    sensor: Sensor,
    sensor_info: SensorInfo,
    cgroupfs: CgroupFs,
    store: Arc<Store>,
    api: Arc<ApiState>,
    metrics: Arc<Metrics>,
    /// Selected containers (running, or exited and not removed), by id.
    watches: HashMap<String, Watch>,
    /// Cgroups known, and what they are.
    slots: HashMap<u64, Slot>,
    /// Events of cgroups whose container is being asked about.
    unknown: HashMap<u64, Vec<Access>>,
    /// Events of those cgroups beyond `MAX_UNKNOWN_EVENTS`: not kept, and said so in the
    /// report of their container once it is known.
    unknown_dropped: HashMap<u64, u64>,
    /// (cgroup, container) to ask the runtime about after the current batch.
    lookups: Vec<(u64, String)>,
    not_selected: HashSet<String>,
    /// Images read for resolving, shared by their containers.
    images: HashMap<String, Arc<ImageFiles>>,
    /// The merged reports of removed containers, by image id.
    archives: HashMap<String, AccessReport>,
    /// The last report written of each container, by id.
    flushed: HashMap<String, AccessReport>,
    dirty_images: BTreeSet<String>,
    /// When the sensor started: accesses count from here.
    sensor_started: Instant,
    /// Since when the syscall program is attached, if it is.
    attached_since: Option<std::time::SystemTime>,
    /// Since when nothing is watched while the program is still attached: it is detached
    /// after `DETACH_GRACE`, so that a burst of new containers does not find it detached.
    idle_since: Option<Instant>,
    lost_seen: u64,
    syscalls_unrecorded_seen: u64,
    /// Cgroups with a syscall set but no slot yet, and since when.
    unattributed: HashMap<u64, Instant>,
    batch: Vec<SensorEvent>,
}

/// Runs the daemon until SIGTERM or SIGINT. `connect` reaches the runtime; it is called again
/// whenever the runtime goes away.
pub async fn run<R: Runtime>(
    options: DaemonOptions,
    connect: impl AsyncFn() -> Result<R, RuntimeError>,
) -> anyhow::Result<()> {
    let store = Arc::new(Store::open(&options.state_dir)?);
    let listener = std::net::TcpListener::bind(options.listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {}: {e}; choose another address with --listen",
            options.listen
        )
    })?;
    listener.set_nonblocking(true)?;
    if !options.listen.ip().is_loopback() {
        tracing::warn!(
            "serving reports on {} without authentication: keep it node-local or cluster-internal",
            options.listen
        );
    }
    let sensor = Sensor::load_detached(options.sensor, options.ring_kb, |e| {
        tracing::warn!("eBPF is not available ({e}); watching with fanotify")
    })?;
    let metrics = Arc::new(Metrics::new(sensor.kind()));
    let api = Arc::new(ApiState {
        store: store.clone(),
        metrics: metrics.clone(),
        snapshot: RwLock::new(Snapshot::default()),
        ready: AtomicBool::new(false),
    });
    let router = api::router(api.clone());
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the HTTP API stopped: {e}");
        }
    });
    tracing::info!(
        "slimd daemon: watching containers labelled {}, reports in {}, API on http://{}",
        options.selector,
        options.state_dir.display(),
        options.listen
    );
    let mut daemon = Daemon {
        sensor_info: SensorInfo {
            kind: sensor.kind().to_owned(),
            blind_spots: sensor.blind_spots(),
        },
        sensor,
        cgroupfs: CgroupFs::open()?,
        store,
        api,
        metrics,
        watches: HashMap::new(),
        slots: HashMap::new(),
        unknown: HashMap::new(),
        unknown_dropped: HashMap::new(),
        lookups: Vec::new(),
        not_selected: HashSet::new(),
        images: HashMap::new(),
        archives: HashMap::new(),
        flushed: HashMap::new(),
        dirty_images: BTreeSet::new(),
        sensor_started: Instant::now(),
        attached_since: None,
        idle_since: None,
        lost_seen: 0,
        syscalls_unrecorded_seen: 0,
        unattributed: HashMap::new(),
        batch: Vec::new(),
        options,
    };
    let loaded = daemon.store.load();
    daemon.archives = loaded.archives;
    let mut previous = loaded.containers;
    daemon.publish();
    let mut backoff = Duration::from_secs(1);
    loop {
        let runtime = match daemon.wait_for(&connect, &mut backoff).await {
            Some(r) => r,
            None => break,
        };
        backoff = Duration::from_secs(1);
        // Events from before the listing are replayed after it: none falls in between.
        let listed = std::time::SystemTime::now();
        if let Err(e) = daemon.resume(&runtime, &mut previous).await {
            tracing::warn!("cannot list containers: {e}; trying again");
            continue;
        }
        daemon.api.ready.store(true, Ordering::Release);
        let ended = daemon.serve(&runtime, listed).await;
        daemon.api.ready.store(false, Ordering::Release);
        match ended {
            Ended::Signal => break,
            Ended::RuntimeLost(why) => {
                tracing::warn!("lost the {} runtime ({why}); reconnecting", runtime.name());
            }
        }
    }
    daemon.shutdown();
    Ok(())
}

impl Daemon {
    /// Reaches the runtime, trying again with a growing pause, while the sensor is drained;
    /// None on a signal.
    async fn wait_for<R: Runtime>(
        &mut self,
        connect: &impl AsyncFn() -> Result<R, RuntimeError>,
        backoff: &mut Duration,
    ) -> Option<R> {
        let mut said = false;
        loop {
            match connect().await {
                Ok(runtime) => {
                    if said {
                        tracing::info!("reached the {} runtime", runtime.name());
                    }
                    return Some(runtime);
                }
                Err(e) if !said => {
                    tracing::warn!("waiting for the container runtime: {e}");
                    said = true;
                }
                Err(e) => tracing::debug!("still waiting for the container runtime: {e}"),
            }
            let pause = tokio::time::sleep(*backoff);
            tokio::pin!(pause);
            *backoff = (*backoff * 2).min(MAX_BACKOFF);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    _ = interrupt::interrupted() => return None,
                    res = self.sensor.next_batch(&mut self.batch) => {
                        if let Err(e) = res {
                            tracing::error!("reading the sensor: {e}");
                        }
                        // Known containers go on being recorded; the rest waits in `unknown`.
                        self.absorb(None::<&R>);
                    }
                }
            }
        }
    }

    /// Takes in what the runtime has now: containers that started or ended meanwhile,
    /// reports of containers removed meanwhile, and the cgroups to watch.
    async fn resume<R: Runtime>(
        &mut self,
        runtime: &R,
        previous: &mut HashMap<String, AccessReport>,
    ) -> Result<(), RuntimeError> {
        // Attached while the daemon takes stock: a container that starts meanwhile is seen
        // from its first instruction (its events wait in the ring buffer).
        self.attach(true);
        if let Sensor::Ebpf(ebpf) = &mut self.sensor {
            for parent in runtime.cgroup_parents() {
                match self.cgroupfs.at(&parent) {
                    Ok(cgroup) => {
                        if let Err(e) = ebpf.watch(&cgroup) {
                            tracing::warn!("cannot watch cgroup {}: {e}", parent.display());
                        }
                    }
                    Err(_) => tracing::debug!("no cgroup {} yet", parent.display()),
                }
            }
        }
        let list = runtime.list().await?;
        let known: HashSet<&str> = list.iter().map(|c| c.id.as_str()).collect();
        // Containers removed while nobody watched: their reports go to their image's archive.
        let gone: Vec<String> = previous
            .keys()
            .chain(self.watches.keys())
            .filter(|id| !known.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            let report = match self.watches.remove(&id) {
                Some(w) => Some(w.report(&self.sensor_info)),
                None => previous.remove(&id),
            };
            if let Some(report) = report {
                self.archive(&id, report);
            }
        }
        for identity in list {
            let was_running = self.watches.get(&identity.id).is_some_and(|w| w.running);
            if was_running && !identity.running {
                self.exited(&identity.id);
            }
            self.take_in(runtime, identity, previous, true).await;
        }
        // Reports of exited containers that are no longer selected stay as they are.
        for (id, report) in previous.drain() {
            self.dirty_images.insert(report.image.id.clone());
            self.flushed.insert(id, report);
        }
        self.update_attachment();
        self.flush();
        Ok(())
    }

    /// Serves one connection to the runtime, until a signal or until the runtime is lost.
    async fn serve<R: Runtime>(&mut self, runtime: &R, since: std::time::SystemTime) -> Ended {
        let mut events = runtime.events(since);
        let mut tick = tokio::time::interval(self.options.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        housekeeping.tick().await;
        loop {
            tokio::select! {
                _ = interrupt::interrupted() => return Ended::Signal,
                res = self.sensor.next_batch(&mut self.batch) => {
                    if let Err(e) = res {
                        tracing::error!("reading the sensor: {e}");
                    }
                    self.absorb(Some(runtime));
                    self.look_up(runtime).await;
                }
                event = events.next() => match event {
                    Some(Ok(event)) => self.on_event(runtime, event).await,
                    Some(Err(e)) => return Ended::RuntimeLost(e.to_string()),
                    None => return Ended::RuntimeLost("its event stream ended".into()),
                },
                _ = tick.tick() => self.flush(),
                _ = housekeeping.tick() => self.detach_when_idle(),
            }
        }
    }

    /// Sorts the batch's events to their containers. Events of cgroups not known yet are kept
    /// aside, and their containers looked up (without a runtime: kept aside only).
    fn absorb<R: Runtime>(&mut self, runtime: Option<&R>) {
        let mut batch = std::mem::take(&mut self.batch);
        for event in batch.drain(..) {
            let Some(access) = event.access else { continue };
            let cgroup = event.cgroup_id;
            if !self.slots.contains_key(&cgroup)
                && let Some(runtime) = runtime
            {
                self.identify(runtime, cgroup);
            }
            match self.slots.get(&cgroup) {
                Some(Slot::Container(id)) => {
                    if let Some(watch) = self.watches.get_mut(id) {
                        watch.add(access);
                        self.metrics.events_received.inc();
                    }
                }
                Some(Slot::Ignored) => {
                    self.metrics.events_unlabelled.inc();
                }
                None => self.keep_unknown(cgroup, access),
            }
        }
        self.batch = batch;
    }

    fn keep_unknown(&mut self, cgroup: u64, access: Access) {
        if !self.unknown.contains_key(&cgroup) && self.unknown.len() >= MAX_UNKNOWN_CGROUPS {
            self.metrics.events_unlabelled.inc();
            return;
        }
        let kept = self.unknown.entry(cgroup).or_default();
        if kept.len() < MAX_UNKNOWN_EVENTS {
            kept.push(access);
        } else {
            *self.unknown_dropped.entry(cgroup).or_default() += 1;
        }
    }

    /// What a new cgroup is: a cgroup of a selected container, of an unselected one, of a
    /// container yet to be asked about (kept for [`Self::look_up`]), or not a container's.
    fn identify<R: Runtime>(&mut self, runtime: &R, cgroup: u64) {
        // A short-lived container's cgroup may be gone by the time its events are read: the
        // kernel kept its name.
        let Some(path) = self
            .cgroupfs
            .path_of(cgroup)
            .or_else(|| self.remembered_path(cgroup))
        else {
            tracing::debug!("cgroup {cgroup} is gone before it was identified");
            return;
        };
        tracing::debug!("new cgroup {cgroup}: {}", path.display());
        let Some(id) = runtime.container_of_cgroup(&path) else {
            self.ignore_cgroup(cgroup, &path);
            return;
        };
        if self.watches.contains_key(&id) {
            self.slots.insert(cgroup, Slot::Container(id));
        } else if self.not_selected.contains(&id) {
            self.ignore_cgroup(cgroup, &path);
        } else if !self.lookups.iter().any(|(c, _)| *c == cgroup) {
            self.lookups.push((cgroup, id));
        }
    }

    /// The path of a cgroup that is gone, from the name the kernel kept and the watched
    /// ancestor it was seen through.
    fn remembered_path(&self, cgroup: u64) -> Option<PathBuf> {
        let Sensor::Ebpf(ebpf) = &self.sensor else {
            return None;
        };
        let (ancestor, name) = ebpf.cgroup_name(cgroup)?;
        Some(self.cgroupfs.path_of(ancestor)?.join(name))
    }

    /// Forgets ignored cgroups that are gone (the kernel's entries for them too).
    fn prune_ignored(&mut self) {
        let gone: Vec<u64> = self
            .slots
            .iter()
            .filter(|(c, slot)| **slot == Slot::Ignored && self.cgroupfs.path_of(**c).is_none())
            .map(|(c, _)| *c)
            .collect();
        for cgroup in gone {
            self.slots.remove(&cgroup);
            if let Sensor::Ebpf(ebpf) = &mut self.sensor
                && let Err(e) = ebpf.forget(cgroup)
            {
                tracing::debug!("forgetting cgroup {cgroup}: {e}");
            }
        }
    }

    /// Asks the runtime about the containers of new cgroups.
    async fn look_up<R: Runtime>(&mut self, runtime: &R) {
        for (cgroup, id) in std::mem::take(&mut self.lookups) {
            match runtime.identity(&id).await {
                Ok(Some(identity)) => {
                    let mut none = HashMap::new();
                    self.take_in(runtime, identity, &mut none, false).await;
                    // The cgroup is the container's (its name says so), whether or not the
                    // container still runs.
                    if self.watches.contains_key(&id) {
                        self.slots.insert(cgroup, Slot::Container(id.clone()));
                    } else if let Some(path) = self.cgroupfs.path_of(cgroup) {
                        self.ignore_cgroup(cgroup, &path);
                    }
                    self.take_unknown(cgroup);
                }
                Ok(None) => {
                    self.unknown.remove(&cgroup);
                    self.unknown_dropped.remove(&cgroup);
                }
                Err(e) => {
                    tracing::debug!("asking about container {}: {e}", short(&id));
                }
            }
        }
    }

    /// Moves the kept events of a cgroup that is now known to its container.
    fn take_unknown(&mut self, cgroup: u64) {
        let Some(events) = self.unknown.remove(&cgroup) else {
            return;
        };
        let dropped = self.unknown_dropped.remove(&cgroup).unwrap_or(0);
        match self.slots.get(&cgroup) {
            Some(Slot::Container(id)) => {
                if let Some(watch) = self.watches.get_mut(id) {
                    watch.add_over_limit(dropped);
                    for access in events {
                        watch.add(access);
                        self.metrics.events_received.inc();
                    }
                }
            }
            _ => {
                self.metrics.events_unlabelled.inc_by(events.len() as u64);
            }
        }
    }

    fn ignore_cgroup(&mut self, cgroup: u64, path: &std::path::Path) {
        self.slots.insert(cgroup, Slot::Ignored);
        self.unknown_dropped.remove(&cgroup);
        if let Some(events) = self.unknown.remove(&cgroup) {
            self.metrics.events_unlabelled.inc_by(events.len() as u64);
        }
        if let Sensor::Ebpf(ebpf) = &mut self.sensor {
            let level = path.components().count().saturating_sub(1) as u32;
            if let Err(e) = ebpf.ignore(cgroup, level) {
                tracing::debug!(
                    "cannot have the kernel ignore cgroup {}: {e}",
                    path.display()
                );
            }
        }
    }

    /// An unselected running container: the kernel stops sending its events.
    fn ignore_container(&mut self, identity: &Identity) {
        let Some(pid) = identity.pid else { return };
        if let Ok(cgroup) = Cgroup::of_process(self.cgroupfs.root(), pid) {
            let path = std::path::Path::new("/").join(
                cgroup
                    .dir
                    .strip_prefix(self.cgroupfs.root())
                    .unwrap_or(&cgroup.dir),
            );
            self.ignore_cgroup(cgroup.id, &path);
        }
    }

    async fn on_event<R: Runtime>(&mut self, runtime: &R, event: RuntimeEvent) {
        // A selected container about to start: the syscall program goes on at once, before
        // the runtime is asked anything, so that its first instruction is seen.
        if event.what == Lifecycle::Created
            && event
                .labels
                .as_ref()
                .is_some_and(|l| self.options.selector.matches(l))
        {
            self.attach(true);
        }
        match event.what {
            Lifecycle::Created | Lifecycle::Started => match runtime.identity(&event.id).await {
                Ok(Some(identity)) => {
                    let mut none = HashMap::new();
                    self.take_in(runtime, identity, &mut none, false).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("asking about container {}: {e}", short(&event.id)),
            },
            Lifecycle::Exited => {
                // What is still in the ring buffer belongs to its life.
                self.sensor.drain(&mut self.batch);
                self.absorb(Some(runtime));
                self.look_up(runtime).await;
                self.exited(&event.id);
                self.flush();
            }
            Lifecycle::Removed => {
                self.not_selected.remove(&event.id);
                if let Some(watch) = self.watches.remove(&event.id) {
                    let report = watch.report(&self.sensor_info);
                    self.archive(&event.id, report);
                    self.update_attachment();
                    self.flush();
                }
            }
        }
    }

    fn exited(&mut self, id: &str) {
        let Some(watch) = self.watches.get_mut(id) else {
            return;
        };
        watch.exited();
        tracing::info!("container {} ({}) exited", watch.identity.name, short(id));
        // Its syscall sets are taken in, and the kernel's go (the watch no longer runs).
        self.collect_syscalls();
        // Its cgroups are gone with it (a restart makes new ones).
        let mine = Slot::Container(id.to_owned());
        let cgroups: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, slot)| **slot == mine)
            .map(|(c, _)| *c)
            .collect();
        for cgroup in cgroups {
            self.slots.remove(&cgroup);
            match &mut self.sensor {
                Sensor::Ebpf(ebpf) => {
                    if let Err(e) = ebpf.forget(cgroup) {
                        tracing::debug!("forgetting cgroup {cgroup}: {e}");
                    }
                }
                Sensor::Fanotify(fanotify) => fanotify.unmark(cgroup),
            }
        }
        self.drop_unused_images();
    }

    /// A removed container's report: into its image's archive; its own file goes.
    fn archive(&mut self, id: &str, report: AccessReport) {
        let image = report.image.id.clone();
        // Archives are kept by image id, so the merge is always of one image.
        let archive = match self.archives.remove(&image) {
            Some(a) => AccessReport::merge(vec![("archive".into(), a), (id.to_owned(), report)])
                .expect("an archive and a report of its own image merge"),
            None => report,
        };
        match self.store.write_archive(&archive) {
            Ok(()) => {
                self.metrics.reports_written.inc();
                self.store.remove_container(id);
                self.flushed.remove(id);
            }
            Err(e) => {
                self.metrics.flush_errors.inc();
                tracing::error!("{e}");
            }
        }
        self.archives.insert(image.clone(), archive);
        self.dirty_images.insert(image);
    }
}

impl Daemon {
    /// A container the runtime lists or reports: watched when selected.
    async fn take_in<R: Runtime>(
        &mut self,
        runtime: &R,
        identity: Identity,
        previous: &mut HashMap<String, AccessReport>,
        at_start: bool,
    ) {
        if !self.options.selector.matches(&identity.labels) {
            if self.not_selected.len() < MAX_NOT_SELECTED
                && self.not_selected.insert(identity.id.clone())
            {
                self.metrics.containers_unlabelled.inc();
            }
            if identity.running {
                self.ignore_container(&identity);
            }
            return;
        }
        let id = identity.id.clone();
        match self.watches.get_mut(&id) {
            Some(watch) => {
                if identity.running && !watch.running {
                    watch.restarted(identity.clone());
                }
            }
            None => {
                // At start, a running container may have been running before the daemon
                // watched.
                let joined = at_start
                    && identity.running
                    && match (identity.started, self.attached_since) {
                        (Some(started), Some(since)) => started < since,
                        _ => true,
                    };
                if joined {
                    tracing::info!(
                        "watching {} ({}), which was already running: its report is partial",
                        identity.name,
                        short(&id)
                    );
                } else {
                    tracing::info!("watching {} ({})", identity.name, short(&id));
                }
                let offset = self.sensor_started.elapsed().as_millis() as u64;
                let sees_syscalls = matches!(self.sensor, Sensor::Ebpf(_));
                let mut watch = Watch::new(
                    identity.clone(),
                    previous.remove(&id),
                    offset,
                    joined,
                    sees_syscalls,
                );
                // fanotify can mark a container's file system only once it is mounted.
                if identity.running && !joined && matches!(self.sensor, Sensor::Fanotify(_)) {
                    watch.joined_late();
                }
                self.watches.insert(id.clone(), watch);
                self.update_attachment();
                if joined {
                    self.snapshot_running(&identity);
                }
            }
        }
        if identity.running {
            self.follow(runtime, &identity).await;
        } else {
            // Gone before it could be followed: its events are resolved all the same.
            self.make_resolver(runtime, &identity, None).await;
        }
    }

    /// Records what a container that was already running has now: its processes'
    /// executables, working directories and mapped files.
    fn snapshot_running(&mut self, identity: &Identity) {
        let Some(pid) = identity.pid else { return };
        let Ok(cgroup) = Cgroup::of_process(self.cgroupfs.root(), pid) else {
            return;
        };
        let Ok(procs) = std::fs::read_to_string(cgroup.dir.join("cgroup.procs")) else {
            return;
        };
        let Some(watch) = self.watches.get_mut(&identity.id) else {
            return;
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            for access in session::running_process_accesses(pid) {
                watch.add(access);
            }
        }
    }

    /// A running selected container: its cgroup is tied to its watch, its earlier events are
    /// taken in, and its resolver is made.
    async fn follow<R: Runtime>(&mut self, runtime: &R, identity: &Identity) {
        let (pid, cgroup) = match identity
            .pid
            .map(|pid| (pid, Cgroup::of_process(self.cgroupfs.root(), pid)))
        {
            Some((pid, Ok(c))) => (pid, c),
            gone => {
                if let Some((_, Err(e))) = gone {
                    tracing::debug!("container {} is gone already: {e}", short(&identity.id));
                }
                // Its events (kept, or still to come through its cgroup's name) are resolved
                // all the same.
                self.make_resolver(runtime, identity, None).await;
                return;
            }
        };
        tracing::debug!("following {} in cgroup {}", short(&identity.id), cgroup.id);
        self.slots
            .insert(cgroup.id, Slot::Container(identity.id.clone()));
        let watched = match &mut self.sensor {
            // Also for a container whose cgroup is not below the runtime's usual parents.
            Sensor::Ebpf(ebpf) => ebpf.watch(&cgroup),
            Sensor::Fanotify(fanotify) => {
                fanotify.mark(std::path::Path::new(&format!("/proc/{pid}/root")), &cgroup)
            }
        };
        if let Err(e) = watched {
            tracing::warn!("cannot watch container {}: {e}", short(&identity.id));
        }
        self.take_unknown(cgroup.id);
        self.make_resolver(runtime, identity, Some(pid)).await;
    }

    async fn make_resolver<R: Runtime>(
        &mut self,
        runtime: &R,
        identity: &Identity,
        pid: Option<u32>,
    ) {
        if self
            .watches
            .get(&identity.id)
            .is_none_or(Watch::has_resolver)
        {
            return;
        }
        let files = match self.images.get(&identity.image_id) {
            Some(files) => files.clone(),
            None => match runtime.image(&identity.image_id).await {
                Ok(image) => {
                    let files = Arc::new(image.files);
                    self.images.insert(identity.image_id.clone(), files.clone());
                    files
                }
                Err(e) => {
                    tracing::error!(
                        "cannot read image {} of container {}: {e}; its accesses wait",
                        identity.image_ref,
                        short(&identity.id)
                    );
                    return;
                }
            },
        };
        let others = match pid.map(mountinfo::read_pid) {
            Some(Ok(table)) => ContainerMounts::from_mounts(&table, None).others,
            _ => session::default_mount_points(&identity.mount_destinations),
        };
        if let Some(watch) = self.watches.get_mut(&identity.id) {
            interrupt::blocking(|| watch.resolve_with(files, Arc::new(others)));
        }
    }

    /// Images no running container needs any more are let go.
    fn drop_unused_images(&mut self) {
        let needed: HashSet<&str> = self
            .watches
            .values()
            .filter(|w| w.running)
            .map(|w| w.identity.image_id.as_str())
            .collect();
        self.images.retain(|id, _| needed.contains(id.as_str()));
    }

    /// The syscall program runs only while a selected container exists (running or not: a
    /// stopped one may be started again, and must be seen from its first instruction).
    fn update_attachment(&mut self) {
        self.metrics
            .containers_watched
            .set(self.watches.len() as i64);
        if self.watches.is_empty() {
            self.idle_since.get_or_insert_with(Instant::now);
        } else {
            self.idle_since = None;
            self.attach(true);
        }
    }

    /// Detaches the syscall program once nothing has been watched for `DETACH_GRACE`.
    fn detach_when_idle(&mut self) {
        if self.watches.is_empty() && self.idle_since.is_some_and(|t| t.elapsed() >= DETACH_GRACE) {
            self.attach(false);
        }
    }

    fn attach(&mut self, wanted: bool) {
        let Sensor::Ebpf(ebpf) = &mut self.sensor else {
            return;
        };
        let result = if wanted { ebpf.attach() } else { ebpf.detach() };
        if let Err(e) = result {
            tracing::error!("sensor: {e}");
        }
        match (ebpf.is_attached(), self.attached_since) {
            (true, None) => self.attached_since = Some(std::time::SystemTime::now()),
            (false, Some(_)) => self.attached_since = None,
            _ => {}
        }
        self.metrics
            .syscall_program_attached
            .set(i64::from(ebpf.is_attached()));
    }

    /// Kernel counters: what was lost since the last look is marked on every running watch
    /// (the kernel cannot tell whose it was).
    fn count_lost(&mut self) {
        let Ok(counters) = self.sensor.counters() else {
            return;
        };
        self.metrics.set_lost(&counters.lost_per_cpu);
        self.metrics
            .events_deduplicated
            .set(i64::try_from(counters.deduplicated).unwrap_or(i64::MAX));
        let lost = counters.lost();
        if lost > self.lost_seen {
            let delta = lost - self.lost_seen;
            tracing::warn!(
                "{delta} kernel events were lost; the running containers' reports are incomplete"
            );
            for watch in self.watches.values_mut().filter(|w| w.running) {
                watch.add_lost(delta);
            }
        }
        self.lost_seen = lost;
        if counters.syscalls_unrecorded > self.syscalls_unrecorded_seen {
            let delta = counters.syscalls_unrecorded - self.syscalls_unrecorded_seen;
            tracing::warn!(
                "{delta} syscalls could not be recorded; the running containers' syscall sets may miss some"
            );
            for watch in self.watches.values_mut().filter(|w| w.running) {
                watch.add_syscalls_unrecorded(delta);
            }
        }
        self.syscalls_unrecorded_seen = counters.syscalls_unrecorded;
    }

    /// Takes the kernel's syscall sets into the watches of their cgroups' containers. Sets of
    /// ignored cgroups, and of cgroups gone before anyone could tell whose they were, go.
    fn collect_syscalls(&mut self) {
        let Sensor::Ebpf(ebpf) = &mut self.sensor else {
            return;
        };
        let now = Instant::now();
        for (cgroup, _, bits) in ebpf.syscall_sets() {
            match self.slots.get(&cgroup) {
                Some(Slot::Container(id)) => {
                    if let Some(watch) = self.watches.get_mut(id) {
                        watch.add_syscalls(&bits);
                        // Named only after it exited: the set is taken in, the kernel's goes.
                        if !watch.running {
                            ebpf.forget_syscalls(cgroup);
                        }
                    }
                }
                Some(Slot::Ignored) => ebpf.forget_syscalls(cgroup),
                // Not known yet: its path events may still be on their way (a short-lived
                // container, read late), so its set waits for them, for a while.
                None => {
                    let since = *self.unattributed.entry(cgroup).or_insert(now);
                    if now.duration_since(since) > UNATTRIBUTED_GRACE
                        && self.cgroupfs.path_of(cgroup).is_none()
                    {
                        ebpf.forget_syscalls(cgroup);
                        self.unattributed.remove(&cgroup);
                    }
                    continue;
                }
            }
            self.unattributed.remove(&cgroup);
        }
    }

    /// Writes every report that changed, and the merged report of each image that did.
    fn flush(&mut self) {
        self.count_lost();
        self.collect_syscalls();
        self.prune_ignored();
        let sensor = self.sensor_info.clone();
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        interrupt::blocking(|| {
            for (id, watch) in self.watches.iter_mut().filter(|(_, w)| w.dirty) {
                let report = watch.report(&sensor);
                match store.write_container(id, &report) {
                    Ok(()) => {
                        metrics.reports_written.inc();
                        watch.dirty = false;
                    }
                    Err(e) => {
                        metrics.flush_errors.inc();
                        tracing::error!("{e}");
                    }
                }
                self.dirty_images.insert(report.image.id.clone());
                self.flushed.insert(id.clone(), report);
            }
            for image in std::mem::take(&mut self.dirty_images) {
                let containers: HashMap<String, AccessReport> = self
                    .flushed
                    .iter()
                    .filter(|(_, r)| r.image.id == image)
                    .map(|(id, r)| (id.clone(), r.clone()))
                    .collect();
                let Some(merged) = image_report(self.archives.get(&image), &containers) else {
                    continue;
                };
                match store.write_image(&merged) {
                    Ok(()) => {
                        metrics.reports_written.inc();
                    }
                    Err(e) => {
                        metrics.flush_errors.inc();
                        tracing::error!("{e}");
                        self.dirty_images.insert(image);
                    }
                }
            }
        });
        self.publish();
    }

    /// What the API lists, from what was flushed.
    fn publish(&self) {
        let mut reports: Vec<ReportSummary> = self
            .flushed
            .iter()
            .map(|(id, r)| ReportSummary::of(r, self.watches.get(id).is_some_and(|w| w.running)))
            .collect();
        reports.sort_by(|a, b| a.container.cmp(&b.container));
        let image_ids: BTreeSet<&String> = self
            .flushed
            .values()
            .map(|r| &r.image.id)
            .chain(self.archives.keys())
            .collect();
        let images = image_ids
            .into_iter()
            .filter_map(|image| {
                let containers: HashMap<String, AccessReport> = self
                    .flushed
                    .iter()
                    .filter(|(_, r)| &r.image.id == image)
                    .map(|(id, r)| (id.clone(), r.clone()))
                    .collect();
                image_report(self.archives.get(image), &containers).map(|m| ImageSummary::of(&m))
            })
            .collect();
        if let Ok(mut snapshot) = self.api.snapshot.write() {
            *snapshot = Snapshot { reports, images };
        }
    }

    /// SIGTERM or SIGINT: every open report is written, marked partial where its container
    /// runs on.
    fn shutdown(&mut self) {
        self.sensor.drain(&mut self.batch);
        self.absorb(None::<&crate::runtime::Docker>);
        for watch in self.watches.values_mut().filter(|w| w.running) {
            watch.abandoned();
        }
        self.flush();
        if let Sensor::Ebpf(ebpf) = &mut self.sensor {
            let _ = ebpf.detach();
        }
        tracing::info!(
            "slimd daemon stopped; {} report(s) written",
            self.watches.len()
        );
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
