//! Sensors: what the processes of a watched container named, seen from the host kernel.
pub mod btf;
pub mod ebpf;
pub mod fanotify;
mod syscalls;

use std::path::{Path, PathBuf};

pub use ebpf::{EbpfSensor, SensorError, SensorEvent};
pub use fanotify::FanotifySensor;

use crate::{runtime::cgroup::Cgroup, seccomp::SyscallBits};

/// Which sensor to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SensorChoice {
    /// eBPF, or fanotify when BPF is not permitted.
    #[default]
    Auto,
    Ebpf,
    Fanotify,
}

/// A loaded sensor.
pub enum Sensor {
    Ebpf(Box<EbpfSensor>),
    Fanotify(FanotifySensor),
}

impl Sensor {
    /// Loads the chosen sensor; `auto` falls back to fanotify (with a warning through
    /// `fallback`) when the kernel refuses the eBPF programs.
    pub fn load(
        choice: SensorChoice,
        ring_kb: u32,
        fallback: impl FnOnce(&SensorError),
    ) -> Result<Self, SensorError> {
        Self::load_with(choice, fallback, || EbpfSensor::load(ring_kb))
    }

    /// As [`Self::load`], with the eBPF programs loaded but not attached (see
    /// [`EbpfSensor::attach`]).
    pub fn load_detached(
        choice: SensorChoice,
        ring_kb: u32,
        fallback: impl FnOnce(&SensorError),
    ) -> Result<Self, SensorError> {
        Self::load_with(choice, fallback, || EbpfSensor::load_detached(ring_kb))
    }

    fn load_with(
        choice: SensorChoice,
        fallback: impl FnOnce(&SensorError),
        ebpf: impl Fn() -> Result<EbpfSensor, SensorError>,
    ) -> Result<Self, SensorError> {
        match choice {
            SensorChoice::Ebpf => ebpf().map(|s| Sensor::Ebpf(Box::new(s))),
            SensorChoice::Fanotify => FanotifySensor::new().map(Sensor::Fanotify),
            SensorChoice::Auto => match ebpf() {
                Ok(s) => Ok(Sensor::Ebpf(Box::new(s))),
                // Not being root is not a reason to try fanotify, which needs root too.
                Err(
                    e @ (SensorError::Refused(_)
                    | SensorError::Btf(_)
                    | SensorError::Load(_)
                    | SensorError::Attach(..)),
                ) => {
                    fallback(&e);
                    FanotifySensor::new().map(Sensor::Fanotify)
                }
                Err(e) => Err(e),
            },
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Sensor::Ebpf(_) => "ebpf",
            Sensor::Fanotify(_) => "fanotify",
        }
    }

    /// What the sensor cannot see, for the report.
    pub fn blind_spots(&self) -> Vec<String> {
        let spots: &[&str] = match self {
            Sensor::Ebpf(_) => &[
                "files mapped or opened by the kernel without a syscall, other than exec and its interpreters",
            ],
            Sensor::Fanotify(_) => &[
                "stat, access, readlink and other calls that do not open a file",
                "symlinks followed on the way to a file",
                "files opened before the file system was marked",
                "files on other mounts (/dev, /proc, bind mounts, volumes)",
            ],
        };
        spots.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Watches a container before it starts (eBPF: a parent cgroup it will start below).
    /// The watch id its events carry.
    pub fn watch_cgroup(&mut self, cgroup: &Cgroup) -> Result<u64, SensorError> {
        match self {
            Sensor::Ebpf(s) => s.watch(cgroup).map(|()| cgroup.id),
            Sensor::Fanotify(_) => Err(SensorError::Load("fanotify cannot watch a cgroup".into())),
        }
    }

    /// Watches a running container: its cgroup and every cgroup below it (eBPF), or its root
    /// file system, for the processes of that cgroup subtree (fanotify).
    pub fn watch_container(&mut self, cgroup: &Cgroup, root: &Path) -> Result<u64, SensorError> {
        match self {
            Sensor::Ebpf(s) => s.watch(cgroup).map(|()| cgroup.id),
            Sensor::Fanotify(s) => s.mark(root, cgroup).map(|()| cgroup.id),
        }
    }

    pub async fn next_batch(&mut self, out: &mut Vec<SensorEvent>) -> Result<(), SensorError> {
        match self {
            Sensor::Ebpf(s) => s.next_batch(out).await,
            Sensor::Fanotify(s) => s.next_batch(out).await,
        }
    }

    pub fn drain(&mut self, out: &mut Vec<SensorEvent>) {
        match self {
            Sensor::Ebpf(s) => s.drain(out),
            Sensor::Fanotify(s) => s.drain(out),
        }
    }

    pub fn counters(&self) -> Result<SensorCounters, SensorError> {
        match self {
            Sensor::Ebpf(s) => s.counters(),
            Sensor::Fanotify(s) => Ok(s.counters()),
        }
    }

    /// The syscalls made below watch `watch_id`, over all its cgroups; None when the sensor
    /// cannot see syscalls.
    pub fn syscalls_of_watch(&self, watch_id: u64) -> Option<SyscallBits> {
        let Sensor::Ebpf(s) = self else {
            return None;
        };
        let mut bits = SyscallBits::default();
        for (_, watch, set) in s.syscall_sets() {
            if watch == watch_id {
                bits.add(&set.native, &set.compat);
            }
        }
        Some(bits)
    }

    pub fn problems(&self) -> EventProblems {
        match self {
            Sensor::Ebpf(s) => s.problems.clone(),
            Sensor::Fanotify(_) => EventProblems::default(),
        }
    }
}

/// How a process used a path, as far as the sensor can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessOp {
    Open,
    Exec,
    /// Opened by the kernel as an interpreter during exec.
    Interpreter,
    Stat,
    Readlink,
    Chdir,
    Modify,
}

