//! The fanotify sensor, for hosts where BPF is not permitted: every open and exec on the
//! container's root file system (its overlay superblock, `FAN_MARK_FILESYSTEM`).
//!
//! It cannot see stat or access calls, the symlinks a path went through, or files on other
//! mounts (`/dev`, `/proc`, bind mounts, volumes); the report says so.
use std::{
    collections::HashMap,
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
    time::Instant,
};

use tokio::io::unix::AsyncFd;

use super::{Access, AccessOp, SensorCounters, SensorError, ebpf::SensorEvent};
use crate::runtime::cgroup::{self, Cgroup};

/// Processes whose cgroup verdict is remembered; the memory is cleared when it is full.
const VERDICT_CACHE: usize = 4096;

const EVENTS: u64 = libc::FAN_OPEN | libc::FAN_OPEN_EXEC | libc::FAN_ONDIR;
const METADATA_LEN: usize = size_of::<libc::fanotify_event_metadata>();

/// One marked file system.
struct Mark {
    /// The device of its superblock, which the event's file tells.
    dev: u64,
    /// The watched cgroup's id, which its events carry.
    watch_id: u64,
    /// The watched cgroup's directory: a file system mark sees every process that opens a
    /// file there, the host's included, and only this cgroup's subtree counts.
    cgroup_dir: PathBuf,
}

pub struct FanotifySensor {
    fd: AsyncFd<OwnedFd>,
    marks: Vec<Mark>,
    unified_root: PathBuf,
    /// (pid, watch id) → whether the process is in that watch's cgroup subtree.
    verdicts: HashMap<(u32, u64), bool>,
    /// Events of processes outside the watched cgroups, not recorded.
    pub others: u64,
    started: Instant,
    overflows: u64,
    buf: Vec<u8>,
}

