//! The eBPF sensor: the `sys_enter` and `sched_process_exec` BTF tracepoints,
//! filtered in the kernel by cgroup, events through a ring buffer.
use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, tp_btf::BtfTracePointLinkId},
};
use slim_common::{
    CgroupName, MAX_CGROUP_LEVEL, MAX_SYSCALL_NR, Op, PATH_OFFSET, PathEvent, Pending, SyscallSet,
    SyscallSpec, config, flags_kind, stat, status, verdict,
};
use tokio::io::unix::AsyncFd;

use super::{
    Access, AccessOp, EventProblems, SensorCounters,
    btf::{Btf, BtfError},
    syscalls,
};
use crate::{runtime::cgroup::Cgroup, seccomp::SyscallBits};

/// The compiled kernel side, built by `cargo xtask build-ebpf` and committed with a stamp.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../ebpf/slimd-ebpf.o");

/// The default ring buffer size: about 300,000 events with short absolute paths in flight,
/// or 13,000 with walked directories.
pub const DEFAULT_RING_KB: u32 = 32 << 10;
/// The daemon's: a steady flow from long-running services, read as it comes.
pub const DAEMON_RING_KB: u32 = 4 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(
        "loading eBPF programs needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN); run slimd as root"
    )]
    NotPermitted,
    #[error("this host does not permit BPF, even to root ({0}); use --sensor fanotify")]
    Refused(String),
    #[error("cannot read the kernel's BTF: {0}; slimd needs a kernel with CONFIG_DEBUG_INFO_BTF")]
    Btf(BtfError),
    #[error("the kernel refused slimd's eBPF programs: {0}")]
    Load(String),
    #[error("cannot attach to tracepoint {0}: {1}")]
    Attach(String, String),
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
}

/// Kernel struct member offsets the programs need, by the name of their global.
const OFFSETS: [(&str, &str, &str); 38] = [
    // The syscall arguments in the saved registers, in the x86_64 ABI's order.
    ("ARG0", "pt_regs", "di"),
    ("ARG1", "pt_regs", "si"),
    ("ARG2", "pt_regs", "dx"),
    ("ARG3", "pt_regs", "r10"),
    ("ARG4", "pt_regs", "r8"),
    ("ARG5", "pt_regs", "r9"),
    ("TASK_FS", "task_struct", "fs"),
    ("TASK_START_TIME", "task_struct", "start_time"),
    ("TASK_CGROUPS", "task_struct", "cgroups"),
    ("CSS_SET_DFL_CGRP", "css_set", "dfl_cgrp"),
    ("CGROUP_KN", "cgroup", "kn"),
    ("KERNFS_NAME", "kernfs_node", "name"),
    ("TASK_FILES", "task_struct", "files"),
    ("FS_ROOT", "fs_struct", "root"),
    ("FS_PWD", "fs_struct", "pwd"),
    ("PATH_MNT", "path", "mnt"),
    ("PATH_DENTRY", "path", "dentry"),
    ("FILES_FDT", "files_struct", "fdt"),
    ("FDT_MAX_FDS", "fdtable", "max_fds"),
    ("FDT_FD", "fdtable", "fd"),
    ("FILE_F_PATH", "file", "f_path"),
    ("DENTRY_PARENT", "dentry", "d_parent"),
    ("DENTRY_NAME", "dentry", "d_name.name"),
    ("DENTRY_INODE", "dentry", "d_inode"),
    ("INODE_INO", "inode", "i_ino"),
    ("INODE_SB", "inode", "i_sb"),
    ("SB_DEV", "super_block", "s_dev"),
    ("MOUNT_PARENT", "mount", "mnt_parent"),
    ("MOUNT_MOUNTPOINT", "mount", "mnt_mountpoint"),
    ("MOUNT_MNT", "mount", "mnt"),
    ("VFSMOUNT_ROOT", "vfsmount", "mnt_root"),
    ("MOUNT_MNT_NS", "mount", "mnt_ns"),
    ("TASK_MM", "task_struct", "mm"),
    ("MM_EXE_FILE", "mm_struct", "exe_file"),
    ("TASK_TI_STATUS", "task_struct", "thread_info.status"),
    ("BPRM_FILE", "linux_binprm", "file"),
    ("BPRM_FILENAME", "linux_binprm", "filename"),
    ("BPRM_INTERP", "linux_binprm", "interp"),
];

