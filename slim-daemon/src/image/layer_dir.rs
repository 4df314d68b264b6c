//! Reading one overlay layer directory (an overlay2 `diff` dir or a containerd snapshot) into
//! layer entries whose data stays in the directory.
//!
//! Every lookup is relative to a directory file descriptor, beneath the layer's root and with
//! no symlink followed, so a symlink in the layer is read as a link and never followed on the
//! host.
use std::{
    collections::HashMap,
    ffi::{CStr, OsStr},
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use rustix::{
    fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags},
    io::Errno,
};

use super::{
    ImageError,
    tar_layer::CAPABILITY_XATTR,
    tar_read::MAX_NAME,
    tree::{Data, Kind, LayerEntry, MAX_NODES, Node},
};

const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Lists the entries of the layer directory `root`; `layer` is the index the tree's data
/// references use for it.
pub fn read_layer(root: &Path, layer: u32) -> Result<Vec<LayerEntry>, ImageError> {
    let fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::Layer(root.to_path_buf(), e.to_string()))?;
    let mut scan = Scan {
        layer,
        root: fd,
        out: Vec::new(),
        hardlinks: HashMap::new(),
    };
    scan.all()
        .map_err(|(p, e)| ImageError::Layer(root.join(p.strip_prefix("/").unwrap_or(&p)), e))?;
    Ok(scan.out)
}

struct Scan {
    layer: u32,
    root: OwnedFd,
    out: Vec<LayerEntry>,
    /// (dev, ino) of files with several links → the first path seen.
    hardlinks: HashMap<(u64, u64), PathBuf>,
}

/// Opens a directory of the layer by its path, never leaving the layer and never following a
/// symlink.
fn open_dir_beneath(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rfs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

impl Scan {
    /// Every directory of the layer, one open directory at a time (a deep layer costs no
    /// stack and no file descriptors).
    fn all(&mut self) -> Result<(), (PathBuf, String)> {
        let mut pending = vec![PathBuf::from("/")];
        while let Some(dir) = pending.pop() {
            crate::interrupt::check().map_err(|i| (dir.clone(), i.to_string()))?;
            let rel = dir.strip_prefix("/").expect("absolute");
            let fd = open_dir_beneath(&self.root, rel).map_err(|e| (dir.clone(), e.to_string()))?;
            let mut subdirs = self.dir(&fd, &dir)?;
            subdirs.reverse();
            pending.extend(subdirs);
        }
        Ok(())
    }

    /// The entries of one directory; its subdirectories.
    fn dir(&mut self, fd: &OwnedFd, at: &Path) -> Result<Vec<PathBuf>, (PathBuf, String)> {
        let fail = |e: Errno| (at.to_path_buf(), e.to_string());
        let mut names: Vec<Vec<u8>> = Vec::new();
        for entry in rfs::Dir::read_from(fd).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let path = at.join(OsStr::from_bytes(&name));
            let fail = |e: Errno| (path.clone(), e.to_string());
            if path.as_os_str().len() > MAX_NAME {
                return Err((path, format!("a path longer than {MAX_NAME} bytes")));
            }
            if self.out.len() >= MAX_NODES {
                return Err((path, format!("more than {MAX_NODES} entries")));
            }
            let cname = std::ffi::CString::new(name).expect("directory entries hold no NUL");
            let st = rfs::statat(fd, cname.as_c_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(fail)?;
            let file_type = FileType::from_raw_mode(st.st_mode);
            let rdev = st.st_rdev;
            if file_type == FileType::CharacterDevice && rdev == 0 {
                self.out.push(LayerEntry::Whiteout(path));
                continue;
            }
            let mut node = Node {
                kind: Kind::File,
                mode: st.st_mode & 0o7777,
                uid: u64::from(st.st_uid),
                gid: u64::from(st.st_gid),
                mtime: st.st_mtime,
                size: 0,
                xattrs: Vec::new(),
                data: Data::None,
            };
            match file_type {
                FileType::Directory => {
                    node.kind = Kind::Dir;
                    let opaque = OPAQUE_XATTRS.iter().any(|x| {
                        Self::entry_xattr(fd, &cname, x).as_deref() == Some(b"y".as_slice())
                    });
                    self.out.push(LayerEntry::Add(path.clone(), node));
                    if opaque {
                        self.out.push(LayerEntry::Opaque(path.clone()));
                    }
                    subdirs.push(path);
                    continue;
                }
                FileType::Symlink => {
                    let target = rfs::readlinkat(fd, cname.as_c_str(), Vec::new()).map_err(fail)?;
                    node.kind = Kind::Symlink(PathBuf::from(OsStr::from_bytes(target.as_bytes())));
                }
                FileType::RegularFile => {
                    // Hard links share the data of the first path seen: one file of the layer.
                    let key = (st.st_dev, st.st_ino);
                    let first = if st.st_nlink > 1 {
                        self.hardlinks.entry(key).or_insert_with(|| path.clone())
                    } else {
                        &path
                    };
                    node.size = st.st_size as u64;
                    node.data = Data::LayerFile {
                        layer: self.layer,
                        rel: first.strip_prefix("/").expect("absolute").to_path_buf(),
                    };
                    if let Some(cap) = Self::entry_xattr(fd, &cname, CAPABILITY_XATTR) {
                        node.xattrs.push((CAPABILITY_XATTR.to_owned(), cap));
                    }
                }
                FileType::CharacterDevice | FileType::BlockDevice => {
                    let (major, minor) = (rfs::major(rdev), rfs::minor(rdev));
                    node.kind = if file_type == FileType::CharacterDevice {
                        Kind::CharDevice { major, minor }
                    } else {
                        Kind::BlockDevice { major, minor }
                    };
                }
                FileType::Fifo => node.kind = Kind::Fifo,
                // Sockets and unknown types have no place in an image.
                _ => continue,
            }
            self.out.push(LayerEntry::Add(path, node));
        }
        Ok(subdirs)
    }

    /// An xattr of an entry (never following it), read through its directory's fd so that no
    /// path is walked again.
    fn entry_xattr(dir: &OwnedFd, name: &CStr, xattr: &str) -> Option<Vec<u8>> {
        use rustix::fd::AsRawFd;
        let via_fd = format!("/proc/self/fd/{}/", dir.as_raw_fd());
        let mut path = via_fd.into_bytes();
        path.extend_from_slice(name.to_bytes());
        let path = PathBuf::from(OsStr::from_bytes(&path));
        read_xattr(|buf| rfs::lgetxattr(&path, xattr, buf))
    }
}

fn read_xattr(get: impl Fn(&mut [u8]) -> Result<usize, Errno>) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match get(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Some(buf);
            }
            Err(Errno::RANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            Err(_) => return None,
        }
    }
}
