//! Files slimd reads from others and files it writes for the user.
//!
//! Reading: a file named by hostile content (an image layout, an archive) is opened without
//! blocking, must be a regular file, and is read with a hard bound. Writing: an output is
//! made as an unnamed file in its directory, handled through its descriptor only (mode,
//! content, sync), and linked into place at the end, so a reader sees the old file or the
//! whole new one, a crash leaves nothing behind, and no path is followed that another user
//! could swap.
use std::{
    ffi::{CString, OsStr},
    fs::File,
    io::{self, Read, Write},
    os::{
        fd::{AsFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, ResolveFlags};

fn not_regular(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is not a regular file", path.display()),
    )
}

/// Opens a file the user named for reading; it must be a regular file (never a FIFO or a
/// device, which would hang or never end).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let fd = rfs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    regular(File::from(fd), path)
}

/// Opens `rel` below the directory `dir` for reading, never leaving it and following no
/// symlink on the way; it must be a regular file.
pub fn open_beneath(dir: &impl AsFd, rel: &Path) -> io::Result<File> {
    let fd = rfs::openat2(
        dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )?;
    regular(File::from(fd), rel)
}

/// Opens a directory the user named.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn regular(file: File, path: &Path) -> io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(not_regular(path))
    }
}

/// All of `reader`, or an error once it holds more than `max` bytes (whatever a prior stat
/// said: the file may grow).
pub fn read_bounded(reader: impl Read, max: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

/// The process's umask, read without changing it.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Who may read an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// As the user's umask says (reports).
    Umask,
    /// The owner only (images, which hold the original's root-only files).
    Private,
}

impl Access {
    fn mode(self) -> u32 {
        match self {
            Access::Umask => 0o666 & !umask(),
            Access::Private => 0o600,
        }
    }
}

/// An output file being written: unnamed until [`AtomicFile::commit`] links it over its
/// path. Dropped without a commit, it leaves nothing behind.
pub struct AtomicFile {
    dir: OwnedFd,
    name: CString,
    path: PathBuf,
    file: File,
    /// Set when the file system cannot make unnamed files: the temporary name in `dir`.
    named: Option<CString>,
}

fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((dir, name))
}

/// Removes what a killed slimd left in `dir`: its temporary names (`.slimd-<kind>-<pid>-…`)
/// whose process is gone, files and staged directories alike. Nothing is followed: unlinkat
/// removes a link itself, and directories are opened with `O_NOFOLLOW`.
fn remove_stale(dir: &OwnedFd) {
    let Ok(entries) = rfs::Dir::read_from(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = std::str::from_utf8(name.to_bytes())
            .ok()
            .and_then(|n| n.strip_prefix(".slimd-"))
            .and_then(|rest| rest.split('-').nth(1))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        remove_tree_at(dir, name, 4);
    }
}

fn remove_tree_at(dir: &OwnedFd, name: &std::ffi::CStr, depth: u32) {
    if rfs::unlinkat(dir, name, AtFlags::empty()).is_ok() || depth == 0 {
        return;
    }
    let Ok(sub) = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    if let Ok(entries) = rfs::Dir::read_from(&sub) {
        for entry in entries.flatten() {
            let child = entry.file_name();
            if child.to_bytes() != b"." && child.to_bytes() != b".." {
                remove_tree_at(&sub, child, depth - 1);
            }
        }
    }
    let _ = rfs::unlinkat(dir, name, AtFlags::REMOVEDIR);
}

fn temp_name(prefix: &str) -> CString {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    CString::new(format!(".slimd-{prefix}-{}-{nanos:x}", std::process::id()))
        .expect("no NUL in a formatted name")
}

impl AtomicFile {
    pub fn create(path: &Path, access: Access) -> io::Result<Self> {
        let (dir, name) = split(path)?;
        let dir = open_dir(dir)?;
        remove_stale(&dir);
        let name = CString::new(name.as_bytes()).map_err(|_| not_regular(path))?;
        let mode = Mode::from_raw_mode(access.mode());
        let (fd, named) = match rfs::openat(
            &dir,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            mode,
        ) {
            Ok(fd) => (fd, None),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                let temp = temp_name("tmp");
                let fd = rfs::openat(
                    &dir,
                    temp.as_c_str(),
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::CLOEXEC
                        | OFlags::NOFOLLOW,
                    mode,
                )?;
                (fd, Some(temp))
            }
            Err(e) => return Err(e.into()),
        };
        // The mode asked for at creation is cut by the umask; set it exactly, by descriptor.
        rfs::fchmod(&fd, mode)?;
        Ok(AtomicFile {
            dir,
            name,
            path: path.to_path_buf(),
            file: File::from(fd),
            named,
        })
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Syncs the file, puts it at its path (replacing what was there) and syncs the
    /// directory, so that the new file survives a crash.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_all()?;
        let temp = match self.named.take() {
            Some(temp) => temp,
            None => {
                let temp = temp_name("new");
                let proc_fd = format!(
                    "/proc/self/fd/{}",
                    rustix::fd::AsRawFd::as_raw_fd(&self.file)
                );
                rfs::linkat(
                    rfs::CWD,
                    proc_fd.as_str(),
                    &self.dir,
                    temp.as_c_str(),
                    AtFlags::SYMLINK_FOLLOW,
                )?;
                temp
            }
        };
        if let Err(e) = rfs::renameat(&self.dir, temp.as_c_str(), &self.dir, self.name.as_c_str()) {
            let _ = rfs::unlinkat(&self.dir, temp.as_c_str(), AtFlags::empty());
            return Err(e.into());
        }
        rfs::fsync(&self.dir)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(temp) = &self.named {
            let _ = rfs::unlinkat(&self.dir, temp.as_c_str(), AtFlags::empty());
        }
    }
}