/// A decoded kernel event: which watch it belongs to, the cgroup of the process that made
/// it, and the access (None when the event carried a path that could not be used;
/// [`EbpfSensor::problems`] counts those).
pub struct SensorEvent {
    pub watch_id: u64,
    pub cgroup_id: u64,
    pub access: Option<Access>,
}

/// The programs, by name, and the tracepoints they attach to.
const PROGRAMS: [(&str, &str); 2] = [("sys_enter", "sys_enter"), ("exec", "sched_process_exec")];

pub struct EbpfSensor {
    ebpf: Ebpf,
    /// The programs' attachments, while they are attached.
    links: Vec<(&'static str, BtfTracePointLinkId)>,
    watched: HashMap<MapData, u64, u32>,
    /// What `watched` holds: cgroup id → (level, verdict).
    entries: std::collections::HashMap<u64, (u32, u32)>,
    config: Array<MapData, u64>,
    pending: HashMap<MapData, u32, Pending>,
    names: HashMap<MapData, u64, CgroupName>,
    syscalls: PerCpuHashMap<MapData, u64, SyscallSet>,
    stats: PerCpuArray<MapData, u64>,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Last value written to `CONFIG[GENERATION]`.
    generation: u64,
    start_ns: u64,
    /// (device, inode) of the host's root directory, in the kernel's encoding.
    host_root: (u32, u64),
    pub problems: EventProblems,
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> SensorError {
    move |e| SensorError::Map(name, e.to_string())
}

impl EbpfSensor {
    /// Loads and attaches the programs. Nothing is watched until [`Self::watch`].
    /// `ring_kb`: the ring buffer's size in KiB, a power of two of at least 4.
    pub fn load(ring_kb: u32) -> Result<Self, SensorError> {
        let mut sensor = Self::load_detached(ring_kb)?;
        sensor.attach()?;
        Ok(sensor)
    }

    /// Loads the programs without attaching them: until [`Self::attach`], they cost the
    /// host's syscalls nothing.
    pub fn load_detached(ring_kb: u32) -> Result<Self, SensorError> {
        if ring_kb < 4 || !ring_kb.is_power_of_two() || ring_kb > 1 << 20 {
            return Err(SensorError::Map(
                "EVENTS",
                format!("a ring buffer of {ring_kb} KiB: give a power of two from 4 to 1048576"),
            ));
        }
        if !rustix::process::geteuid().is_root() {
            return Err(SensorError::NotPermitted);
        }
        raise_memlock();
        let btf = Btf::from_kernel().map_err(SensorError::Btf)?;
        let mut values = Vec::with_capacity(OFFSETS.len());
        for (global, strukt, member) in OFFSETS {
            values.push((
                global,
                btf.offset(strukt, member).map_err(SensorError::Btf)?,
            ));
        }
        let mut loader = EbpfLoader::new();
        for (global, value) in &values {
            loader.override_global(global, value, true);
        }
        let kernel_logs = KERNEL_LOGS.load(std::sync::atomic::Ordering::Relaxed);
        // The programs' own log statements are off (one load of a constant) unless asked for.
        let level = if kernel_logs {
            aya_log::Level::Debug as u8
        } else {
            0
        };
        loader.override_global(aya_log::LEVEL, &level, true);
        loader.map_max_entries("EVENTS", ring_kb << 10);
        let mut ebpf = loader.load(OBJECT).map_err(|e| load_error(&e))?;

        let mut specs: Array<MapData, SyscallSpec> = Array::try_from(
            ebpf.take_map("SPECS")
                .ok_or(SensorError::Map("SPECS", "missing".into()))?,
        )
        .map_err(map_err("SPECS"))?;
        for def in syscalls::table() {
            let position = |arg: Option<u8>| arg.map_or(0, |a| a + 1);
            let spec = SyscallSpec {
                op: def.op as u8,
                flags_kind: def.flags.map_or(flags_kind::NONE, |f| f.1),
                path_arg: position(def.path),
                dirfd_arg: position(def.dirfd),
                flags_arg: position(def.flags.map(|f| f.0)),
                fixed_status: if def.nofollow { status::NOFOLLOW } else { 0 },
                _pad: [0; 2],
            };
            debug_assert!(
                (def.nr as u32) < MAX_SYSCALL_NR,
                "{} is outside the table",
                def.name
            );
            specs
                .set(def.nr as u32, spec, 0)
                .map_err(map_err("SPECS"))?;
        }
        if kernel_logs {
            forward_kernel_logs(&mut ebpf);
        }
        let kernel_btf = aya::Btf::from_sys_fs().map_err(|e| SensorError::Load(e.to_string()))?;
        for (name, tracepoint) in PROGRAMS {
            let prog: &mut BtfTracePoint = program(&mut ebpf, name)?;
            prog.load(tracepoint, &kernel_btf)
                .map_err(|e| program_error(name, e))?;
        }

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or(SensorError::Map(name, "missing".into()))
        };
        let watched = HashMap::try_from(take(&mut ebpf, "WATCHED")?).map_err(map_err("WATCHED"))?;
        let config = Array::try_from(take(&mut ebpf, "CONFIG")?).map_err(map_err("CONFIG"))?;
        let pending = HashMap::try_from(take(&mut ebpf, "PENDING")?).map_err(map_err("PENDING"))?;
        let names = HashMap::try_from(take(&mut ebpf, "NAMES")?).map_err(map_err("NAMES"))?;
        let syscalls =
            PerCpuHashMap::try_from(take(&mut ebpf, "SYSCALLS")?).map_err(map_err("SYSCALLS"))?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, "STATS")?).map_err(map_err("STATS"))?;
        let ring = RingBuf::try_from(take(&mut ebpf, "EVENTS")?).map_err(map_err("EVENTS"))?;
        // SAFETY: the ring buffer owns its map fd, which stays open and the same until the
        // AsyncFd (which owns the ring buffer) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| SensorError::Map("EVENTS", e.to_string()))?;
        Ok(EbpfSensor {
            ebpf,
            links: Vec::new(),
            watched,
            entries: std::collections::HashMap::new(),
            config,
            pending,
            names,
            syscalls,
            stats,
            ring,
            generation: 0,
            start_ns: monotonic_ns(),
            host_root: host_root()?,
            problems: EventProblems::default(),
        })
    }

    /// Attaches the programs (when they are not).
    pub fn attach(&mut self) -> Result<(), SensorError> {
        if !self.links.is_empty() {
            return Ok(());
        }
        for (name, tracepoint) in PROGRAMS {
            let prog: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
            match prog.attach() {
                Ok(link) => self.links.push((name, link)),
                Err(e) => {
                    let _ = self.detach();
                    return Err(SensorError::Attach(tracepoint.into(), e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Detaches the programs: the host's syscalls no longer pass through them.
    pub fn detach(&mut self) -> Result<(), SensorError> {
        for (name, link) in std::mem::take(&mut self.links) {
            let prog: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
            prog.detach(link)
                .map_err(|e| SensorError::Attach(name.into(), e.to_string()))?;
        }
        Ok(())
    }

    pub fn is_attached(&self) -> bool {
        !self.links.is_empty()
    }

    /// Watches the processes of a cgroup and of every cgroup below it, including ones created
    /// later. `Access::at_ms` counts from the latest watch.
    pub fn watch(&mut self, cgroup: &Cgroup) -> Result<(), SensorError> {
        self.start_ns = monotonic_ns();
        self.set_entry(cgroup.id, cgroup.level, verdict::WATCH)
    }

    /// Records nothing of a cgroup and of the cgroups below it, even below a watched one.
    pub fn ignore(&mut self, id: u64, level: u32) -> Result<(), SensorError> {
        self.set_entry(id, level, verdict::IGNORE)
    }

    /// The name of a cgroup seen through a watched ancestor, and that ancestor's id: it stays
    /// known after the cgroup is gone.
    pub fn cgroup_name(&self, id: u64) -> Option<(u64, std::ffi::OsString)> {
        let entry = self.names.get(&id, 0).ok()?;
        let len = entry.name.iter().position(|&b| b == 0)?;
        Some((
            entry.watch_id,
            OsStr::from_bytes(&entry.name[..len]).to_os_string(),
        ))
    }

    /// Drops a cgroup's entry (watched or ignored).
    pub fn forget(&mut self, id: u64) -> Result<(), SensorError> {
        if self.entries.remove(&id).is_none() {
            return Ok(());
        }
        match self.watched.remove(&id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
            Err(e) => return Err(SensorError::Map("WATCHED", e.to_string())),
        }
        self.update_levels()
    }

    /// Cgroups with an entry, and their verdict (`true`: watched).
    pub fn entries(&self) -> impl Iterator<Item = (u64, bool)> + '_ {
        self.entries
            .iter()
            .map(|(id, (_, v))| (*id, *v == verdict::WATCH))
    }

    fn set_entry(&mut self, id: u64, level: u32, verdict: u32) -> Result<(), SensorError> {
        if level == 0 || level >= MAX_CGROUP_LEVEL {
            return Err(SensorError::Map(
                "WATCHED",
                format!("cannot watch a cgroup at level {level} (from 1 to {MAX_CGROUP_LEVEL})"),
            ));
        }
        self.watched
            .insert(id, verdict, 0)
            .map_err(map_err("WATCHED"))?;
        self.entries.insert(id, (level, verdict));
        self.update_levels()
    }

    fn update_levels(&mut self) -> Result<(), SensorError> {
        let mask = self
            .entries
            .values()
            .fold(0u64, |mask, (level, _)| mask | 1 << level);
        self.config
            .set(config::LEVELS, mask, 0)
            .map_err(map_err("CONFIG"))?;
        self.next_generation()
    }

    /// Invalidates the kernel's cached watch verdicts.
    fn next_generation(&mut self) -> Result<(), SensorError> {
        self.generation += 1;
        self.config
            .set(config::GENERATION, self.generation, 0)
            .map_err(map_err("CONFIG"))
    }

    /// Waits until events are ready, then decodes all of them into `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<SensorEvent>) -> Result<(), SensorError> {
        let mut guard = self
            .ring
            .readable_mut()
            .await
            .map_err(|e| SensorError::Map("EVENTS", e.to_string()))?;
        // Readiness is an edge: clear it before reading, so that an event submitted while
        // the ring is being read raises a new one.
        guard.clear_ready();
        self.drain(out);
        Ok(())
    }

    /// Decodes whatever events are in the ring buffer now, without waiting.
    pub fn drain(&mut self, out: &mut Vec<SensorEvent>) {
        let context = DecodeContext {
            start_ns: self.start_ns,
            host_root: self.host_root,
        };
        drain_ring(self.ring.get_mut(), &mut self.problems, context, out);
    }

    /// The syscalls recorded per cgroup, over all CPUs: (cgroup id, watch id, syscalls).
    pub fn syscall_sets(&self) -> Vec<(u64, u64, SyscallBits)> {
        self.syscalls
            .iter()
            .filter_map(Result::ok)
            .map(|(cgroup, per_cpu)| {
                let mut bits = SyscallBits::default();
                let mut watch = 0;
                for set in per_cpu.iter() {
                    bits.add(&set.native, &set.compat);
                    watch = watch.max(set.watch_id);
                }
                (cgroup, watch, bits)
            })
            .collect()
    }

    /// Drops the syscalls recorded for a cgroup (read, or of no interest).
    pub fn forget_syscalls(&mut self, cgroup: u64) {
        let _ = self.syscalls.remove(&cgroup);
    }

    pub fn counters(&self) -> Result<SensorCounters, SensorError> {
        let per_cpu = |index: u32| -> Result<Vec<u64>, SensorError> {
            Ok(self
                .stats
                .get(&index, 0)
                .map_err(map_err("STATS"))?
                .iter()
                .copied()
                .collect())
        };
        let sum = |index: u32| per_cpu(index).map(|v| v.iter().sum());
        let mut lost_per_cpu = per_cpu(stat::LOST)?;
        for (lost, retry_lost) in lost_per_cpu.iter_mut().zip(per_cpu(stat::RETRY_LOST)?) {
            *lost += retry_lost;
        }
        let stranded = self
            .pending
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, p)| {
                self.entries
                    .get(&p.event.watch_id)
                    .is_some_and(|(_, v)| *v == verdict::WATCH)
            })
            .count() as u64;
        Ok(SensorCounters {
            sent: sum(stat::SENT)?,
            deduplicated: sum(stat::DEDUPED)?,
            lost_per_cpu,
            retried: sum(stat::RETRIED)?,
            stranded,
            syscalls_unrecorded: sum(stat::SYSCALLS_UNRECORDED)?,
        })
    }
}

/// Whether the programs' debug logs are sent to slimd's logs (`-vv`).
pub static KERNEL_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The kernel programs' log records, as tracing events.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        tracing::debug!("kernel: {}", record.args());
    }

    fn flush(&self) {}
}

