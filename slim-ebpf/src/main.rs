//! slimd's kernel side: every path a watched container's processes name.
//!
//! - `sys_enter` (raw tracepoint) sees every syscall; the `SPECS` table, filled by user space
//!   and indexed by syscall number, says which ones name a path and which of their arguments
//!   hold the path, the directory fd and the flags. One attachment instead of one per syscall
//!   keeps attaching and detaching fast (each detach waits for an RCU grace period).
//!   A path whose page was not yet resident on entry is read when the same thread enters
//!   its next syscall, by which time the kernel has faulted it in (such pages are read-only
//!   file pages, string literals in particular, so the bytes are the same).
//!   It also records, per cgroup, which syscalls a watched container's own programs made
//!   (a bitmap per ABI, no event), for seccomp profiles.
//! - `exec` (tp_btf `sched_process_exec`) reports the file the kernel really ran and the `#!`
//!   interpreter it opened, which no syscall names.
//!
//! Relative paths get their base directory walked here, in the kernel, while it is still the
//! process's cwd or dirfd: a process that lives for a millisecond is resolved as well as one
//! that lives for an hour.
#![no_std]
#![no_main]
// The BPF target has atomic adds but no compare-and-swap, so `AtomicU64::fetch_add` is not
// offered; the intrinsic lowers to the BPF atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod dedup;
mod kernel;
mod walk;

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel_str, bpf_probe_read_user,
        bpf_probe_read_user_str,
    },
    macros::{btf_tracepoint, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::BtfTracePointContext,
};
use kernel::{BPRM_FILE, BPRM_FILENAME, BPRM_INTERP, KPath, kptr, off};
use slim_common::{
    AT_FDCWD, CGROUP_NAME_CAP, CgroupName, DIR_CAP, MAX_CGROUP_LEVEL, MAX_SYSCALL_NR, Op, PATH_CAP,
    PATH_OFFSET, PathEvent, Pending, SYSCALL_WORDS, SyscallSet, SyscallSpec, config, flags_kind,
    stat, status, verdict,
};

/// Events to user space. User space sets the real size at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 23, 0);

/// Cgroup v2 ids and their `slim_common::verdict`: a watched cgroup (a container's own, a
/// parent slimd created for one, or a parent where a runtime's containers are born) covers
/// its subtree, and an ignored one takes its own subtree back out.
#[map]
static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(16384, 0);

/// Names of cgroups first seen through a watched ancestor, by cgroup id.
#[map]
static NAMES: LruHashMap<u64, CgroupName> = LruHashMap::with_max_entries(4096, 0);

/// Scratch space for a name (kept off the stack).
#[map]
static NAME_SCRATCH: PerCpuArray<CgroupName> = PerCpuArray::with_max_entries(1, 0);

/// Run-time settings and state, indexed by `slim_common::config`.
#[map]
static CONFIG: Array<u64> = Array::with_max_entries(config::COUNT, 0);

/// Per syscall number: which arguments hold its path, dirfd and flags.
#[map]
static SPECS: Array<SyscallSpec> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Counters, indexed by `slim_common::stat`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Scratch space to build an event in (too large for the 512-byte stack).
#[map]
static SCRATCH: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// Events whose path is read at their thread's next syscall, by thread id. A plain hash map:
/// when it is full an insert fails and is counted, where an LRU map would evict silently.
#[map]
static PENDING: HashMap<u32, Pending> = HashMap::with_max_entries(2048, 0);

/// The syscalls made in each watched cgroup, by the cgroup's id. Per CPU, so that setting a
/// bit needs no atomic operation; a plain hash map, so that a full one fails (and is
/// counted) rather than evicting.
#[map]
static SYSCALLS: PerCpuHashMap<u64, SyscallSet> = PerCpuHashMap::with_max_entries(16384, 0);

/// An empty set to insert (kept off the stack).
#[map]
static EMPTY_SET: PerCpuArray<SyscallSet> = PerCpuArray::with_max_entries(1, 0);

const O_NOFOLLOW: u32 = 0o400000;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;