/// Writes `data` to `path` atomically.
pub fn write_atomic(path: &Path, data: &[u8], access: Access) -> io::Result<()> {
    let mut out = AtomicFile::create(path, access)?;
    out.file().write_all(data)?;
    out.commit()
}

/// A new directory made beside `path` and renamed to it at the end (never over an existing
/// one); every file in it is made through descriptors. Dropped without a commit, it removes
/// what it made.
pub struct AtomicDir {
    parent: OwnedFd,
    name: CString,
    staging: CString,
    dir: OwnedFd,
    /// What was made inside, in order, as paths relative to the staging directory.
    made: Vec<(PathBuf, bool)>,
    committed: bool,
}

impl AtomicDir {
    pub fn create(path: &Path) -> io::Result<Self> {
        let (parent, name) = split(path)?;
        let parent = open_dir(parent)?;
        remove_stale(&parent);
        let name = CString::new(name.as_bytes()).map_err(|_| not_regular(path))?;
        let staging = temp_name("dir");
        rfs::mkdirat(&parent, staging.as_c_str(), Mode::from_raw_mode(0o700))?;
        let dir = rfs::openat(
            &parent,
            staging.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(AtomicDir {
            parent,
            name,
            staging,
            dir,
            made: Vec::new(),
            committed: false,
        })
    }

    /// Makes a directory inside (its parent made first).
    pub fn mkdir(&mut self, rel: &Path) -> io::Result<()> {
        rfs::mkdirat(&self.dir, rel, Mode::from_raw_mode(0o755))?;
        self.made.push((rel.to_path_buf(), true));
        Ok(())
    }

    /// Creates a new file inside, for writing.
    pub fn create_file(&mut self, rel: &Path) -> io::Result<File> {
        let fd = rfs::openat(
            &self.dir,
            rel,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        )?;
        self.made.push((rel.to_path_buf(), false));
        Ok(File::from(fd))
    }

    /// Syncs what was made and renames the directory into place; fails if something is there.
    pub fn commit(mut self) -> io::Result<()> {
        rfs::fsync(&self.dir)?;
        rfs::renameat_with(
            &self.parent,
            self.staging.as_c_str(),
            &self.parent,
            self.name.as_c_str(),
            RenameFlags::NOREPLACE,
        )?;
        self.committed = true;
        rfs::fsync(&self.parent)?;
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for (rel, is_dir) in self.made.iter().rev() {
            let flags = if *is_dir {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            let _ = rfs::unlinkat(&self.dir, rel, flags);
        }
        let _ = rfs::unlinkat(&self.parent, self.staging.as_c_str(), AtFlags::REMOVEDIR);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    #[test]
    fn atomic_files_replace_without_following_links_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = dir.path().join("out");
        symlink(&victim, &out).unwrap();
        write_atomic(&out, b"new", Access::Private).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(
            std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(
            std::fs::symlink_metadata(&out)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        drop(AtomicFile::create(&dir.path().join("abandoned"), Access::Umask).unwrap());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["out", "victim"]);
    }

    #[test]
    fn what_a_dead_slimd_staged_is_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".slimd-dir-4194304-1");
        std::fs::create_dir_all(stale.join("blobs/sha256")).unwrap();
        std::fs::write(stale.join("blobs/sha256/x"), "x").unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep").unwrap();
        symlink(&outside, stale.join("link")).unwrap();
        std::fs::write(dir.path().join(".slimd-tmp-4194304-2"), "x").unwrap();
        let live = dir
            .path()
            .join(format!(".slimd-tmp-{}-3", std::process::id()));
        std::fs::write(&live, "mine").unwrap();
        write_atomic(&dir.path().join("out"), b"new", Access::Umask).unwrap();
        assert!(!stale.exists());
        assert!(!dir.path().join(".slimd-tmp-4194304-2").exists());
        assert!(
            live.exists(),
            "this process's own temporary file was removed"
        );
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"keep");
    }

    #[test]
    fn regular_files_only_and_bounded_reads() {
        assert!(open_regular(Path::new("/dev/zero")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(
            open_regular(&fifo).is_err(),
            "a FIFO is refused, not waited on"
        );
        let d = open_dir(dir.path()).unwrap();
        symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(open_beneath(&d, Path::new("link")).is_err());
        assert!(open_beneath(&d, Path::new("../etc/passwd")).is_err());
        assert!(read_bounded(&b"12345"[..], 4, "x").is_err());
        assert_eq!(read_bounded(&b"1234"[..], 4, "x").unwrap(), b"1234");
    }
}
