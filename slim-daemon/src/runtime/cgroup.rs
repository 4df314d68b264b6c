//! cgroup v2: how the sensor tells a container's processes from everyone else's.
//!
//! A cgroup's id is the inode number of its directory in the cgroup2 file system, which is
//! what `bpf_get_current_cgroup_id()` returns in the kernel. Hybrid v1/v2 hosts work too: runc
//! also puts every container into the unified hierarchy.
use std::{
    fs, io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use crate::resolve::mountinfo;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted; slimd needs cgroup v2 (unified or hybrid mode)")]
    NoUnified,
    #[error("cannot find the cgroup of process {0}: {1}")]
    OfProcess(u32, String),
    #[error("cannot use cgroup {0}: {1}")]
    Dir(PathBuf, io::Error),
}

/// A cgroup in the unified hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub dir: PathBuf,
    /// The cgroup id the kernel reports.
    pub id: u64,
    /// Depth below the hierarchy's root (the root is level 0).
    pub level: u32,
}

/// Where the cgroup2 file system is mounted (in slimd's own mount namespace).
pub fn unified_root() -> Result<PathBuf, CgroupError> {
    let mounts = mountinfo::read_self().map_err(|_| CgroupError::NoUnified)?;
    mounts
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .ok_or(CgroupError::NoUnified)
}

impl Cgroup {
    /// The cgroup at `rel` (a path inside the hierarchy, as in `/proc/<pid>/cgroup`).
    pub fn at(root: &Path, rel: &Path) -> Result<Self, CgroupError> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let dir = root.join(rel);
        let meta = fs::metadata(&dir).map_err(|e| CgroupError::Dir(dir.clone(), e))?;
        Ok(Cgroup {
            id: meta.ino(),
            level: rel.components().count() as u32,
            dir,
        })
    }

    /// The unified cgroup of a process.
    pub fn of_process(root: &Path, pid: u32) -> Result<Self, CgroupError> {
        let groups = procfs::process::Process::new(pid as i32)
            .and_then(|p| p.cgroups())
            .map_err(|e| CgroupError::OfProcess(pid, e.to_string()))?;
        let rel = groups
            .0
            .iter()
            .find(|g| g.hierarchy == 0 && g.controllers.is_empty())
            .map(|g| g.pathname.clone())
            .ok_or_else(|| CgroupError::OfProcess(pid, "it is in no cgroup v2".into()))?;
        Self::at(root, Path::new(&rel))
    }

    /// Creates (or reuses) the cgroup at `rel`, for a container to be started below it.
    pub fn create(root: &Path, rel: &Path) -> Result<Self, CgroupError> {
        let dir = root.join(rel.strip_prefix("/").unwrap_or(rel));
        fs::create_dir_all(&dir).map_err(|e| CgroupError::Dir(dir.clone(), e))?;
        Self::at(root, rel)
    }

    /// Removes the cgroup directory, which must be empty of processes and children.
    pub fn remove(&self) -> Result<(), CgroupError> {
        match fs::remove_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CgroupError::Dir(self.dir.clone(), e)),
        }
    }
}

/// The unified hierarchy, opened, for finding cgroups by the id the kernel reports.
pub struct CgroupFs {
    root: PathBuf,
    fd: OwnedFd,
}

/// A file handle of cgroupfs (kernfs): its type and the node id, which is the cgroup id.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

const FILEID_KERNFS: i32 = 0xfe;

impl CgroupFs {
    pub fn open() -> Result<Self, CgroupError> {
        let root = unified_root()?;
        let fd = rustix::fs::open(
            &root,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| CgroupError::Dir(root.clone(), e.into()))?;
        Ok(CgroupFs { root, fd })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup with this id, by its path below the root (`/docker/<id>`); None when it is
    /// gone (or the kernel cannot say).
    pub fn path_of(&self, id: u64) -> Option<PathBuf> {
        let handle = KernfsHandle {
            handle_bytes: 8,
            handle_type: FILEID_KERNFS,
            id,
        };
        // SAFETY: open_by_handle_at reads a handle of the size it states, and returns a new
        // fd (or -1) that nothing else owns.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                self.fd.as_raw_fd(),
                &handle as *const KernfsHandle,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return None;
        }
        // SAFETY: see above.
        let dir = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let full = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
        let rel = full.strip_prefix(&self.root).ok()?;
        Some(Path::new("/").join(rel))
    }

    /// The cgroup at `rel` below the root.
    pub fn at(&self, rel: &Path) -> Result<Cgroup, CgroupError> {
        Cgroup::at(&self.root, rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cgroup_by_its_id() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped finds_a_cgroup_by_its_id: needs root (open_by_handle_at)");
            return;
        }
        let fs = CgroupFs::open().expect("the unified hierarchy");
        let mine = Cgroup::of_process(fs.root(), std::process::id()).expect("my cgroup");
        let rel = Path::new("/").join(mine.dir.strip_prefix(fs.root()).unwrap());
        assert_eq!(fs.path_of(mine.id), Some(rel));
        assert_eq!(fs.path_of(u64::MAX), None);
    }
}
