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

use crate::fsutil;

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

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
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
    pub sensor: SensorInfo,
    pub started_at: String,
    pub ended_at: String,
    pub events: EventCounts,
    /// False when events were lost or paths could not be read: the report may miss paths.
    pub complete: bool,
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
        serde_json::from_slice(text).map_err(|e| bad(e.to_string()))
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

    fn absorb(&mut self, other: AccessReport) {
        for c in other.containers {
            if !self.containers.contains(&c) {
                self.containers.push(c);
            }
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