impl FanotifySensor {
    /// A fanotify group; nothing is marked until [`Self::mark`].
    pub fn new() -> Result<Self, SensorError> {
        // SAFETY: plain syscall with flag arguments.
        let raw = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) => SensorError::NotPermitted,
                _ => SensorError::Load(format!("fanotify_init: {e}")),
            });
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the fd, which stays open and the same until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| SensorError::Load(format!("fanotify: {e}")))?;
        Ok(FanotifySensor {
            fd,
            marks: Vec::new(),
            unified_root: cgroup::unified_root().map_err(|e| SensorError::Load(e.to_string()))?,
            verdicts: HashMap::new(),
            others: 0,
            started: Instant::now(),
            overflows: 0,
            buf: vec![0; 64 << 10],
        })
    }

    /// Watches the file system that `root` is on (the container's root: `/proc/<pid>/root`
    /// or its overlay's merged directory) for the processes of `cgroup` and below it; events
    /// carry the cgroup's id.
    pub fn mark(&mut self, root: &Path, cgroup: &Cgroup) -> Result<(), SensorError> {
        let path = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| SensorError::Load(format!("{} holds a NUL byte", root.display())))?;
        // SAFETY: a valid fd and a NUL-terminated path.
        let ret = unsafe {
            libc::fanotify_mark(
                self.fd.get_ref().as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                EVENTS,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        if ret < 0 {
            return Err(SensorError::Attach(
                format!("fanotify on {}", root.display()),
                io::Error::last_os_error().to_string(),
            ));
        }
        let dev = rustix::fs::stat(root)
            .map_err(|e| {
                SensorError::Attach(format!("fanotify on {}", root.display()), e.to_string())
            })?
            .st_dev;
        self.marks.retain(|m| m.dev != dev);
        self.marks.push(Mark {
            dev,
            watch_id: cgroup.id,
            cgroup_dir: cgroup.dir.clone(),
        });
        self.verdicts.clear();
        self.started = Instant::now();
        Ok(())
    }

    /// Stops attributing events to the watch (its file system goes with its container).
    pub fn unmark(&mut self, watch_id: u64) {
        self.marks.retain(|m| m.watch_id != watch_id);
        self.verdicts.clear();
    }

    /// Whether a process belongs to a mark's cgroup subtree. A process that is gone before it
    /// can be asked is taken to belong (the container's short-lived processes are the likely
    /// ones).
    fn is_watched(&mut self, pid: u32, mark: usize) -> bool {
        let key = (pid, self.marks[mark].watch_id);
        if let Some(&verdict) = self.verdicts.get(&key) {
            return verdict;
        }
        let verdict = match Cgroup::of_process(&self.unified_root, pid) {
            Ok(c) => c.dir.starts_with(&self.marks[mark].cgroup_dir),
            Err(_) => true,
        };
        if self.verdicts.len() >= VERDICT_CACHE {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, verdict);
        verdict
    }

    pub async fn next_batch(&mut self, out: &mut Vec<SensorEvent>) -> Result<(), SensorError> {
        let mut guard = self
            .fd
            .readable()
            .await
            .map_err(|e| SensorError::Map("fanotify", e.to_string()))?;
        guard.clear_ready();
        drop(guard);
        self.drain(out);
        Ok(())
    }

    /// Reads whatever events are queued now.
    pub fn drain(&mut self, out: &mut Vec<SensorEvent>) {
        loop {
            // SAFETY: reading into a buffer of its length.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                )
            };
            if n <= 0 {
                return;
            }
            let mut at = 0;
            while at + METADATA_LEN <= n as usize {
                // SAFETY: the kernel wrote a whole metadata record here.
                let meta: libc::fanotify_event_metadata =
                    unsafe { std::ptr::read_unaligned(self.buf[at..].as_ptr().cast()) };
                if meta.event_len < METADATA_LEN as u32 {
                    break;
                }
                at += meta.event_len as usize;
                if meta.mask & libc::FAN_Q_OVERFLOW != 0 {
                    self.overflows += 1;
                }
                if meta.fd < 0 {
                    continue;
                }
                // SAFETY: the event's fd is ours to close.
                let file = unsafe { OwnedFd::from_raw_fd(meta.fd) };
                let mark = rustix::fs::fstat(&file)
                    .ok()
                    .and_then(|st| self.marks.iter().position(|m| m.dev == st.st_dev));
                let Some(mark) = mark else {
                    self.others += 1;
                    continue;
                };
                if !self.is_watched(meta.pid.max(0) as u32, mark) {
                    self.others += 1;
                    continue;
                }
                if let Some(access) = self.access(&meta, &file) {
                    let watch_id = self.marks[mark].watch_id;
                    out.push(SensorEvent {
                        watch_id,
                        cgroup_id: watch_id,
                        access: Some(access),
                    });
                }
            }
        }
    }

    fn access(&self, meta: &libc::fanotify_event_metadata, file: &OwnedFd) -> Option<Access> {
        // The fd was opened through the container's mount, which our root cannot reach: the
        // kernel prints its path relative to the container's root.
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        let path = path.as_os_str().as_bytes();
        if !path.starts_with(b"/") || path.ends_with(b" (deleted)") {
            return None;
        }
        let pid = meta.pid.max(0) as u32;
        Some(Access {
            op: if meta.mask & libc::FAN_OPEN_EXEC != 0 {
                AccessOp::Exec
            } else {
                AccessOp::Open
            },
            path: path.to_vec(),
            dir: None,
            nofollow: false,
            flags: 0,
            pid,
            comm: procfs::process::Process::new(pid as i32)
                .and_then(|p| p.stat())
                .map(|s| s.comm)
                .unwrap_or_default(),
            at_ms: self.started.elapsed().as_millis() as u64,
        })
    }

    pub fn counters(&self) -> SensorCounters {
        SensorCounters {
            lost_per_cpu: vec![self.overflows],
            ..SensorCounters::default()
        }
    }
}
