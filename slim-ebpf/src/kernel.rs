//! Reading kernel structures: member offsets set by user space from the kernel's BTF, and
//! the few structs the programs walk.
use core::ptr;

use aya_ebpf::helpers::generated::{bpf_get_current_task, bpf_probe_read_kernel};

// Rust eBPF has no CO-RE relocations: user space reads these offsets from
// /sys/kernel/btf/vmlinux and overrides the read-only globals at load time.

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
pub static TASK_FS: u64 = 0;
#[unsafe(no_mangle)]
static TASK_START_TIME: u64 = 0;
#[unsafe(no_mangle)]
static TASK_CGROUPS: u64 = 0;
#[unsafe(no_mangle)]
static CSS_SET_DFL_CGRP: u64 = 0;
#[unsafe(no_mangle)]
static CGROUP_KN: u64 = 0;
#[unsafe(no_mangle)]
static KERNFS_NAME: u64 = 0;
#[unsafe(no_mangle)]
static TASK_FILES: u64 = 0;
#[unsafe(no_mangle)]
pub static FS_ROOT: u64 = 0;
#[unsafe(no_mangle)]
pub static FS_PWD: u64 = 0;
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
pub static FILE_F_PATH: u64 = 0;
#[unsafe(no_mangle)]
pub static DENTRY_PARENT: u64 = 0;
#[unsafe(no_mangle)]
pub static DENTRY_NAME: u64 = 0;
#[unsafe(no_mangle)]
static DENTRY_INODE: u64 = 0;
#[unsafe(no_mangle)]
static INODE_INO: u64 = 0;
#[unsafe(no_mangle)]
static INODE_SB: u64 = 0;
#[unsafe(no_mangle)]
static SB_DEV: u64 = 0;
#[unsafe(no_mangle)]
pub static MOUNT_PARENT: u64 = 0;
#[unsafe(no_mangle)]
pub static MOUNT_MOUNTPOINT: u64 = 0;
#[unsafe(no_mangle)]
pub static MOUNT_MNT: u64 = 0;
#[unsafe(no_mangle)]
pub static VFSMOUNT_ROOT: u64 = 0;
#[unsafe(no_mangle)]
static MOUNT_MNT_NS: u64 = 0;
#[unsafe(no_mangle)]
static TASK_MM: u64 = 0;
#[unsafe(no_mangle)]
static MM_EXE_FILE: u64 = 0;
#[unsafe(no_mangle)]
static TASK_TI_STATUS: u64 = 0;
#[unsafe(no_mangle)]
pub static BPRM_FILE: u64 = 0;
#[unsafe(no_mangle)]
pub static BPRM_FILENAME: u64 = 0;
#[unsafe(no_mangle)]
pub static BPRM_INTERP: u64 = 0;

#[inline(always)]
pub fn off(v: &'static u64) -> usize {
    // SAFETY: reading a static; volatile so the compiler does not fold the default value.
    unsafe { ptr::read_volatile(v) as usize }
}

/// Reads a `T` at `base + offset`; None when the address is not readable.
#[inline(always)]
pub fn read<T: Copy + Default>(base: *const u8, offset: usize) -> Option<T> {
    let mut out = T::default();
    // SAFETY: bpf_probe_read_kernel checks the source address.
    let ret = unsafe {
        bpf_probe_read_kernel(
            (&mut out as *mut T).cast(),
            size_of::<T>() as u32,
            base.wrapping_add(offset).cast(),
        )
    };
    (ret == 0).then_some(out)
}

/// Reads a kernel pointer at `base + offset`; null on failure.
#[inline(always)]
pub fn kptr(base: *const u8, offset: usize) -> *const u8 {
    read::<u64>(base, offset).map_or(ptr::null(), |p| p as *const u8)
}

/// Syscall argument `index` (1-based, as in `SyscallSpec`) from the saved registers, which a
/// BTF tracepoint may load directly.
#[inline(always)]
pub fn syscall_arg(regs: *const u8, index: u8) -> Option<u64> {
    let offset = match index {
        1 => off(&ARG0),
        2 => off(&ARG1),
        3 => off(&ARG2),
        4 => off(&ARG3),
        5 => off(&ARG4),
        6 => off(&ARG5),
        _ => return None,
    };
    // SAFETY: `regs` is the tracepoint's `struct pt_regs *` and `offset` one of its members.
    Some(unsafe { ptr::read_volatile(regs.add(offset).cast::<u64>()) })
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_task() as *const u8 }
}

/// A `struct path` (mount + dentry) as two kernel pointers.
#[derive(Clone, Copy)]
pub struct KPath {
    pub vfsmount: *const u8,
    pub dentry: *const u8,
}

