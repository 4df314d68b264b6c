//! Sensors: what the processes of a watched container named, seen from the host kernel.
pub mod btf;
pub mod ebpf;
mod syscalls;

use std::path::PathBuf;

pub use ebpf::{EbpfSensor, SensorError};

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

const O_PATH: u32 = 0o10_000_000;

impl Access {
    pub fn key(&self) -> AccessKey {
        AccessKey {
            op: self.op,
            path: self.path.clone(),
            dir: if self.path.first() == Some(&b'/') {
                None
            } else {
                self.dir.clone()
            },
            nofollow: self.nofollow,
            path_only: self.op == AccessOp::Open && self.flags & O_PATH != 0,
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
