//! slimd's kernel side: every path a watched container's processes name.
//!
//! - `sys_enter` (raw tracepoint) sees every syscall; the `SPECS` table, filled by user space
//!   and indexed by syscall number, says which ones name a path and which of their arguments
//!   hold the path, the directory fd and the flags. One attachment instead of one per syscall
//!   keeps attaching and detaching fast (each detach waits for an RCU grace period).
//! - `sys_exit` finishes events whose path could not be read on entry because its page was
//!   not yet resident.
//! - `exec` (tp_btf `sched_process_exec`) reports the file the kernel really ran and the `#!`
//!   interpreter it opened, which no syscall names.
//!
//! Relative paths get their base directory walked here, in the kernel, while it is still the
//! process's cwd or dirfd: a process that lives for a millisecond is resolved as well as one
//! that lives for an hour.
#![no_std]
#![no_main]

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    helpers::generated::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_loop,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
        bpf_probe_read_user_str,
    },
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use slim_common::{
    AT_FDCWD, DIR_BUF, DIR_CAP, MAX_CGROUP_LEVEL, MAX_DEPTH, MAX_SYSCALL_NR, NAME_CAP, Op,
    PATH_CAP, PathEvent, SeenKey, SyscallSpec, config, flags_kind, stat, status,
};

/// Events to user space. User space sets the real size at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 23, 0);

/// Watched cgroup v2 ids (a container's own cgroup, or a parent slimd created for it).
#[map]
static WATCHED: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Run-time settings and state, indexed by `slim_common::config`.
#[map]
static CONFIG: Array<u64> = Array::with_max_entries(config::COUNT, 0);

/// Per syscall number: where its path, dirfd and flags are.
#[map]
static SPECS: Array<SyscallSpec> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Counters, indexed by `slim_common::stat`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Scratch space to build an event in (too large for the 512-byte stack).
#[map]
static SCRATCH: PerCpuArray<Pending> = PerCpuArray::with_max_entries(1, 0);

/// Recently sent paths, so hot loops do not flood the ring buffer.
#[map]
static SEEN: LruHashMap<SeenKey, u8> = LruHashMap::with_max_entries(65536, 0);

/// Events whose path is read on the syscall's exit side, by thread id.
#[map]
static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(2048, 0);

#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    user_path: u64,
    event: PathEvent,
}

// Kernel struct member offsets. Rust eBPF has no CO-RE relocations, so user space reads them
// from /sys/kernel/btf/vmlinux and overrides these read-only globals at load time.
// Offsets in `struct pt_regs` of the syscall arguments, in ABI order.
#[unsafe(no_mangle)]
static ARG0: u64 = 0;
#[unsafe(no_mangle)]
static ARG1: u64 = 0;
#[unsafe(no_mangle)]
static ARG2: u64 = 0;
#[unsafe(no_mangle)]
static ARG3: u64 = 0;
#[unsafe(no_mangle)]
static ARG4: u64 = 0;
#[unsafe(no_mangle)]
static ARG5: u64 = 0;
#[unsafe(no_mangle)]
static TASK_FS: u64 = 0;
#[unsafe(no_mangle)]
static TASK_FILES: u64 = 0;
#[unsafe(no_mangle)]
static FS_ROOT: u64 = 0;
#[unsafe(no_mangle)]
static FS_PWD: u64 = 0;
#[unsafe(no_mangle)]
static PATH_MNT: u64 = 0;
#[unsafe(no_mangle)]
static PATH_DENTRY: u64 = 0;
#[unsafe(no_mangle)]
static FILES_FDT: u64 = 0;
#[unsafe(no_mangle)]
static FDT_MAX_FDS: u64 = 0;
#[unsafe(no_mangle)]
static FDT_FD: u64 = 0;
#[unsafe(no_mangle)]
static FILE_F_PATH: u64 = 0;
#[unsafe(no_mangle)]
static DENTRY_PARENT: u64 = 0;
#[unsafe(no_mangle)]
static DENTRY_NAME: u64 = 0;
#[unsafe(no_mangle)]
static DENTRY_INODE: u64 = 0;
#[unsafe(no_mangle)]
static INODE_INO: u64 = 0;
#[unsafe(no_mangle)]
static INODE_SB: u64 = 0;
#[unsafe(no_mangle)]
static SB_DEV: u64 = 0;
#[unsafe(no_mangle)]
static MOUNT_PARENT: u64 = 0;
#[unsafe(no_mangle)]
static MOUNT_MOUNTPOINT: u64 = 0;
#[unsafe(no_mangle)]
static MOUNT_MNT: u64 = 0;
#[unsafe(no_mangle)]
static VFSMOUNT_ROOT: u64 = 0;
#[unsafe(no_mangle)]
static BPRM_FILE: u64 = 0;
#[unsafe(no_mangle)]
static BPRM_FILENAME: u64 = 0;
#[unsafe(no_mangle)]
static BPRM_INTERP: u64 = 0;