/// Reads the programs' log records as they come, on a task of their own.
fn forward_kernel_logs(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init_with_logger(ebpf, ToTracing) {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!("no kernel logs: {e}");
            return;
        }
    };
    // SAFETY: the logger owns its ring buffer's fd, which stays open and the same until the
    // AsyncFd (which owns the logger) is dropped.
    let Ok(mut logs) =
        (unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) })
    else {
        return;
    };
    tokio::spawn(async move {
        while let Ok(mut ready) = logs.readable_mut().await {
            ready.clear_ready();
            ready.get_inner_mut().flush();
        }
    });
}

fn raise_memlock() {
    // Kernels since 5.11 charge BPF memory to the cgroup; older ones need the rlimit. Failure
    // (no CAP_SYS_RESOURCE) is harmless on the former.
    let unlimited = rustix::process::Rlimit {
        current: None,
        maximum: None,
    };
    if rustix::process::setrlimit(rustix::process::Resource::Memlock, unlimited).is_err() {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; relying on memcg accounting");
    }
}

/// The loader's error with its causes on one line; EPERM anywhere means BPF is refused.
fn load_error(e: &aya::EbpfError) -> SensorError {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    let mut not_permitted = false;
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            not_permitted |= io.raw_os_error() == Some(libc::EPERM);
        }
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(&format!(": {said}"));
        }
        cause = c.source();
    }
    if not_permitted {
        SensorError::Refused(text)
    } else {
        SensorError::Load(text)
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, SensorError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| SensorError::Load(format!("no program {name} in the object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| SensorError::Load(format!("{name}: {e}")))
}

/// A program the kernel refused, with the verifier's verdict but not its whole log.
fn program_error(name: &str, e: aya::programs::ProgramError) -> SensorError {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            // EPERM is a refusal of BPF itself; EACCES is the verifier's refusal of a program.
            if io_error.raw_os_error() == Some(libc::EPERM) {
                return SensorError::Refused(format!("{name}: {io_error}"));
            }
            let log = verifier_log.to_string();
            tracing::debug!("verifier log of {name}:\n{log}");
            let verdict = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            SensorError::Load(format!("{name}: {io_error} ({verdict})"))
        }
        e => SensorError::Load(format!("{name}: {e}")),
    }
}

