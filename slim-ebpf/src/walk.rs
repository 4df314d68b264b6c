//! The kernel-side directory walk: from a dentry up to the process's root, crossing mount
//! points the way `d_path` does, written leaf first into an event.
use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel_str};
use slim_common::{DIR_BUF, DIR_CAP, MAX_DEPTH, NAME_CAP, PathEvent, status};

use crate::kernel::{
    DENTRY_NAME, DENTRY_PARENT, KPath, MOUNT_MNT, MOUNT_MOUNTPOINT, MOUNT_PARENT, VFSMOUNT_ROOT,
    kptr, off,
};

/// State of a walk, shared with its `bpf_loop` callback.
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

/// One step: one component written, or one mount crossed. Returning 1 stops the loop.
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
/// NUL-terminated, and marks the event as carrying a directory.
#[inline(always)]
pub fn walk(ev: &mut PathEvent, root: KPath, start: KPath) {
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
