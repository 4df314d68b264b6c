//! Images: reading an image's layers into one flattened tree, and writing a new image.
pub mod archive;
pub mod config;
pub mod elf;
pub mod hashing;
pub mod history;
pub mod layer_dir;
pub mod oci;
pub mod source;
pub mod tar_layer;
pub mod tar_read;
pub mod tree;
pub mod writer;

use std::{
    fs::File,
    io::{self, Read},
    os::{fd::OwnedFd, unix::fs::FileExt},
    path::{Path, PathBuf},
};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use self::{
    archive::BlobReader,
    tree::{Data, Kind, LayerEntry, Node, Tree, TreeError},
};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image layer {0}: {1}")]
    Layer(PathBuf, String),
    #[error("the image is too large to read: {0}")]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
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

impl ImageFiles {
    /// Flattens overlay layer directories, given bottom layer first.
    pub fn from_layer_dirs(dirs: &[PathBuf]) -> Result<Self, ImageError> {
        let mut tree = Tree::new();
        let mut fds = Vec::with_capacity(dirs.len());
        for (i, dir) in dirs.iter().enumerate() {
            tree.apply_layer(layer_dir::read_layer(dir, i as u32)?)?;
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

    /// Flattens layers read from tars, bottom layer first, whose data references name the
    /// files of `blobs` by index.
    pub fn from_layers(blobs: Vec<File>, layers: Vec<Vec<LayerEntry>>) -> Result<Self, ImageError> {
        let mut tree = Tree::new();
        for layer in layers {
            tree.apply_layer(layer)?;
        }
        Ok(ImageFiles {
            tree,
            store: Store::Blobs(blobs),
        })
    }

    /// Flattens layers each of which is the whole of an uncompressed tar file.
    pub fn from_tar_files(files: Vec<File>) -> Result<Self, ImageError> {
        let mut layers = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let len = file
                .metadata()
                .map_err(|e| ImageError::io("reading a layer", e))?
                .len();
            let stream = io::BufReader::new(BlobReader::new(file, 0, len));
            layers.push(tar_layer::read_layer(
                stream,
                i as u32,
                0,
                Path::new(&format!("layer {}", i + 1)),
            )?);
        }
        Self::from_layers(files, layers)
    }

    /// A reader of the bytes of a regular file of the tree.
    pub fn open(&self, node: &Node) -> io::Result<Box<dyn Read + '_>> {
        Ok(match self.file(node)? {
            FileBytes::Blob { file, start, len } => Box::new(BlobReader::new(file, start, len)),
            FileBytes::Own { file, len } => Box::new(crate::interrupt::Checked(file.take(len))),
            FileBytes::Empty => Box::new(io::empty()),
        })
    }

    fn file(&self, node: &Node) -> io::Result<FileBytes<'_>> {
        match (&node.data, &self.store) {
            (Data::Blob { blob, offset }, Store::Blobs(files)) => {
                let file = files
                    .get(*blob as usize)
                    .ok_or_else(|| io::Error::other("no such blob"))?;
                Ok(FileBytes::Blob {
                    file,
                    start: *offset,
                    len: node.size,
                })
            }
            (Data::LayerFile { layer, rel }, Store::LayerDirs(dirs)) => {
                let (_, dir) = dirs
                    .get(*layer as usize)
                    .ok_or_else(|| io::Error::other("no such layer"))?;
                let fd = rustix::fs::openat2(
                    dir,
                    rel,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
                )?;
                let file = File::from(fd);
                if !file.metadata()?.is_file() {
                    return Err(io::Error::other("not a regular file"));
                }
                Ok(FileBytes::Own {
                    file,
                    len: node.size,
                })
            }
            (Data::None, _) if node.size == 0 => Ok(FileBytes::Empty),
            _ => Err(io::Error::other("file data is not in this image's store")),
        }
    }

    /// Random access to a regular file of the tree, for parsing (ELF, `#!`); None when it is
    /// not one.
    pub fn read_at(&self, path: &Path) -> Option<impl elf::ReadAt + '_> {
        let node = self.tree.get(path)?;
        if !node.has_data() {
            return None;
        }
        self.file(node).ok()
    }

    /// The whole of a small regular file of the tree (a configuration file); None when it is
    /// larger than `max` bytes.
    pub fn read_small(&self, path: &Path, max: u64) -> Option<Vec<u8>> {
        let node = self.tree.get(path)?;
        if !node.has_data() || node.size > max {
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

    /// True when `path` is a regular file.
    pub fn is_file(&self, path: &Path) -> bool {
        self.tree.get(path).is_some_and(|n| n.kind == Kind::File)
    }
}

/// Where the bytes of one file are, opened.
enum FileBytes<'a> {
    /// `len` bytes from `start` of a shared blob file.
    Blob {
        file: &'a File,
        start: u64,
        len: u64,
    },
    /// A file of a layer directory, opened for this read.
    Own {
        file: File,
        len: u64,
    },
    Empty,
}

impl elf::ReadAt for FileBytes<'_> {
    fn read_at(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let (file, start, size) = match self {
            FileBytes::Blob { file, start, len } => (*file, *start, *len),
            FileBytes::Own { file, len } => (file, 0, *len),
            FileBytes::Empty => return None,
        };
        if offset.checked_add(len as u64)? > size {
            return None;
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, start.checked_add(offset)?)
            .ok()?;
        Some(buf)
    }
}