#[inline(always)]
pub(crate) fn count(index: u32) {
    if let Some(c) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// A remembered verdict of `watch_id` (watch 0: not watched), and the syscalls of the cgroup
/// known to be recorded already, so that the steady state costs no map lookup beyond this.
#[repr(C)]
#[derive(Clone, Copy)]
struct WatchVerdict {
    cgroup: u64,
    watch: u64,
    generation: u64,
    native: [u64; SYSCALL_WORDS],
    compat: [u64; SYSCALL_WORDS],
}

const VERDICT_SLOTS: u32 = 64;

/// Per-CPU cache of recent watch verdicts, valid while `CONFIG[GENERATION]` is unchanged.
#[map]
static VERDICTS: PerCpuArray<WatchVerdict> = PerCpuArray::with_max_entries(VERDICT_SLOTS, 0);

/// The watched cgroup a process of `cgroup` belongs to: the nearest of its own cgroup and its
/// ancestors that has an entry decides (watched: that one; ignored: none).
#[inline(always)]
fn watch_id(cgroup: u64) -> Option<u64> {
    let slot = verdict(cgroup)?;
    (slot.watch != 0).then_some(slot.watch)
}

/// This CPU's cached verdict of `cgroup`, looked up anew when it is not the cached one.
#[inline(always)]
fn verdict(cgroup: u64) -> Option<&'static mut WatchVerdict> {
    let generation = *CONFIG.get(config::GENERATION)?;
    let slot = VERDICTS.get_ptr_mut(cgroup as u32 & (VERDICT_SLOTS - 1))?;
    // SAFETY: per-CPU slot, no concurrent writer on this CPU.
    let slot = unsafe { &mut *slot };
    if slot.cgroup == cgroup && slot.generation == generation {
        return Some(slot);
    }
    let watch = lookup_watch(cgroup);
    if let Some(w) = watch
        && w != cgroup
    {
        remember_name(cgroup, w);
    }
    slot.cgroup = cgroup;
    slot.watch = watch.unwrap_or(0);
    slot.generation = generation;
    slot.native = [0; SYSCALL_WORDS];
    slot.compat = [0; SYSCALL_WORDS];
    Some(slot)
}

#[inline(always)]
fn lookup_watch(cgroup: u64) -> Option<u64> {
    // SAFETY: a plain u32 value, copied out.
    if let Some(&v) = unsafe { WATCHED.get(&cgroup) } {
        return (v == verdict::WATCH).then_some(cgroup);
    }
    let mask = *CONFIG.get(config::LEVELS)?;
    if mask == 0 {
        return None;
    }
    // Deepest first: a container ignored below a watched parent stays ignored.
    for i in 1..MAX_CGROUP_LEVEL {
        let level = MAX_CGROUP_LEVEL - i;
        if mask & (1 << level) != 0 {
            // SAFETY: helper with a plain integer argument (0 beyond the process's depth).
            let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            // SAFETY: a plain u32 value, copied out.
            if let Some(&v) = unsafe { WATCHED.get(&ancestor) } {
                return (v == verdict::WATCH).then_some(ancestor);
            }
        }
    }
    None
}

/// Keeps the name of a cgroup seen through the watched ancestor `watch` (once per cgroup,
/// CPU and change of the watched set).
#[inline(always)]
fn remember_name(cgroup: u64, watch: u64) {
    let Some(scratch) = NAME_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU scratch slot, used by one program at a time on this CPU.
    let scratch = unsafe { &mut *scratch };
    scratch.watch_id = watch;
    // SAFETY: the helper checks the kernel address and writes at most the buffer's size.
    let n = unsafe {
        bpf_probe_read_kernel_str(
            scratch.name.as_mut_ptr().cast(),
            CGROUP_NAME_CAP as u32,
            kernel::cgroup_name().cast(),
        )
    };
    if n > 0 {
        let _ = NAMES.insert(&cgroup, &*scratch, 0);
    }
}

/// The cheap fields of an event, needed to decide whether to send it.
#[inline(always)]
fn start_event(ev: &mut PathEvent, cgroup: u64, watch: u64, op: Op, nr: u32) {
    ev.cgroup_id = cgroup;
    ev.watch_id = watch;
    ev.op = op as u8;
    ev.syscall_nr = nr;
    ev.status = 0;
    ev.flags = 0;
    ev.path_len = 0;
    ev.dir_len = 0;
    ev.dir_depth = 0;
    ev.path[0] = 0;
    ev.dir[0] = 0;
}

/// The fields only a sent event needs: process, time, command name and the process's root.
#[inline(always)]
fn finish_event(ev: &mut PathEvent) {
    // SAFETY: helpers without pointer arguments, and comm into a buffer of its size.
    unsafe {
        let pid_tgid = bpf_get_current_pid_tgid();
        ev.tgid = (pid_tgid >> 32) as u32;
        ev.tid = pid_tgid as u32;
        ev.ktime_ns = bpf_ktime_get_ns();
        bpf_get_current_comm(ev.comm.as_mut_ptr().cast(), ev.comm.len() as u32);
    }
    (ev.root_dev, ev.root_ino) = kernel::root_identity();
}