/// The root directory of the host, as the kernel encodes it: pid 1's, so that this also
/// holds when slimd runs in a container with the host's pid namespace, or slimd's own when
/// pid 1 cannot be inspected.
fn host_root() -> Result<(u32, u64), SensorError> {
    let st = rustix::fs::stat("/proc/1/root")
        .or_else(|_| rustix::fs::stat("/"))
        .map_err(|e| SensorError::Load(format!("cannot stat the host's root directory: {e}")))?;
    let dev = (rustix::fs::major(st.st_dev) << 20) | rustix::fs::minor(st.st_dev);
    Ok((dev, st.st_ino))
}

#[derive(Clone, Copy)]
struct DecodeContext {
    start_ns: u64,
    host_root: (u32, u64),
}

fn drain_ring(
    ring: &mut RingBuf<MapData>,
    problems: &mut EventProblems,
    context: DecodeContext,
    out: &mut Vec<SensorEvent>,
) {
    while let Some(item) = ring.next() {
        if item.len() < PATH_OFFSET {
            continue;
        }
        // Events without a directory come cut after their path.
        // SAFETY: PathEvent is plain data, valid for any bits, zeros included.
        let mut ev: PathEvent = unsafe { std::mem::zeroed() };
        let len = item.len().min(size_of::<PathEvent>());
        // SAFETY: `len` bytes fit both the item and the event.
        unsafe {
            std::ptr::copy_nonoverlapping(item.as_ptr(), (&mut ev as *mut PathEvent).cast(), len)
        };
        out.push(SensorEvent {
            watch_id: ev.watch_id,
            cgroup_id: ev.cgroup_id,
            access: decode(&ev, problems, context),
        });
    }
}