/// One distinct use of a path by a watched process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub op: AccessOp,
    /// The path as the process passed it (empty: `dir` itself is the path).
    pub path: Vec<u8>,
    /// The directory a relative path starts from, as the container sees it.
    pub dir: Option<PathBuf>,
    /// A final symlink is not followed.
    pub nofollow: bool,
    /// Open flags (`O_PATH`, `O_DIRECTORY`) or `AT_*` flags.
    pub flags: u32,
    pub pid: u32,
    pub comm: String,
    /// Milliseconds since the observation started.
    pub at_ms: u64,
}

/// What makes two accesses the same for the report.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessKey {
    op: AccessOp,
    path: Vec<u8>,
    dir: Option<PathBuf>,
    nofollow: bool,
    path_only: bool,
}

/// The rest of an access: who made it first, and when. Kept apart from the key so that a
/// stored access holds its path once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstUse {
    flags: u32,
    pid: u32,
    comm: Box<str>,
    at_ms: u64,
}

const O_PATH: u32 = 0o10_000_000;

impl Access {
    pub fn into_parts(self) -> (AccessKey, FirstUse) {
        let path_only = self.op == AccessOp::Open && self.flags & O_PATH != 0;
        let dir = if self.path.first() == Some(&b'/') {
            None
        } else {
            self.dir
        };
        (
            AccessKey {
                op: self.op,
                path: self.path,
                dir,
                nofollow: self.nofollow,
                path_only,
            },
            FirstUse {
                flags: self.flags,
                pid: self.pid,
                comm: self.comm.into_boxed_str(),
                at_ms: self.at_ms,
            },
        )
    }

    pub fn from_parts(key: AccessKey, first: FirstUse) -> Self {
        Access {
            op: key.op,
            path: key.path,
            dir: key.dir,
            nofollow: key.nofollow,
            flags: first.flags,
            pid: first.pid,
            comm: first.comm.into_string(),
            at_ms: first.at_ms,
        }
    }
}

/// Kernel-side counters of a sensor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SensorCounters {
    pub sent: u64,
    pub deduplicated: u64,
    pub lost_per_cpu: Vec<u64>,
    /// Paths read at their thread's next syscall (not resident on entry).
    pub retried: u64,
    /// Paths still waiting for their thread's next syscall, which never came (the thread
    /// was killed inside its syscall): lost.
    pub stranded: u64,
    /// Syscalls of watched programs that could not be recorded.
    pub syscalls_unrecorded: u64,
}

impl SensorCounters {
    pub fn lost(&self) -> u64 {
        self.lost_per_cpu.iter().sum()
    }
}

/// Problems with single events, counted in user space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventProblems {
    pub unreadable: u64,
    pub truncated: u64,
}