/// Sends an event, cut after its path when it carries no directory. False when the ring
/// buffer is full (counted as lost).
#[inline(always)]
fn send(ev: &PathEvent) -> bool {
    let len = if ev.status & status::HAS_DIR != 0 {
        size_of::<PathEvent>()
    } else {
        let path = usize::from(ev.path_len).min(PATH_CAP);
        (PATH_OFFSET + path + 7) & !7
    };
    let len = len.min(size_of::<PathEvent>());
    // SAFETY: `len` bytes of the event, which is plain data.
    let bytes = unsafe { core::slice::from_raw_parts((ev as *const PathEvent).cast::<u8>(), len) };
    if EVENTS.output::<[u8]>(bytes, 0).is_ok() {
        count(stat::SENT);
        true
    } else {
        count(stat::LOST);
        false
    }
}

/// Sends an event unless it was sent recently.
#[inline(always)]
fn send_once(ev: &mut PathEvent, base: &Base) {
    let key = dedup::key(ev, base.identity());
    if dedup::seen_before(key) {
        return;
    }
    base.walk(ev);
    finish_event(ev);
    if !send(ev) {
        dedup::forget(key);
    }
}

/// Reads the user path into `ev.path`. Err(()) when its memory is not readable (yet).
#[inline(always)]
fn read_user_path(ev: &mut PathEvent, user_path: u64) -> Result<(), ()> {
    // SAFETY: the helper checks the user address and writes at most PATH_CAP bytes.
    let n = unsafe {
        bpf_probe_read_user_str(
            ev.path.as_mut_ptr().cast(),
            PATH_CAP as u32,
            user_path as *const _,
        )
    };
    if n <= 0 {
        ev.path[0] = 0;
        return Err(());
    }
    ev.path_len = n as u16;
    if n as usize >= PATH_CAP {
        ev.status |= status::PATH_TRUNCATED;
    }
    Ok(())
}

#[inline(always)]
fn read_kernel_path(ev: &mut PathEvent, src: *const u8) {
    // SAFETY: the helper checks the kernel address and writes at most PATH_CAP bytes.
    let n = unsafe {
        bpf_probe_read_kernel_str(ev.path.as_mut_ptr().cast(), PATH_CAP as u32, src.cast())
    };
    if n <= 0 {
        ev.path[0] = 0;
        ev.status |= status::PATH_UNREADABLE;
        return;
    }
    ev.path_len = n as u16;
    if n as usize >= PATH_CAP {
        ev.status |= status::PATH_TRUNCATED;
    }
}

#[inline(always)]
fn read_flags(regs: *const u8, spec: &SyscallSpec) -> u32 {
    if spec.flags_kind == flags_kind::NONE {
        return 0;
    }
    let raw = kernel::syscall_arg(regs, spec.flags_arg).unwrap_or(0);
    if spec.flags_kind == flags_kind::OPEN_HOW {
        let mut flags: u64 = 0;
        // SAFETY: the helper checks the user address.
        unsafe { bpf_probe_read_user((&mut flags as *mut u64).cast(), 8, raw as *const _) };
        flags as u32
    } else {
        raw as u32
    }
}

#[inline(always)]
fn nofollow(spec: &SyscallSpec, flags: u32) -> bool {
    spec.fixed_status & status::NOFOLLOW != 0
        || (spec.flags_kind == flags_kind::AT && flags & AT_SYMLINK_NOFOLLOW != 0)
        || ((spec.flags_kind == flags_kind::OPEN || spec.flags_kind == flags_kind::OPEN_HOW)
            && flags & O_NOFOLLOW != 0)
}

/// The directory a relative path starts from, and the process's root the walk stops at.
/// Null pointers when there is none. (A plain struct rather than an `Option`: LLVM may copy
/// the undefined payload of a `None`, and the verifier refuses reads of unset registers.)
#[derive(Clone, Copy)]
struct Base {
    root: KPath,
    start: KPath,
}

impl Base {
    const NONE: Base = Base {
        root: KPath::NULL,
        start: KPath::NULL,
    };

    /// The process's cwd (`AT_FDCWD`) or the directory behind `dirfd`.
    #[inline(always)]
    fn of(dirfd: i32) -> Base {
        let root = kernel::task_root();
        let start = if dirfd == AT_FDCWD {
            kernel::task_pwd()
        } else {
            kernel::fd_path(dirfd)
        };
        match (root, start) {
            (Some(root), Some(start)) => Base { root, start },
            _ => Base::NONE,
        }
    }

    #[inline(always)]
    fn is_some(&self) -> bool {
        !self.start.dentry.is_null()
    }