/// Turns a kernel event into an access; None when the container runtime made it on the host
/// side (before the container's root was in place), or (counted as a problem) when its path
/// is not usable.
fn decode(ev: &PathEvent, problems: &mut EventProblems, context: DecodeContext) -> Option<Access> {
    if (ev.root_dev, ev.root_ino) == context.host_root {
        return None;
    }
    if ev.status & status::PATH_UNREADABLE != 0 {
        problems.unreadable += 1;
        return None;
    }
    if ev.status & (status::PATH_TRUNCATED | status::DIR_TRUNCATED) != 0 {
        problems.truncated += 1;
        return None;
    }
    let kernel_op = Op::from_u8(ev.op)?;
    let path_len = usize::from(ev.path_len)
        .saturating_sub(1)
        .min(ev.path.len());
    let mut path = ev.path[..path_len].to_vec();
    let mut dir = (ev.status & status::HAS_DIR != 0).then(|| walked_dir(ev));
    let op = match kernel_op {
        Op::Open => AccessOp::Open,
        Op::Exec => AccessOp::Exec,
        Op::Stat => AccessOp::Stat,
        Op::Readlink => AccessOp::Readlink,
        Op::Chdir => AccessOp::Chdir,
        Op::Modify => AccessOp::Modify,
        Op::ExecFile => {
            // `dir` holds the file the kernel ran; the name it was run by came with execve.
            path.clear();
            dir.as_ref()?;
            AccessOp::Exec
        }
        Op::Interp => AccessOp::Interpreter,
    };
    if path.first() == Some(&b'/') {
        dir = None;
    }
    let comm_len = ev
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(ev.comm.len());
    Some(Access {
        op,
        path,
        dir,
        nofollow: ev.status & status::NOFOLLOW != 0,
        flags: ev.flags,
        pid: ev.tgid,
        comm: String::from_utf8_lossy(&ev.comm[..comm_len]).into_owned(),
        at_ms: ev.ktime_ns.saturating_sub(context.start_ns) / 1_000_000,
    })
}

/// The walked directory: NUL-terminated components, leaf first.
fn walked_dir(ev: &PathEvent) -> PathBuf {
    let used = usize::from(ev.dir_len).min(ev.dir.len());
    let mut components: Vec<&[u8]> = ev.dir[..used]
        .split(|&b| b == 0)
        .filter(|c| !c.is_empty())
        .take(usize::from(ev.dir_depth))
        .collect();
    components.reverse();
    let mut dir = PathBuf::from("/");
    for c in components {
        dir.push(OsStr::from_bytes(c));
    }
    dir
}