const O_NOFOLLOW: u32 = 0o400000;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
const EXEC_RET_OK: i64 = 0;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

#[inline(always)]
fn off(v: &'static u64) -> usize {
    // SAFETY: reading a static; volatile so the compiler does not fold the default value.
    unsafe { ptr::read_volatile(v) as usize }
}

/// Reads a kernel pointer at `base + offset`; null on failure.
#[inline(always)]
fn kptr(base: *const u8, offset: usize) -> *const u8 {
    let mut out: *const u8 = ptr::null();
    // SAFETY: bpf_probe_read_kernel checks the source address.
    let ret = unsafe {
        bpf_probe_read_kernel(
            (&mut out as *mut *const u8).cast(),
            8,
            base.wrapping_add(offset).cast(),
        )
    };
    if ret < 0 { ptr::null() } else { out }
}

#[inline(always)]
fn count(index: u32) {
    if let Some(c) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

/// The watched cgroup this process belongs to: its own, or an ancestor at a watched level.
#[inline(always)]
fn watch_id() -> Option<u64> {
    // SAFETY: helper without arguments.
    let id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value is only tested for presence.
    if unsafe { WATCHED.get(&id) }.is_some() {
        return Some(id);
    }
    let mask = *CONFIG.get(config::LEVELS)?;
    if mask == 0 {
        return None;
    }
    for level in 1..MAX_CGROUP_LEVEL {
        if mask & (1 << level) != 0 {
            // SAFETY: helper with a plain integer argument.
            let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            if unsafe { WATCHED.get(&ancestor) }.is_some() {
                return Some(ancestor);
            }
        }
    }
    None
}

#[inline(always)]
fn fill_header(ev: &mut PathEvent, watch: u64, op: Op, nr: u32) {
    // SAFETY: helpers without pointer arguments, and comm into a buffer of its size.
    unsafe {
        ev.cgroup_id = bpf_get_current_cgroup_id();
        ev.ktime_ns = bpf_ktime_get_ns();
        let pid_tgid = bpf_get_current_pid_tgid();
        ev.tgid = (pid_tgid >> 32) as u32;
        ev.tid = pid_tgid as u32;
        bpf_get_current_comm(ev.comm.as_mut_ptr().cast(), ev.comm.len() as u32);
    }
    ev.watch_id = watch;
    ev.op = op as u8;
    ev.syscall_nr = nr;
    ev.status = 0;
    ev.flags = 0;
    ev.path_len = 0;
    ev.dir_len = 0;
    ev.dir_depth = 0;
    ev.root_dev = 0;
    ev.root_ino = 0;
    ev.path[0] = 0;
    ev.dir[0] = 0;
}

/// A `struct path` (mount + dentry) as two kernel pointers.
#[derive(Clone, Copy)]
struct KPath {
    vfsmount: *const u8,
    dentry: *const u8,
}

impl KPath {
    #[inline(always)]
    fn read(at: *const u8) -> Self {
        Self {
            vfsmount: kptr(at, off(&PATH_MNT)),
            dentry: kptr(at, off(&PATH_DENTRY)),
        }
    }

    #[inline(always)]
    fn is_null(&self) -> bool {
        self.vfsmount.is_null() || self.dentry.is_null()
    }
}

/// The process's root and the directory a relative path starts from (`AT_FDCWD` = cwd).
#[inline(always)]
fn base_dir(dirfd: i32) -> Option<(KPath, KPath)> {
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let fs = kptr(task, off(&TASK_FS));
    if fs.is_null() {
        return None;
    }
    let root = KPath::read(fs.wrapping_add(off(&FS_ROOT)));
    let base = if dirfd == AT_FDCWD {
        KPath::read(fs.wrapping_add(off(&FS_PWD)))
    } else {
        file_path(kptr(task, off(&TASK_FILES)), dirfd)?
    };
    if root.is_null() || base.is_null() {
        return None;
    }
    Some((root, base))
}

/// The `f_path` of the file behind `fd` in `files`.
#[inline(always)]
fn file_path(files: *const u8, fd: i32) -> Option<KPath> {
    if files.is_null() || fd < 0 {
        return None;
    }
    let fdt = kptr(files, off(&FILES_FDT));
    if fdt.is_null() {
        return None;
    }
    let mut max_fds: u32 = 0;
    // SAFETY: bpf_probe_read_kernel checks the source address.
    let ret = unsafe {
        bpf_probe_read_kernel(
            (&mut max_fds as *mut u32).cast(),
            4,
            fdt.wrapping_add(off(&FDT_MAX_FDS)).cast(),
        )
    };
    if ret < 0 || fd as u32 >= max_fds {
        return None;
    }
    let file = kptr(kptr(fdt, off(&FDT_FD)), fd as usize * 8);
    if file.is_null() {
        return None;
    }
    let path = KPath::read(file.wrapping_add(off(&FILE_F_PATH)));
    if path.is_null() { None } else { Some(path) }
}

/// State of a directory walk, shared with its `bpf_loop` callback.
#[repr(C)]
struct WalkState {
    ev: *mut PathEvent,
    root: KPath,
    vfsmount: *const u8,
    dentry: *const u8,
    mount: *const u8,
    used: u64,
    depth: u64,
    complete: u64,
}

/// One step of a walk: one component written, or one mount crossed. 1 stops the loop.
#[inline(never)]
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the WalkState given to it.
    let st = unsafe { &mut *(ctx as *mut WalkState) };
    if st.dentry == st.root.dentry && st.vfsmount == st.root.vfsmount {
        st.complete = 1;
        return 1;
    }
    let parent = kptr(st.dentry, off(&DENTRY_PARENT));
    let mnt_root = kptr(st.vfsmount, off(&VFSMOUNT_ROOT));
    if st.dentry == mnt_root || st.dentry == parent {
        let mount_parent = kptr(st.mount, off(&MOUNT_PARENT));
        if mount_parent.is_null() || mount_parent == st.mount {
            st.complete = 1;
            return 1;
        }
        st.dentry = kptr(st.mount, off(&MOUNT_MOUNTPOINT));
        st.mount = mount_parent;
        st.vfsmount = mount_parent.wrapping_add(off(&MOUNT_MNT));
        return 0;
    }
    if st.used as usize >= DIR_CAP {
        return 1;
    }
    let name = kptr(st.dentry, off(&DENTRY_NAME));
    let at = st.used as usize & (DIR_CAP - 1);
    // SAFETY: `at < DIR_CAP` and at most NAME_CAP bytes are written, inside DIR_BUF.
    let n = unsafe {
        let ev = &mut *st.ev;
        bpf_probe_read_kernel_str(
            ev.dir.as_mut_ptr().add(at).cast(),
            NAME_CAP as u32,
            name.cast(),
        )
    };
    if n <= 0 {
        return 1;
    }
    st.used = (at + n as usize) as u64;
    st.depth += 1;
    st.dentry = parent;
    0
}

