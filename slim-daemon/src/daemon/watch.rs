//! One watched container: who it is, what its processes used (resolved against its image as
//! events arrive, so that memory grows with the image, not with time), and its report.
use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::Arc,
    time::SystemTime,
};

use crate::{
    image::ImageFiles,
    report::{AccessReport, ContainerRef, EventCounts, ImageRef, PartialReason, SensorInfo},
    resolve::Resolver,
    runtime::Identity,
    seccomp::SyscallBits,
    sensor::Access,
};

/// Accesses kept while the image is not read yet; beyond, they are counted as over the limit.
const MAX_WAITING: usize = 65_536;

type SharedResolver = Resolver<Arc<ImageFiles>, Arc<BTreeSet<PathBuf>>>;

pub struct Watch {
    pub identity: Identity,
    /// What an earlier daemon recorded of this container (read back at start).
    previous: Option<AccessReport>,
    resolver: Option<SharedResolver>,
    /// Accesses that came before the resolver could be made.
    waiting: Vec<Access>,
    received: u64,
    over_limit: u64,
    /// Kernel events lost while it was watched: the kernel cannot tell whose they were.
    lost: u64,
    /// The syscalls its own programs made; None when the sensor cannot see them.
    syscalls: Option<SyscallBits>,
    /// Syscalls the kernel could not record while it was watched (whose, it cannot tell).
    syscalls_unrecorded: u64,
    /// Milliseconds from the sensor's start to this watch's: accesses count from here.
    offset_ms: u64,
    pub from: SystemTime,
    pub to: Option<SystemTime>,
    partial: BTreeSet<PartialReason>,
    pub running: bool,
    /// Something changed since the last flush.
    pub dirty: bool,
}

impl Watch {
    /// A new watch of `identity`, from now (`offset_ms` after the sensor started); `joined`
    /// when the container was already running; `sees_syscalls` when the sensor records them.
    pub fn new(
        identity: Identity,
        previous: Option<AccessReport>,
        offset_ms: u64,
        joined: bool,
        sees_syscalls: bool,
    ) -> Self {
        let mut partial = BTreeSet::new();
        if joined {
            partial.insert(PartialReason::StartedBeforeObserver);
        }
        Watch {
            running: identity.running,
            identity,
            previous,
            resolver: None,
            waiting: Vec::new(),
            received: 0,
            over_limit: 0,
            lost: 0,
            syscalls: sees_syscalls.then(SyscallBits::default),
            syscalls_unrecorded: 0,
            offset_ms,
            from: SystemTime::now(),
            to: None,
            partial,
            dirty: true,
        }
    }

    pub fn has_resolver(&self) -> bool {
        self.resolver.is_some()
    }

    /// Starts resolving, once the image and the container's mounts are known.
    pub fn resolve_with(&mut self, files: Arc<ImageFiles>, mounts: Arc<BTreeSet<PathBuf>>) {
        let mut resolver = Resolver::new(files, mounts);
        for access in self.waiting.drain(..) {
            resolver.add(&access);
        }
        self.resolver = Some(resolver);
        self.dirty = true;
    }

    pub fn add(&mut self, mut access: Access) {
        self.received += 1;
        self.dirty = true;
        access.at_ms = access.at_ms.saturating_sub(self.offset_ms);
        match &mut self.resolver {
            Some(resolver) => resolver.add(&access),
            None if self.waiting.len() < MAX_WAITING => self.waiting.push(access),
            None => self.over_limit += 1,
        }
    }

    /// The sensor could only start watching it once it ran (fanotify).
    pub fn joined_late(&mut self) {
        self.partial.insert(PartialReason::StartedBeforeObserver);
    }

    /// Accesses that were not kept before the container was known: its report says so.
    pub fn add_over_limit(&mut self, n: u64) {
        if n > 0 {
            self.over_limit = self.over_limit.saturating_add(n);
            self.dirty = true;
        }
    }

    pub fn add_lost(&mut self, lost: u64) {
        self.lost = self.lost.saturating_add(lost);
        self.dirty = true;
    }

    /// What the kernel recorded of one of its cgroups so far (a cumulative set).
    pub fn add_syscalls(&mut self, bits: &SyscallBits) {
        if let Some(mine) = &mut self.syscalls {
            let before = *mine;
            mine.add(&bits.native, &bits.compat);
            self.dirty |= *mine != before;
        }
    }

    pub fn add_syscalls_unrecorded(&mut self, n: u64) {
        self.syscalls_unrecorded = self.syscalls_unrecorded.saturating_add(n);
        self.dirty = true;
    }

    pub fn restarted(&mut self, identity: Identity) {
        self.identity = identity;
        self.running = true;
        self.to = None;
        self.dirty = true;
    }

    pub fn exited(&mut self) {
        self.running = false;
        self.to = Some(SystemTime::now());
        self.dirty = true;
    }

    /// The daemon stops while the container runs on.
    pub fn abandoned(&mut self) {
        self.partial.insert(PartialReason::ObserverStoppedFirst);
        self.to = Some(SystemTime::now());
        self.dirty = true;
    }

    /// The report as it stands: this run's paths together with an earlier daemon's.
    pub fn report(&self, sensor: &SensorInfo) -> AccessReport {
        let to = self.to.unwrap_or_else(SystemTime::now);
        let events = EventCounts {
            received: self.received,
            lost: self.lost,
            over_limit: self.over_limit,
            ..EventCounts::default()
        };
        let mut report = AccessReport {
            schema_version: crate::report::SCHEMA_VERSION,
            generator: AccessReport::generator(),
            image: ImageRef {
                reference: self.identity.image_ref.clone(),
                id: self.identity.image_id.clone(),
            },
            containers: vec![ContainerRef::watched(
                &self.identity.id,
                &self.identity.name,
                self.identity.labels.clone(),
                "daemon",
                self.from,
                to,
            )],
            containers_omitted: 0,
            sensor: sensor.clone(),
            started_at: crate::report::rfc3339(self.from),
            ended_at: crate::report::rfc3339(to),
            complete: events.is_complete(),
            coverage: Default::default(),
            events,
            syscalls: self
                .syscalls
                .map(|bits| bits.named(self.syscalls_unrecorded)),
            paths: self
                .resolver
                .as_ref()
                .map(|r| r.paths().clone())
                .unwrap_or_default(),
        };
        for reason in &self.partial {
            report.mark_partial(*reason);
        }
        // Accesses never resolved (the image could not be read) are missing from the paths.
        if !self.waiting.is_empty() {
            report.events.over_limit += self.waiting.len() as u64;
            report.complete = false;
        }
        report.update_coverage();
        match &self.previous {
            Some(previous) => AccessReport::merge(vec![
                ("earlier".into(), previous.clone()),
                ("now".into(), report.clone()),
            ])
            .unwrap_or(report),
            None => report,
        }
    }
}

/// The reports of an image's containers and its archive, merged.
pub fn image_report(
    archive: Option<&AccessReport>,
    containers: &HashMap<String, AccessReport>,
) -> Option<AccessReport> {
    let mut parts: Vec<(String, AccessReport)> = containers
        .iter()
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect();
    if let Some(a) = archive {
        parts.push(("archive".into(), a.clone()));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    if parts.is_empty() {
        return None;
    }
    AccessReport::merge(parts).ok()
}