impl KPath {
    pub const NULL: KPath = KPath {
        vfsmount: ptr::null(),
        dentry: ptr::null(),
    };

    #[inline(always)]
    pub fn read(at: *const u8) -> Option<Self> {
        let p = KPath {
            vfsmount: kptr(at, off(&PATH_MNT)),
            dentry: kptr(at, off(&PATH_DENTRY)),
        };
        (!p.vfsmount.is_null() && !p.dentry.is_null()).then_some(p)
    }

    /// Identity of the dentry for de-duplication: its address and inode number.
    #[inline(always)]
    pub fn identity(&self) -> (u64, u64) {
        let inode = kptr(self.dentry, off(&DENTRY_INODE));
        (
            self.dentry as u64,
            read::<u64>(inode, off(&INODE_INO)).unwrap_or(0),
        )
    }
}

/// The current task's start time (monotonic nanoseconds).
#[inline(always)]
pub fn task_start_time() -> u64 {
    read::<u64>(current_task(), off(&TASK_START_TIME)).unwrap_or(0)
}

/// The name of the current task's cgroup in the unified hierarchy
/// (`task->cgroups->dfl_cgrp->kn->name`).
#[inline(always)]
pub fn cgroup_name() -> *const u8 {
    let css_set = kptr(current_task(), off(&TASK_CGROUPS));
    let cgroup = kptr(css_set, off(&CSS_SET_DFL_CGRP));
    let kn = kptr(cgroup, off(&CGROUP_KN));
    kptr(kn, off(&KERNFS_NAME))
}

/// The current task's `fs_struct`.
#[inline(always)]
pub fn task_fs() -> *const u8 {
    kptr(current_task(), off(&TASK_FS))
}

/// The current task's root directory.
#[inline(always)]
pub fn task_root() -> Option<KPath> {
    KPath::read(task_fs().wrapping_add(off(&FS_ROOT)))
}

/// The current task's working directory.
#[inline(always)]
pub fn task_pwd() -> Option<KPath> {
    KPath::read(task_fs().wrapping_add(off(&FS_PWD)))
}

/// The path of the file behind the current task's file descriptor `fd`.
#[inline(always)]
pub fn fd_path(fd: i32) -> Option<KPath> {
    if fd < 0 {
        return None;
    }
    let files = kptr(current_task(), off(&TASK_FILES));
    let fdt = kptr(files, off(&FILES_FDT));
    let max_fds: u32 = read(fdt, off(&FDT_MAX_FDS))?;
    if fd as u32 >= max_fds {
        return None;
    }
    let file = kptr(kptr(fdt, off(&FDT_FD)), fd as usize * 8);
    file_path(file)
}

/// `file->f_path`.
#[inline(always)]
pub fn file_path(file: *const u8) -> Option<KPath> {
    if file.is_null() {
        return None;
    }
    KPath::read(file.wrapping_add(off(&FILE_F_PATH)))
}

/// (device in the kernel's encoding, inode number) of the current task's root directory.
#[inline(always)]
pub fn root_identity() -> (u32, u64) {
    let Some(root) = task_root() else {
        return (0, 0);
    };
    let inode = kptr(root.dentry, off(&DENTRY_INODE));
    let sb = kptr(inode, off(&INODE_SB));
    (
        read::<u32>(sb, off(&SB_DEV)).unwrap_or(0),
        read::<u64>(inode, off(&INODE_INO)).unwrap_or(0),
    )
}

/// `TS_COMPAT` of x86's `thread_info.status`: the running syscall is a 32-bit one.
const TS_COMPAT: u32 = 0x0002;

/// Whether the current syscall comes through the i386 (compat) table (`in_ia32_syscall`).
#[inline(always)]
pub fn in_compat_syscall() -> bool {
    read::<u32>(current_task(), off(&TASK_TI_STATUS)).is_some_and(|s| s & TS_COMPAT != 0)
}

/// The mount namespace a mount belongs to (`real_mount(mnt)->mnt_ns`).
#[inline(always)]
fn mount_ns(vfsmount: *const u8) -> *const u8 {
    kptr(vfsmount.wrapping_sub(off(&MOUNT_MNT)), off(&MOUNT_MNT_NS))
}

/// Whether the current task runs a program of the mount namespace it lives in: a
/// container's own program, and not its runtime's (`runc init` runs a host binary, or a
/// sealed copy of one, until it execs the workload).
#[inline(always)]
pub fn runs_own_program() -> bool {
    let mm = kptr(current_task(), off(&TASK_MM));
    let exe = kptr(mm, off(&MM_EXE_FILE));
    let (Some(exe), Some(root)) = (file_path(exe), task_root()) else {
        return false;
    };
    let ns = mount_ns(root.vfsmount);
    !ns.is_null() && mount_ns(exe.vfsmount) == ns
}
