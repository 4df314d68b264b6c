//! Images: reading an image's layers into one flattened tree, and writing a new image.
pub mod archive;
pub mod config;
pub mod elf;
pub mod history;
pub mod layer_dir;
pub mod oci;
pub mod source;
pub mod tar_layer;
pub mod tree;
pub mod writer;

use std::{
    fs::File,
    io::{self, Read},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use self::{
    archive::BlobReader,
    tree::{Data, Kind, Node, Tree},
};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image layer {0}: {1}")]
    Layer(PathBuf, String),
    #[error("{0} is not a usable image archive: {1}")]
    Archive(PathBuf, String),
    #[error("slimd does not support {0} yet")]
    Unsupported(String),
    #[error("{context}: {error}")]
    Io { context: String, error: io::Error },
}

impl ImageError {
    pub fn io(context: impl Into<String>, error: io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            error,
        }
    }
}

/// Where the bytes of the tree's files are kept.
#[derive(Debug)]
enum Store {
    /// Layer directories, opened once, bottom layer first.
    LayerDirs(Vec<(PathBuf, OwnedFd)>),
    /// Files holding layer tars: an image archive, or one file per layer.
    Blobs(Vec<File>),
}

/// An image's flattened tree and access to its files' bytes.
#[derive(Debug)]
pub struct ImageFiles {
    pub tree: Tree,
    store: Store,
}

/// Reading more than this of one file for ELF or `#!` parsing is refused.
const MAX_PARSE_BYTES: u64 = 512 << 20;

impl ImageFiles {
    /// Flattens overlay layer directories, given bottom layer first.
    pub fn from_layer_dirs(dirs: &[PathBuf]) -> Result<Self, ImageError> {
        let mut tree = Tree::new();
        let mut fds = Vec::with_capacity(dirs.len());
        for (i, dir) in dirs.iter().enumerate() {
            tree.apply_layer(layer_dir::read_layer(dir, i as u32)?);
            let fd = rustix::fs::open(
                dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ImageError::Layer(dir.clone(), e.to_string()))?;
            fds.push((dir.clone(), fd));
        }
        Ok(ImageFiles {
            tree,
            store: Store::LayerDirs(fds),
        })
    }

    /// Flattens layer tars, bottom layer first, each given as a file and a byte range in it.
    pub fn from_tars(layers: &[(PathBuf, (u64, u64))]) -> Result<Self, ImageError> {
        let mut tree = Tree::new();
        let mut files: Vec<(PathBuf, File)> = Vec::new();
        for (path, range) in layers {
            let blob = match files.iter().position(|(p, _)| p == path) {
                Some(i) => i,
                None => {
                    let file = File::open(path)
                        .map_err(|e| ImageError::io(format!("opening {}", path.display()), e))?;
                    files.push((path.clone(), file));
                    files.len() - 1
                }
            };
            tree.apply_layer(tar_layer::read_layer(path, blob as u32, *range)?);
        }
        Ok(ImageFiles {
            tree,
            store: Store::Blobs(files.into_iter().map(|(_, f)| f).collect()),
        })
    }

    /// A reader of the bytes of a regular file (or hard link) of the tree.
    pub fn open(&self, node: &Node) -> io::Result<Box<dyn Read + '_>> {
        match (&node.data, &self.store) {
            (Data::Blob { blob, offset }, Store::Blobs(files)) => {
                let file = files
                    .get(*blob as usize)
                    .ok_or_else(|| io::Error::other("no such blob"))?;
                Ok(Box::new(BlobReader::new(file, *offset, node.size)))
            }
            (Data::LayerFile { layer, rel }, Store::LayerDirs(dirs)) => {
                let (_, dir) = dirs
                    .get(*layer as usize)
                    .ok_or_else(|| io::Error::other("no such layer"))?;
                let fd = rustix::fs::openat2(
                    dir,
                    rel,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
                )?;
                Ok(Box::new(File::from(fd).take(node.size)))
            }
            (Data::None, _) if node.size == 0 => Ok(Box::new(io::empty())),
            _ => Err(io::Error::other("file data is not in this image's store")),
        }
    }

    /// The whole content of a regular file of the tree, for parsing (ELF, `#!`).
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let node = self.tree.get(path)?;
        if !node.has_data() || node.size > MAX_PARSE_BYTES {
            return None;
        }
        let mut buf = Vec::with_capacity(node.size as usize);
        self.open(node).ok()?.read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    /// The first bytes of a regular file of the tree.
    pub fn read_head(&self, path: &Path, len: usize) -> Option<Vec<u8>> {
        let node = self.tree.get(path)?;
        if !node.has_data() {
            return None;
        }
        let mut buf = Vec::with_capacity(len);
        self.open(node)
            .ok()?
            .take(len as u64)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    }

    /// True when `path` is a regular file (a hard link counts).
    pub fn is_file(&self, path: &Path) -> bool {
        self.tree
            .get(path)
            .is_some_and(|n| matches!(n.kind, Kind::File | Kind::Hardlink(_)))
    }
}