    #[inline(always)]
    fn identity(&self) -> (u64, u64) {
        if self.is_some() {
            self.start.identity()
        } else {
            (0, 0)
        }
    }

    #[inline(always)]
    fn walk(&self, ev: &mut PathEvent) {
        if self.is_some() {
            walk::walk(ev, self.root, self.start);
        }
    }
}

#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> i32 {
    let _ = try_sys_enter(&ctx);
    0
}

fn try_sys_enter(ctx: &BtfTracePointContext) -> Option<()> {
    // Nearly always nothing is pending: one array read.
    if *CONFIG.get(config::PENDING)? != 0 {
        // SAFETY: helper without arguments.
        retry_pending(ctx, unsafe { bpf_get_current_pid_tgid() });
    }
    let nr: i64 = ctx.arg(1);
    // SAFETY: helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let slot = verdict(cgroup)?;
    let watch = slot.watch;
    if watch == 0 {
        return None;
    }
    if nr < 0 || nr >= i64::from(MAX_SYSCALL_NR) {
        count(stat::SYSCALLS_UNRECORDED);
        return None;
    }
    let compat = kernel::in_compat_syscall();
    record_syscall(slot, nr as u32, compat);
    // Path arguments are read by the x86_64 table only.
    if compat {
        return None;
    }
    let spec = *SPECS.get(nr as u32)?;
    let op = Op::from_u8(spec.op)?;
    let regs: *const u8 = ctx.arg(0);
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch slot, used by one program at a time on this CPU.
    let scratch = unsafe { &mut *scratch };
    let ev = &mut scratch.event;
    start_event(ev, cgroup, watch, op, nr as u32);
    ev.flags = read_flags(regs, &spec);
    if nofollow(&spec, ev.flags) {
        ev.status |= status::NOFOLLOW;
    }

    let mut user_path: u64 = 0;
    let mut pending = false;
    if spec.path_arg != 0 {
        user_path = kernel::syscall_arg(regs, spec.path_arg)?;
        // A NULL path (utimensat) means the dirfd itself, like an empty one.
        if user_path != 0 {
            pending = read_user_path(ev, user_path).is_err();
        }
    }
    let absolute = ev.path_len > 1 && ev.path[0] == b'/';
    let base = if absolute {
        Base::NONE
    } else if spec.dirfd_arg == 0 {
        Base::of(AT_FDCWD)
    } else {
        Base::of(kernel::syscall_arg(regs, spec.dirfd_arg)? as i32)
    };
    if pending {
        // An absolute path cannot be told from a relative one yet: walk the base anyway,
        // while it is still the process's cwd or dirfd.
        base.walk(ev);
        ev.status |= status::RETRIED;
        finish_event(ev);
        let tid = ev.tid;
        scratch.user_path = user_path;
        scratch.task_start = kernel::task_start_time();
        if PENDING.insert(&tid, &*scratch, 0).is_err() {
            aya_log_ebpf::debug!(ctx, "no room to retry the path of thread {}: lost", tid);
            count(stat::RETRY_LOST);
        } else {
            add_pending(1);
        }
        return Some(());
    }
    send_once(ev, &base);
    Some(())
}

/// Sets syscall `nr`'s bit in the set of the slot's cgroup, when the container's own program
/// made it. Nearly always this CPU knows the bit is set already.
#[inline(always)]
fn record_syscall(slot: &mut WatchVerdict, nr: u32, compat: bool) {
    let word = (nr / 64) as usize & (SYSCALL_WORDS - 1);
    let bit = 1u64 << (nr % 64);
    let known = if compat {
        &mut slot.compat
    } else {
        &mut slot.native
    };
    if known[word] & bit != 0 || !kernel::runs_own_program() {
        return;
    }
    let cgroup = slot.cgroup;
    let set = match SYSCALLS.get_ptr_mut(&cgroup) {
        Some(set) => set,
        None => {
            let Some(empty) = EMPTY_SET.get_ptr_mut(0) else {
                return;
            };
            // SAFETY: per-CPU scratch slot, used by one program at a time on this CPU.
            let empty = unsafe { &mut *empty };
            empty.watch_id = slot.watch;
            if SYSCALLS.insert(&cgroup, &*empty, 0).is_err() {
                count(stat::SYSCALLS_UNRECORDED);
                return;
            }
            match SYSCALLS.get_ptr_mut(&cgroup) {
                Some(set) => set,
                None => return,
            }
        }
    };
    // SAFETY: this CPU's copy of the entry; no other program writes it meanwhile.
    let set = unsafe { &mut *set };
    let words = if compat {
        &mut set.compat
    } else {
        &mut set.native
    };
    words[word] |= bit;
    known[word] |= bit;
}

