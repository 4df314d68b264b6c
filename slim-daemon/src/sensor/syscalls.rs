//! Every syscall that names a path, and which of its arguments hold the path, the directory
//! it is relative to and the flags that change its meaning (0-based, in the syscall ABI's
//! order).
use slim_common::Op;

/// Which arguments of a traced syscall hold what.
pub struct SyscallDef {
    pub name: &'static str,
    pub nr: i64,
    pub op: Op,
    /// The path argument; None for syscalls that take only a file descriptor (fchdir).
    pub path: Option<u8>,
    /// The directory fd argument (or the only fd); None means relative to the cwd.
    pub dirfd: Option<u8>,
    pub flags: Option<(u8, u8)>,
    /// Never follows a final symlink.
    pub nofollow: bool,
}

const fn def(name: &'static str, nr: i64, op: Op, path: u8) -> SyscallDef {
    SyscallDef {
        name,
        nr,
        op,
        path: Some(path),
        dirfd: None,
        flags: None,
        nofollow: false,
    }
}

const fn at(name: &'static str, nr: i64, op: Op, dirfd: u8, path: u8) -> SyscallDef {
    SyscallDef {
        dirfd: Some(dirfd),
        ..def(name, nr, op, path)
    }
}

const fn flags(d: SyscallDef, arg: u8, kind: u8) -> SyscallDef {
    SyscallDef {
        flags: Some((arg, kind)),
        ..d
    }
}

const fn nofollow(d: SyscallDef) -> SyscallDef {
    SyscallDef {
        nofollow: true,
        ..d
    }
}

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the syscall table of slimd's sensor covers x86_64 only");

use libc as sys;
use slim_common::flags_kind::{AT, OPEN, OPEN_HOW};

/// The syscalls the sensor traces.
pub fn table() -> Vec<SyscallDef> {
    use Op::*;
    vec![
        flags(def("open", sys::SYS_open, Open, 0), 1, OPEN),
        flags(at("openat", sys::SYS_openat, Open, 0, 1), 2, OPEN),
        flags(at("openat2", sys::SYS_openat2, Open, 0, 1), 2, OPEN_HOW),
        def("creat", sys::SYS_creat, Open, 0),
        def("execve", sys::SYS_execve, Exec, 0),
        flags(at("execveat", sys::SYS_execveat, Exec, 0, 1), 4, AT),
        def("stat", sys::SYS_stat, Stat, 0),
        nofollow(def("lstat", sys::SYS_lstat, Stat, 0)),
        flags(at("newfstatat", sys::SYS_newfstatat, Stat, 0, 1), 3, AT),
        flags(at("statx", sys::SYS_statx, Stat, 0, 1), 2, AT),
        def("access", sys::SYS_access, Stat, 0),
        at("faccessat", sys::SYS_faccessat, Stat, 0, 1),
        flags(at("faccessat2", sys::SYS_faccessat2, Stat, 0, 1), 3, AT),
        nofollow(def("readlink", sys::SYS_readlink, Readlink, 0)),
        nofollow(at("readlinkat", sys::SYS_readlinkat, Readlink, 0, 1)),
        def("chdir", sys::SYS_chdir, Chdir, 0),
        SyscallDef {
            path: None,
            dirfd: Some(0),
            ..def("fchdir", sys::SYS_fchdir, Chdir, 0)
        },
        def("chroot", sys::SYS_chroot, Chdir, 0),
        def("statfs", sys::SYS_statfs, Stat, 0),
        def("getxattr", sys::SYS_getxattr, Stat, 0),
        nofollow(def("lgetxattr", sys::SYS_lgetxattr, Stat, 0)),
        def("listxattr", sys::SYS_listxattr, Stat, 0),
        nofollow(def("llistxattr", sys::SYS_llistxattr, Stat, 0)),
        flags(at("getxattrat", 464, Stat, 0, 1), 2, AT),
        flags(at("listxattrat", 465, Stat, 0, 1), 2, AT),
        // Argument 0 is the inotify fd, not a directory: the path is relative to the cwd.
        def("inotify_add_watch", sys::SYS_inotify_add_watch, Stat, 1),
        flags(
            at("name_to_handle_at", sys::SYS_name_to_handle_at, Stat, 0, 1),
            4,
            AT,
        ),
        def("mkdir", sys::SYS_mkdir, Modify, 0),
        at("mkdirat", sys::SYS_mkdirat, Modify, 0, 1),
        nofollow(def("rename", sys::SYS_rename, Modify, 0)),
        nofollow(at("renameat", sys::SYS_renameat, Modify, 0, 1)),
        nofollow(at("renameat2", sys::SYS_renameat2, Modify, 0, 1)),
        nofollow(def("unlink", sys::SYS_unlink, Modify, 0)),
        nofollow(at("unlinkat", sys::SYS_unlinkat, Modify, 0, 1)),
        def("rmdir", sys::SYS_rmdir, Modify, 0),
        nofollow(def("link", sys::SYS_link, Modify, 0)),
        nofollow(at("linkat", sys::SYS_linkat, Modify, 0, 1)),
        def("truncate", sys::SYS_truncate, Modify, 0),
        def("chmod", sys::SYS_chmod, Modify, 0),
        at("fchmodat", sys::SYS_fchmodat, Modify, 0, 1),
        flags(at("fchmodat2", 452, Modify, 0, 1), 3, AT),
        def("chown", sys::SYS_chown, Modify, 0),
        nofollow(def("lchown", sys::SYS_lchown, Modify, 0)),
        flags(at("fchownat", sys::SYS_fchownat, Modify, 0, 1), 4, AT),
        def("utime", sys::SYS_utime, Modify, 0),
        def("utimes", sys::SYS_utimes, Modify, 0),
        flags(at("utimensat", sys::SYS_utimensat, Modify, 0, 1), 3, AT),
        at("futimesat", sys::SYS_futimesat, Modify, 0, 1),
        def("setxattr", sys::SYS_setxattr, Modify, 0),
        nofollow(def("lsetxattr", sys::SYS_lsetxattr, Modify, 0)),
        def("removexattr", sys::SYS_removexattr, Modify, 0),
        nofollow(def("lremovexattr", sys::SYS_lremovexattr, Modify, 0)),
        flags(at("setxattrat", 463, Modify, 0, 1), 2, AT),
        flags(at("removexattrat", 466, Modify, 0, 1), 2, AT),
    ]
}
