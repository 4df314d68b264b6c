//! The access report: which paths of an image a workload used, and how. Versioned JSON,
//! written atomically, merged by union.
use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    fmt::Write as _,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{fsutil, interrupt, seccomp::Syscalls};

/// An error with its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(&format!(": {said}"));
        }
        cause = c.source();
    }
    text
}

/// The schema version this slimd writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// A report larger than this is refused (one of a million paths takes about 300 MB).
const MAX_REPORT_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read report {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not a slimd access report: {1}")]
    NotAReport(PathBuf, String),
    #[error(
        "{0} has report schema version {1}, but this slimd reads version {SCHEMA_VERSION}; re-record it with this slimd"
    )]
    Version(PathBuf, u64),
    #[error("cannot write report {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot fetch report {0}: {1}")]
    Fetch(String, String),
    #[error(
        "reports of different images cannot be merged: {0} is of image {1}, {2} is of image {3}"
    )]
    DifferentImages(String, String, String, String),
}

/// How a workload used a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Use {
    /// Opened (read, written or mapped).
    Open,
    /// A directory opened for reading its entries.
    List,
    /// Executed.
    Exec,
    /// Loaded by the kernel for an executable: ELF interpreter or `#!` interpreter.
    Interpreter,
    /// Metadata only: stat, access, xattrs, statfs. Its existence matters.
    Stat,
    Readlink,
    Chdir,
    /// Renamed, removed, re-moded or otherwise changed at run time.
    Modify,
    /// A symlink passed through on the way to another path.
    Follow,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The reference the user gave (`app:1.0`) or the id.
    pub reference: String,
    /// `sha256:<hex>` of the image config.
    pub id: String,
}

/// A container that contributed to the report, and who watched it, where and when.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The host (node) it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What watched it (`slimd 0.1.0 daemon`, `slimd 0.1.0 run`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer: Option<String>,
    /// When the observation of this container began and ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_to: Option<String>,
}

impl ContainerRef {
    /// A container watched by this slimd (`how`: `run`, `observe`, `daemon`) on this host.
    pub fn watched(
        id: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        how: &str,
        from: std::time::SystemTime,
        to: std::time::SystemTime,
    ) -> Self {
        ContainerRef {
            id: id.to_owned(),
            name: name.to_owned(),
            labels,
            host: Some(hostname()),
            observer: Some(format!("{} {how}", AccessReport::generator())),
            observed_from: Some(rfc3339(from)),
            observed_to: Some(rfc3339(to)),
        }
    }
}

/// A time as reports write it.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// This host's name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Why a report saw only part of a container's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartialReason {
    /// The container was already running when the observation began (`observe`, or a daemon
    /// that started or restarted after it).
    StartedBeforeObserver,
    /// The observation ended while the container was still running.
    ObserverStoppedFirst,
}

/// How much of the containers' lives a report covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoverageState {
    /// Every container was seen from its first instruction to its end, and nothing was lost.
    #[default]
    Complete,
    /// Some part of some container's life was not seen (see `partial`).
    Partial,
    /// Events were lost: the report may miss paths even of what it saw.
    Incomplete,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    pub state: CoverageState,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub partial: BTreeSet<PartialReason>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorInfo {
    /// `ebpf` or `fanotify` (several, comma-separated, in a merged report).
    pub kind: String,
    /// What the sensor cannot see.
    pub blind_spots: Vec<String>,
}

/// Kernel event accounting. Anything but zero in `lost`, `unreadable` or `truncated` means
/// the report may miss paths.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Events received from the kernel.
    pub received: u64,
    /// Repeats dropped in the kernel (not a loss).
    pub deduplicated: u64,
    /// Events the kernel could not deliver (ring buffer full).
    pub lost: u64,
    /// `lost` by CPU.
    pub lost_per_cpu: Vec<u64>,
    /// Paths whose memory could not be read.
    pub unreadable: u64,
    /// Paths or directories longer than the sensor keeps.
    pub truncated: u64,
    /// Paths whose memory was only readable at their thread's next syscall (not a loss).
    #[serde(default)]
    pub read_on_exit: u64,
    /// Distinct accesses beyond what one observation keeps (`MAX_ACCESSES`): not recorded.
    #[serde(default)]
    pub over_limit: u64,
}

