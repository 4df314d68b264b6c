//! Types shared by the eBPF programs (`slim-ebpf`) and user space (`slim-daemon`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into maps and the
//! ring buffer, user space reads the same bytes back.
#![no_std]

/// Bytes kept of the path a program passed to a syscall, NUL included.
pub const PATH_CAP: usize = 1024;
/// Bytes of the buffer a kernel-side directory walk writes into.
pub const DIR_CAP: usize = 1024;
/// The longest name of one path component, NUL included (`NAME_MAX` + 1).
pub const NAME_CAP: usize = 256;
/// The walk buffer is larger than `DIR_CAP` by one component so that the verifier can prove
/// every write in bounds with a mask alone.
pub const DIR_BUF: usize = DIR_CAP + NAME_CAP;
/// Components a kernel-side directory walk visits at most.
pub const MAX_DEPTH: u32 = 48;
/// Syscall numbers covered by the syscall spec table.
pub const MAX_SYSCALL_NR: u32 = 512;
/// 64-bit words of a syscall bitmap (one bit per syscall number of one ABI).
pub const SYSCALL_WORDS: usize = MAX_SYSCALL_NR as usize / 64;
/// Levels of the cgroup v2 tree at which a watched ancestor may sit (bit `n` = level `n`).
pub const MAX_CGROUP_LEVEL: u32 = 16;

/// Indices of the `CONFIG` array (of `u64`).
pub mod config {
    /// Bitmask of the cgroup levels at which cgroups with a `WATCHED` entry sit.
    pub const LEVELS: u32 = 0;
    /// Events waiting for their thread's next syscall.
    pub const PENDING: u32 = 1;
    /// Bumped by user space whenever the watched set changes, which invalidates the
    /// kernel's per-CPU cache of watch verdicts.
    pub const GENERATION: u32 = 2;
    pub const COUNT: u32 = 3;
}

/// Values of the `WATCHED` map: what a cgroup's entry says about it and the cgroups below it.
pub mod verdict {
    /// Record the processes of this cgroup and of every cgroup below it.
    pub const WATCH: u32 = 1;
    /// Record nothing of this cgroup and of the cgroups below it, even below a watched one.
    pub const IGNORE: u32 = 2;
}

/// Bytes kept of a cgroup's name (a container id is 64, `docker-<id>.scope` 77).
pub const CGROUP_NAME_CAP: usize = 128;

/// The name of a cgroup that was first seen through a watched ancestor (the `NAMES` map):
/// user space can then tell whose it was even once it is gone.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CgroupName {
    /// The watched ancestor it was seen through.
    pub watch_id: u64,
    /// NUL-terminated.
    pub name: [u8; CGROUP_NAME_CAP],
}

/// The syscalls the programs of one cgroup made, by number, in each ABI (the `SYSCALLS`
/// map, per CPU: user space ORs the CPUs' sets).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallSet {
    /// The watched cgroup the cgroup was seen through.
    pub watch_id: u64,
    /// x86_64 syscall numbers.
    pub native: [u64; SYSCALL_WORDS],
    /// i386 (compat) syscall numbers, made by 32-bit programs.
    pub compat: [u64; SYSCALL_WORDS],
}

/// `dirfd` value meaning "relative to the current working directory".
pub const AT_FDCWD: i32 = -100;

/// How a syscall used the path it names.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// open, openat, openat2, creat.
    Open = 1,
    /// execve, execveat: the path the program asked to run.
    Exec = 2,
    /// stat family, access family, statfs, getxattr family: metadata only.
    Stat = 3,
    /// readlink, readlinkat.
    Readlink = 4,
    /// chdir, fchdir.
    Chdir = 5,
    /// mkdir, rename, unlink, rmdir, chmod, chown, truncate, utimes, link, mknod, setxattr:
    /// the path is changed, so it only matters when it already existed in the image.
    Modify = 6,
    /// `sched_process_exec`: the file the kernel really ran (`dir` holds its absolute path).
    ExecFile = 7,
    /// `sched_process_exec`: the `#!` interpreter the kernel opened (`path` as written).
    Interp = 8,
}

impl Op {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Open,
            2 => Self::Exec,
            3 => Self::Stat,
            4 => Self::Readlink,
            5 => Self::Chdir,
            6 => Self::Modify,
            7 => Self::ExecFile,
            8 => Self::Interp,
            _ => return None,
        })
    }
}

/// How the flags argument of a syscall is encoded.
pub mod flags_kind {
    /// No flags argument.
    pub const NONE: u8 = 0;
    /// `O_*` flags of open.
    pub const OPEN: u8 = 1;
    /// `AT_*` flags (`AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH`, ...).
    pub const AT: u8 = 2;
    /// A pointer to `struct open_how`, whose first member holds the `O_*` flags.
    pub const OPEN_HOW: u8 = 3;
}