/// Writes the components from `start` up to `root` into `ev.dir`, leaf first, each
/// NUL-terminated. Crosses mount points the way `d_path` does.
#[inline(always)]
fn walk(ev: &mut PathEvent, root: KPath, start: KPath) {
    let mut st = WalkState {
        ev: ev as *mut PathEvent,
        root,
        vfsmount: start.vfsmount,
        dentry: start.dentry,
        mount: start.vfsmount.wrapping_sub(off(&MOUNT_MNT)),
        used: 0,
        depth: 0,
        complete: 0,
    };
    // SAFETY: the callback only touches the state it is given.
    unsafe {
        bpf_loop(
            MAX_DEPTH,
            walk_step as *mut c_void,
            (&mut st as *mut WalkState).cast(),
            0,
        )
    };
    ev.dir_len = (st.used as usize).min(DIR_BUF) as u16;
    ev.dir_depth = st.depth as u16;
    ev.status |= status::HAS_DIR;
    if st.complete == 0 {
        ev.status |= status::DIR_TRUNCATED;
    }
}

/// Identity of a directory dentry for de-duplication: its address and inode number.
#[inline(always)]
fn dentry_identity(dentry: *const u8) -> (u64, u64) {
    let inode = kptr(dentry, off(&DENTRY_INODE));
    let mut ino: u64 = 0;
    if !inode.is_null() {
        // SAFETY: bpf_probe_read_kernel checks the source address.
        unsafe {
            bpf_probe_read_kernel(
                (&mut ino as *mut u64).cast(),
                8,
                inode.wrapping_add(off(&INODE_INO)).cast(),
            )
        };
    }
    (dentry as u64, ino)
}