/// Sends the event a thread left pending on its previous syscall, now that the kernel has
/// faulted its path in.
#[inline(always)]
fn retry_pending(ctx: &BtfTracePointContext, pid_tgid: u64) {
    let tid = pid_tgid as u32;
    let Some(pending) = PENDING.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: the entry is keyed by this thread's id, and only this thread's programs use it.
    let pending = unsafe { &mut *pending };
    // A thread that died inside its syscall left the entry; a later one with its id must not
    // read its own memory at that address and report it as the dead thread's path.
    if !is_own(pending, pid_tgid) {
        aya_log_ebpf::debug!(
            ctx,
            "thread {} reuses the id of a thread that died with a path pending",
            tid
        );
        count(stat::RETRY_LOST);
        drop_pending(tid);
        return;
    }
    let ev = &mut pending.event;
    if read_user_path(ev, pending.user_path).is_ok() {
        count(stat::RETRIED);
        // The walk is done: the walked text identifies the directory.
        let dir_identity = if ev.path[0] == b'/' {
            (0, 0)
        } else {
            let len = usize::from(ev.dir_len).min(DIR_CAP);
            (dedup::hash_bytes(0, ev.dir.as_ptr(), len), len as u64)
        };
        let key = dedup::key(ev, dir_identity);
        if !dedup::seen_before(key) && !send(ev) {
            dedup::forget(key);
        }
    } else {
        ev.status |= status::PATH_UNREADABLE;
        send(ev);
    }
    drop_pending(tid);
}

/// Whether a pending entry was left by the running thread (and not by a dead one whose id it
/// reuses).
#[inline(always)]
fn is_own(pending: &Pending, pid_tgid: u64) -> bool {
    // SAFETY: helper without arguments.
    pending.event.tgid == (pid_tgid >> 32) as u32
        && pending.event.cgroup_id == unsafe { bpf_get_current_cgroup_id() }
        && pending.task_start == kernel::task_start_time()
}

#[inline(always)]
fn drop_pending(tid: u32) {
    if PENDING.remove(&tid).is_ok() {
        add_pending(u64::MAX);
    }
}

/// Keeps `CONFIG[PENDING]` at the number of pending entries (`delta` wraps: `u64::MAX` is
/// -1). An entry that is evicted, or whose thread is killed inside its syscall, leaves the
/// count high: that only costs `sys_enter` its shortcut, never an event.
#[inline(always)]
fn add_pending(delta: u64) {
    if let Some(slot) = CONFIG.get_ptr_mut(config::PENDING) {
        // SAFETY: an aligned u64 slot of an array map, updated atomically.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                slot, delta,
            )
        };
    }
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn exec(ctx: BtfTracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &BtfTracePointContext) -> Option<()> {
    // SAFETY: helper without arguments.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let watch = watch_id(cgroup)?;
    let bprm: *const u8 = ctx.arg(2);
    // A path left pending before the exec pointed into the old memory: the exec replaced it.
    // (When it was the exec's own path, this event reports the file run.)
    if *CONFIG.get(config::PENDING)? != 0 {
        // SAFETY: helper without arguments.
        let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
        if let Some(pending) = PENDING.get_ptr(&(pid_tgid as u32)) {
            // SAFETY: the entry is keyed by this thread's id; it is only read.
            if !is_own(unsafe { &*pending }, pid_tgid) {
                count(stat::RETRY_LOST);
            }
            drop_pending(pid_tgid as u32);
        }
    }
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch slot, used by one program at a time on this CPU.
    let ev = unsafe { &mut (*scratch).event };
    let root = kernel::task_root()?;

    start_event(ev, cgroup, watch, Op::ExecFile, 0);
    let filename = kptr(bprm, off(&BPRM_FILENAME));
    read_kernel_path(ev, filename);
    if let Some(exe) = kernel::file_path(kptr(bprm, off(&BPRM_FILE))) {
        walk::walk(ev, root, exe);
    }
    finish_event(ev);
    send(ev);

    let interp = kptr(bprm, off(&BPRM_INTERP));
    if !interp.is_null() && interp != filename {
        start_event(ev, cgroup, watch, Op::Interp, 0);
        read_kernel_path(ev, interp);
        if ev.path[0] != b'/'
            && let Some(pwd) = kernel::task_pwd()
        {
            walk::walk(ev, root, pwd);
        }
        finish_event(ev);
        send(ev);
    }
    Some(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