/// Bits of [`PathEvent::status`].
pub mod status {
    /// The path was longer than [`super::PATH_CAP`].
    pub const PATH_TRUNCATED: u8 = 1 << 0;
    /// The directory walk did not reach the root within the buffer or the depth limit.
    pub const DIR_TRUNCATED: u8 = 1 << 1;
    /// The user memory holding the path could not be read, even at the next syscall.
    pub const PATH_UNREADABLE: u8 = 1 << 2;
    /// The path was read at the thread's next syscall (its page was not resident on entry).
    pub const RETRIED: u8 = 1 << 3;
    /// `dir` holds a walked directory (or, with an empty `path`, the file itself).
    pub const HAS_DIR: u8 = 1 << 4;
    /// The final component must not be followed if it is a symlink.
    pub const NOFOLLOW: u8 = 1 << 5;
}

/// Which arguments of a syscall hold its path, dirfd and flags, indexed by syscall number.
/// Argument positions are 1-based (0 = none) in the syscall ABI's order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallSpec {
    /// [`Op`] as `u8`; 0 = not traced.
    pub op: u8,
    /// One of [`flags_kind`].
    pub flags_kind: u8,
    /// The path argument; 0 = the syscall names no path (only a file descriptor).
    pub path_arg: u8,
    /// The directory fd argument (or the only fd); 0 = implicit `AT_FDCWD`.
    pub dirfd_arg: u8,
    /// The flags argument; meaningful when `flags_kind != NONE`.
    pub flags_arg: u8,
    /// [`status::NOFOLLOW`] when the syscall never follows a final symlink (lstat, readlink).
    pub fixed_status: u8,
    pub _pad: [u8; 2],
}

/// Syscall arguments a spec can name.
pub const MAX_ARGS: u8 = 6;

/// One path a watched process named, sent to user space through the ring buffer.
///
/// Events without a walked directory are sent cut after the path's last byte (rounded up to
/// 8): user space must read them into a zeroed `PathEvent`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathEvent {
    /// The cgroup of the process.
    pub cgroup_id: u64,
    /// The watched cgroup that matched: the process's own, or one of its ancestors.
    pub watch_id: u64,
    /// `bpf_ktime_get_ns` at the event.
    pub ktime_ns: u64,
    /// Inode number of the process's root directory. With `root_dev`, this tells the
    /// container runtime's own steps on the host side (before `pivot_root`) from the
    /// container's processes.
    pub root_ino: u64,
    pub tgid: u32,
    pub tid: u32,
    /// The raw flags argument (`O_*` or `AT_*`, see [`SyscallSpec::flags_kind`]).
    pub flags: u32,
    pub syscall_nr: u32,
    /// Device (kernel encoding: major << 20 | minor) of the process's root directory.
    pub root_dev: u32,
    /// Bytes of `path` including the NUL, 0 when the syscall names no path.
    pub path_len: u16,
    /// Bytes used in `dir`.
    pub dir_len: u16,
    /// Components in `dir`.
    pub dir_depth: u16,
    pub op: u8,
    /// Bits of [`status`].
    pub status: u8,
    pub _pad: [u8; 4],
    pub comm: [u8; 16],
    /// The path exactly as the program passed it.
    pub path: [u8; PATH_CAP],
    /// The directory a relative `path` is relative to, as NUL-separated components leaf
    /// first, walked in the kernel up to the process's root (the container root).
    pub dir: [u8; DIR_BUF],
}

/// Bytes of an event up to its path.
pub const PATH_OFFSET: usize = 80;
const _: () = assert!(core::mem::offset_of!(PathEvent, path) == PATH_OFFSET);
const _: () = assert!(core::mem::size_of::<PathEvent>() == PATH_OFFSET + PATH_CAP + DIR_BUF);

/// An event waiting for its thread's next syscall to read its path (the `PENDING` map).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    /// The user address of the path.
    pub user_path: u64,
    /// The thread's start time (`task_struct.start_time`): with the thread id and the cgroup,
    /// this tells the thread that left the entry from a later one that reuses its id.
    pub task_start: u64,
    pub event: PathEvent,
}

/// Index of the counters in the per-CPU `STATS` array.
pub mod stat {
    /// Events that could not be reserved in the ring buffer: lost.
    pub const LOST: u32 = 0;
    /// Events sent.
    pub const SENT: u32 = 1;
    /// Events dropped in the kernel as repeats of a recently sent one.
    pub const DEDUPED: u32 = 2;
    /// Paths that could only be read when their thread entered its next syscall.
    pub const RETRIED: u32 = 3;
    /// Pending retries that found no slot (map full), or whose thread was gone: lost.
    pub const RETRY_LOST: u32 = 4;
    /// Syscalls of watched programs that no set could record (the `SYSCALLS` map was full,
    /// or the number is beyond the table, as x32 ones are).
    pub const SYSCALLS_UNRECORDED: u32 = 5;
    pub const COUNT: u32 = 6;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)] structs of integers and byte arrays, valid for
    // every bit pattern.
    unsafe impl aya::Pod for super::SyscallSpec {}
    unsafe impl aya::Pod for super::PathEvent {}
    unsafe impl aya::Pod for super::Pending {}
    unsafe impl aya::Pod for super::CgroupName {}
    unsafe impl aya::Pod for super::SyscallSet {}
}