/// State of an FNV-1a hash over bytes of an event, shared with its `bpf_loop` callback.
#[repr(C)]
struct HashState {
    bytes: *const u8,
    len: u64,
    hash: u64,
}

#[inline(never)]
extern "C" fn hash_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes the HashState given to it.
    let st = unsafe { &mut *(ctx as *mut HashState) };
    if index >= st.len {
        return 1;
    }
    // SAFETY: `bytes` points at a PATH_CAP or DIR_CAP array of the event; the mask keeps the
    // index inside both.
    let byte = unsafe { *st.bytes.add(index as usize & (PATH_CAP - 1)) };
    st.hash = (st.hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
    0
}

#[inline(always)]
fn hash_bytes(seed: u64, bytes: *const u8, len: usize) -> u64 {
    let mut st = HashState {
        bytes,
        len: len as u64,
        hash: seed,
    };
    // SAFETY: the callback only reads the bytes it is given.
    unsafe {
        bpf_loop(
            PATH_CAP as u32,
            hash_step as *mut c_void,
            (&mut st as *mut HashState).cast(),
            0,
        )
    };
    st.hash
}

#[inline(always)]
fn path_hash(ev: &PathEvent) -> u64 {
    let seed = (FNV_OFFSET ^ ((ev.op as u64) << 8 | (ev.status & status::NOFOLLOW) as u64))
        .wrapping_mul(FNV_PRIME)
        ^ u64::from(ev.flags);
    hash_bytes(seed, ev.path.as_ptr(), ev.path_len as usize)
}

/// True when the same process group already reported this path recently.
#[inline(always)]
fn seen_before(ev: &PathEvent, dir: (u64, u64)) -> bool {
    let key = SeenKey {
        cgroup_id: ev.cgroup_id,
        dir_dentry: dir.0,
        dir_ino: dir.1,
        hash: path_hash(ev),
    };
    // SAFETY: the value is only tested for presence.
    if unsafe { SEEN.get(&key) }.is_some() {
        count(stat::DEDUPED);
        return true;
    }
    let _ = SEEN.insert(&key, &1, 0);
    false
}