/// Container entries a report keeps.
const MAX_CONTAINERS: usize = 1000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Entries of `lost_per_cpu` a merge keeps.
const MAX_CPUS: usize = 8192;

impl EventCounts {
    pub fn is_complete(&self) -> bool {
        self.lost == 0 && self.unreadable == 0 && self.truncated == 0 && self.over_limit == 0
    }

    /// Why the report may miss paths, for people to read.
    pub fn gaps(&self) -> String {
        let mut gaps = vec![
            format!("{} events lost", self.lost),
            format!("{} paths unreadable", self.unreadable),
            format!("{} paths too long", self.truncated),
        ];
        if self.over_limit > 0 {
            gaps.push(format!(
                "{} distinct paths beyond the limit of {}",
                self.over_limit,
                crate::session::MAX_ACCESSES
            ));
        }
        gaps.join(", ")
    }

    /// Sums the counts (saturating: reports are input, and a count cannot wrap to zero).
    fn add(&mut self, other: &EventCounts) {
        for (mine, theirs) in [
            (&mut self.received, other.received),
            (&mut self.deduplicated, other.deduplicated),
            (&mut self.lost, other.lost),
            (&mut self.unreadable, other.unreadable),
            (&mut self.truncated, other.truncated),
            (&mut self.read_on_exit, other.read_on_exit),
            (&mut self.over_limit, other.over_limit),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        if self.lost_per_cpu.len() < other.lost_per_cpu.len() {
            self.lost_per_cpu
                .resize(other.lost_per_cpu.len().min(MAX_CPUS), 0);
        }
        for (a, b) in self.lost_per_cpu.iter_mut().zip(&other.lost_per_cpu) {
            *a = a.saturating_add(*b);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
}

/// One path of the image the workload used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRecord {
    /// `file`, `dir`, `symlink`, `hardlink`, `char-device`, `block-device` or `fifo`.
    pub kind: String,
    /// The target of a symlink, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Bytes of a file.
    #[serde(default)]
    pub size: u64,
    pub uses: BTreeSet<Use>,
    /// Milliseconds from the start of the observation.
    pub first_seen_ms: u64,
    pub first_process: Process,
}

/// What one observation (or a merge of several) found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReport {
    pub schema_version: u32,
    pub generator: String,
    pub image: ImageRef,
    pub containers: Vec<ContainerRef>,
    /// Containers merged in whose entries were dropped (beyond `MAX_CONTAINERS`, oldest
    /// first); their paths are still in the report.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub containers_omitted: u64,
    pub sensor: SensorInfo,
    pub started_at: String,
    pub ended_at: String,
    pub events: EventCounts,
    /// False when events were lost or paths could not be read: the report may miss paths.
    pub complete: bool,
    /// `complete` together with what parts of the containers' lives were seen.
    #[serde(default)]
    pub coverage: Coverage,
    /// The syscalls the containers' own programs made (not their runtime's); None when the
    /// sensor could not see them (fanotify), or a merged part had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Syscalls>,
    #[serde(serialize_with = "ser_paths", deserialize_with = "de_paths")]
    pub paths: BTreeMap<PathBuf, PathRecord>,
}

impl AccessReport {
    pub fn generator() -> String {
        format!("slimd {}", env!("CARGO_PKG_VERSION"))
    }

    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let text = fsutil::open_regular(path)
            .and_then(|f| fsutil::read_bounded(f, MAX_REPORT_BYTES, "the report"))
            .map_err(|e| ReportError::Read(path.to_path_buf(), e))?;
        Self::from_slice(&text, path)
    }