/// Records which root directory the process sees (host or container).
#[inline(always)]
fn fill_root(ev: &mut PathEvent) {
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let fs = kptr(task, off(&TASK_FS));
    let root = KPath::read(fs.wrapping_add(off(&FS_ROOT)));
    let inode = kptr(root.dentry, off(&DENTRY_INODE));
    let sb = kptr(inode, off(&INODE_SB));
    // SAFETY: bpf_probe_read_kernel checks the source addresses.
    unsafe {
        bpf_probe_read_kernel(
            (&mut ev.root_ino as *mut u64).cast(),
            8,
            inode.wrapping_add(off(&INODE_INO)).cast(),
        );
        bpf_probe_read_kernel(
            (&mut ev.root_dev as *mut u32).cast(),
            4,
            sb.wrapping_add(off(&SB_DEV)).cast(),
        );
    }
}

#[inline(always)]
fn send(ev: &PathEvent) {
    if EVENTS.output::<PathEvent>(ev, 0).is_ok() {
        count(stat::SENT);
    } else {
        count(stat::LOST);
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

/// Syscall argument `index` (1-based, as in `SyscallSpec`) from the saved registers.
#[inline(always)]
fn arg(regs: *const u8, index: u8) -> Option<u64> {
    let offset = match index {
        1 => off(&ARG0),
        2 => off(&ARG1),
        3 => off(&ARG2),
        4 => off(&ARG3),
        5 => off(&ARG4),
        6 => off(&ARG5),
        _ => return None,
    };
    let mut value: u64 = 0;
    // SAFETY: bpf_probe_read_kernel checks the source address.
    let ret = unsafe {
        bpf_probe_read_kernel(
            (&mut value as *mut u64).cast(),
            8,
            regs.wrapping_add(offset).cast(),
        )
    };
    (ret == 0).then_some(value)
}

#[inline(always)]
fn read_flags(regs: *const u8, spec: &SyscallSpec) -> u32 {
    if spec.flags_kind == flags_kind::NONE {
        return 0;
    }
    let raw = arg(regs, spec.flags_arg).unwrap_or(0);
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

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_enter(&ctx);
    0
}

fn try_sys_enter(ctx: &RawTracePointContext) -> Option<()> {
    let nr: i64 = ctx.arg(1);
    if nr < 0 || nr >= i64::from(MAX_SYSCALL_NR) {
        return None;
    }
    // Most syscalls name no path: decide that before anything else.
    let spec = *SPECS.get(nr as u32)?;
    let op = Op::from_u8(spec.op)?;
    let watch = watch_id()?;
    let regs: *const u8 = ctx.arg(0);
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch slot, used by one program at a time on this CPU.
    let scratch = unsafe { &mut *scratch };
    let ev = &mut scratch.event;
    fill_header(ev, watch, op, nr as u32);
    ev.flags = read_flags(regs, &spec);
    if nofollow(&spec, ev.flags) {
        ev.status |= status::NOFOLLOW;
    }

    let mut user_path: u64 = 0;
    let mut pending = false;
    if spec.path_arg != 0 {
        user_path = arg(regs, spec.path_arg)?;
        // A NULL path (utimensat) means the dirfd itself, like an empty one.
        if user_path != 0 {
            pending = read_user_path(ev, user_path).is_err();
        }
    }
    let absolute = ev.path_len > 1 && ev.path[0] == b'/';
    let mut dir = (0, 0);
    let mut base = None;
    if !absolute {
        let dirfd = if spec.dirfd_arg == 0 {
            AT_FDCWD
        } else {
            arg(regs, spec.dirfd_arg)? as i32
        };
        if let Some((root, start)) = base_dir(dirfd) {
            dir = dentry_identity(start.dentry);
            base = Some((root, start));
        }
    }
    if pending {
        // An absolute path cannot be told from a relative one yet: walk the base anyway.
        if let Some((root, start)) = base {
            walk(ev, root, start);
        }
        ev.status |= status::FROM_EXIT;
        fill_root(ev);
        let tid = ev.tid;
        scratch.user_path = user_path;
        if PENDING.insert(&tid, &*scratch, 0).is_err() {
            count(stat::RETRY_LOST);
        } else if let Some(flag) = CONFIG.get_ptr_mut(config::PENDING) {
            // SAFETY: a plain store into an array slot.
            unsafe { *flag = 1 };
        }
        return Some(());
    }
    if seen_before(ev, dir) {
        return Some(());
    }
    if let Some((root, start)) = base {
        walk(ev, root, start);
    }
    fill_root(ev);
    send(ev);
    Some(())
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_exit(&ctx);
    0
}

fn try_sys_exit(ctx: &RawTracePointContext) -> Option<()> {
    // Until a path first needs its exit side, this is one array read; after that, the
    // cgroup filter keeps other processes out.
    if *CONFIG.get(config::PENDING)? == 0 {
        return None;
    }
    watch_id()?;
    // SAFETY: helper without arguments.
    let tid = unsafe { bpf_get_current_pid_tgid() } as u32;
    let pending = PENDING.get_ptr_mut(&tid)?;
    // SAFETY: the entry belongs to this thread, which is the one running.
    let pending = unsafe { &mut *pending };
    let ev = &mut pending.event;
    let ret: i64 = ctx.arg(1);
    let exec_done = (ev.op == Op::Exec as u8) && ret == EXEC_RET_OK;
    if !exec_done {
        // A successful exec replaced the memory the path was in; `exec` reports that one.
        if read_user_path(ev, pending.user_path).is_ok() {
            count(stat::RETRIED);
            let dir = if ev.path[0] == b'/' {
                (0, 0)
            } else {
                dir_key_of(ev)
            };
            if !seen_before(ev, dir) {
                send(ev);
            }
        } else {
            ev.status |= status::PATH_UNREADABLE;
            send(ev);
        }
    }
    let _ = PENDING.remove(&tid);
    Some(())
}

/// De-duplication key part for an event whose walk is already done: the walked text itself
/// identifies the directory.
#[inline(always)]
fn dir_key_of(ev: &PathEvent) -> (u64, u64) {
    let len = (ev.dir_len as usize).min(DIR_CAP);
    (hash_bytes(FNV_OFFSET, ev.dir.as_ptr(), len), len as u64)
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn exec(ctx: BtfTracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &BtfTracePointContext) -> Option<()> {
    let watch = watch_id()?;
    let bprm: *const u8 = ctx.arg(2);
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU scratch slot, used by one program at a time on this CPU.
    let ev = unsafe { &mut (*scratch).event };

    fill_header(ev, watch, Op::ExecFile, 0);
    let filename = kptr(bprm, off(&BPRM_FILENAME));
    read_kernel_path(ev, filename);
    let file = kptr(bprm, off(&BPRM_FILE));
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let fs = kptr(task, off(&TASK_FS));
    let root = KPath::read(fs.wrapping_add(off(&FS_ROOT)));
    let exe = KPath::read(file.wrapping_add(off(&FILE_F_PATH)));
    if !file.is_null() && !fs.is_null() && !root.is_null() && !exe.is_null() {
        walk(ev, root, exe);
    }
    fill_root(ev);
    send(ev);

    let interp = kptr(bprm, off(&BPRM_INTERP));
    if !interp.is_null() && interp != filename {
        fill_header(ev, watch, Op::Interp, 0);
        read_kernel_path(ev, interp);
        if ev.path[0] != b'/' {
            let pwd = KPath::read(fs.wrapping_add(off(&FS_PWD)));
            if !fs.is_null() && !root.is_null() && !pwd.is_null() {
                walk(ev, root, pwd);
            }
        }
        fill_root(ev);
        send(ev);
    }
    Some(())
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