    /// A report from an HTTP URL (a daemon's `/images/<id>/report`, say): no redirect is
    /// followed, the body is bounded, and the wait is too.
    pub async fn fetch(url: &str) -> Result<Self, ReportError> {
        let bad = |e: String| ReportError::Fetch(url.to_owned(), e);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let mut response = client
            .get(url)
            .send()
            .await
            .map_err(|e| bad(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(bad(format!("the server answered {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| bad(error_chain(&e)))? {
            if (body.len() + chunk.len()) as u64 > MAX_REPORT_BYTES {
                return Err(bad(format!("it is larger than {MAX_REPORT_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Self::from_slice(&body, Path::new(url))
    }

    /// A report from a file, or from an `http://` URL.
    pub async fn load(source: &str) -> Result<Self, ReportError> {
        if source.starts_with("http://") || source.starts_with("https://") {
            Self::fetch(source).await
        } else {
            let path = PathBuf::from(source);
            interrupt::blocking(|| Self::read(&path))
        }
    }

    /// Parses a report; `source` names it in errors.
    pub fn from_slice(text: &[u8], source: &Path) -> Result<Self, ReportError> {
        let bad = |msg: String| ReportError::NotAReport(source.to_path_buf(), msg);
        /// The version alone, read first: every other field is skipped, not stored.
        #[derive(Deserialize)]
        struct Versioned {
            schema_version: Option<serde_json::Value>,
        }
        let versioned: Versioned =
            serde_json::from_slice(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        let version = versioned
            .schema_version
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("it has no schema_version".into()))?;
        if version != u64::from(SCHEMA_VERSION) {
            return Err(ReportError::Version(source.to_path_buf(), version));
        }
        let mut report: AccessReport =
            serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
        report.update_coverage();
        Ok(report)
    }

    /// Everything but the paths: what a seccomp profile needs, without copying them.
    pub fn without_paths(&self) -> AccessReport {
        AccessReport {
            schema_version: self.schema_version,
            generator: self.generator.clone(),
            image: self.image.clone(),
            containers: self.containers.clone(),
            containers_omitted: self.containers_omitted,
            sensor: self.sensor.clone(),
            started_at: self.started_at.clone(),
            ended_at: self.ended_at.clone(),
            events: self.events.clone(),
            complete: self.complete,
            coverage: self.coverage.clone(),
            syscalls: self.syscalls.clone(),
            paths: BTreeMap::new(),
        }
    }

    /// Marks that part of a container's life was not seen.
    pub fn mark_partial(&mut self, reason: PartialReason) {
        self.coverage.partial.insert(reason);
        self.update_coverage();
    }

    /// The coverage state, from what the report knows: lost events make it incomplete, any
    /// unseen part partial.
    pub fn update_coverage(&mut self) {
        self.coverage.state = if !self.complete {
            CoverageState::Incomplete
        } else if !self.coverage.partial.is_empty() {
            CoverageState::Partial
        } else {
            CoverageState::Complete
        };
    }

    /// Writes the report atomically: a reader sees the old file or the whole new one.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let mut json = serde_json::to_vec_pretty(self).expect("reports serialise");
        json.push(b'\n');
        fsutil::write_atomic(path, &json, fsutil::Access::Umask)
            .map_err(|e| ReportError::Write(path.to_path_buf(), e))
    }

    /// The union of several reports of the same image.
    pub fn merge(reports: Vec<(String, AccessReport)>) -> Result<AccessReport, ReportError> {
        let mut iter = reports.into_iter();
        let (first_name, mut merged) = iter.next().expect("merge of at least one report");
        for (name, report) in iter {
            if report.image.id != merged.image.id {
                return Err(ReportError::DifferentImages(
                    first_name,
                    merged.image.id,
                    name,
                    report.image.id,
                ));
            }
            merged.absorb(report);
        }
        Ok(merged)
    }

    /// [`Self::merge`] of reports read from files (or URLs), named by them.
    pub fn merge_files(reports: Vec<(PathBuf, AccessReport)>) -> Result<AccessReport, ReportError> {
        Self::merge(
            reports
                .into_iter()
                .map(|(p, r)| (p.display().to_string(), r))
                .collect(),
        )
    }

    fn absorb(&mut self, other: AccessReport) {
        for c in other.containers {
            match self
                .containers
                .iter_mut()
                .find(|m| m.id == c.id && m.host == c.host)
            {
                // One container seen twice (a restart, or a report and its update): one entry
                // spanning both.
                Some(mine) => {
                    mine.observed_from = mine.observed_from.take().min(c.observed_from);
                    mine.observed_to = mine.observed_to.take().max(c.observed_to);
                    mine.labels.extend(c.labels);
                }
                None => self.containers.push(c),
            }
        }
        self.containers_omitted = self
            .containers_omitted
            .saturating_add(other.containers_omitted);
        if self.containers.len() > MAX_CONTAINERS {
            // The oldest go: an image's report stays the same size however long it is kept.
            self.containers
                .sort_by(|a, b| b.observed_to.cmp(&a.observed_to));
            let dropped = self.containers.len() - MAX_CONTAINERS;
            self.containers.truncate(MAX_CONTAINERS);
            self.containers_omitted = self.containers_omitted.saturating_add(dropped as u64);
        }
        let mut kinds: BTreeSet<&str> = self.sensor.kind.split(',').collect();
        kinds.extend(other.sensor.kind.split(','));
        self.sensor.kind = kinds.into_iter().collect::<Vec<_>>().join(",");
        for spot in other.sensor.blind_spots {
            if !self.sensor.blind_spots.contains(&spot) {
                self.sensor.blind_spots.push(spot);
            }
        }
        self.started_at = self.started_at.clone().min(other.started_at);
        self.ended_at = self.ended_at.clone().max(other.ended_at);
        self.events.add(&other.events);
        self.complete &= other.complete;
        // A merge is partial when any part is, and never the other way round.
        self.coverage.partial.extend(other.coverage.partial);
        self.update_coverage();
        // A part that could not see syscalls makes the union unknown.
        match (&mut self.syscalls, &other.syscalls) {
            (Some(mine), Some(theirs)) => mine.union(theirs),
            _ => self.syscalls = None,
        }
        for (path, record) in other.paths {
            match self.paths.get_mut(&path) {
                Some(mine) => {
                    mine.uses.extend(record.uses);
                    if record.first_seen_ms < mine.first_seen_ms {
                        mine.first_seen_ms = record.first_seen_ms;
                        mine.first_process = record.first_process;
                    }
                }
                None => {
                    self.paths.insert(path, record);
                }
            }
        }
    }
}

/// Paths are JSON object keys: the path itself when it is UTF-8, otherwise `x:` followed by
/// its bytes in hex (a path of the image always starts with `/`, so the two cannot clash).
pub fn encode_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            let mut out = String::from("x:");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
            out
        }
    }
}

pub fn decode_path(key: &str) -> Option<PathBuf> {
    if let Some(hex) = key.strip_prefix("x:") {
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        return Some(PathBuf::from(OsStr::from_bytes(&bytes?)));
    }
    key.starts_with('/').then(|| PathBuf::from(key))
}

fn ser_paths<S: Serializer>(
    paths: &BTreeMap<PathBuf, PathRecord>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(paths.iter().map(|(p, r)| (encode_path(p), r)))
}

fn de_paths<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<PathBuf, PathRecord>, D::Error> {
    let raw = BTreeMap::<String, PathRecord>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            decode_path(&k)
                .map(|p| (p, v))
                .ok_or_else(|| serde::de::Error::custom(format!("bad path key {k:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_paths_round_trip() {
        let weird = PathBuf::from(OsStr::from_bytes(b"/etc/\xff\xfe"));
        let key = encode_path(&weird);
        assert_eq!(key, "x:2f6574632ffffe");
        assert_eq!(decode_path(&key), Some(weird));
        assert_eq!(decode_path("/usr/bin"), Some(PathBuf::from("/usr/bin")));
        assert_eq!(decode_path("relative"), None);
    }
}
