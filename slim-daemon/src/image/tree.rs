//! The flattened file system of an image: every layer applied in order, whiteouts included.
//!
//! Layers are hostile input, so the tree is bounded: no path longer than `PATH_MAX`, and no
//! more nodes or path bytes than a real image could need.
use std::{
    collections::{BTreeMap, HashSet},
    ops::Bound,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use super::tar_read::MAX_NAME;

/// Paths one image may hold (the largest real images hold about a million).
pub const MAX_NODES: usize = 4_000_000;
/// Bytes of all paths of one image together.
pub const MAX_PATH_BYTES: usize = 1 << 29;

/// An image whose layers would make the tree larger than its bounds.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("its layers hold more than {MAX_NODES} paths")]
    TooManyPaths,
    #[error("its layers' paths add up to more than {MAX_PATH_BYTES} bytes")]
    TooManyPathBytes,
    #[error("it holds a path of {0} bytes (the limit is {MAX_NAME})")]
    PathTooLong(usize),
}

/// What a path in the image is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symlink and its target exactly as stored.
    Symlink(PathBuf),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink(_) => "symlink",
            Kind::CharDevice { .. } => "char-device",
            Kind::BlockDevice { .. } => "block-device",
            Kind::Fifo => "fifo",
        }
    }
}

/// Where the bytes of a regular file are. Hard-linked paths share one `Data`, so two files
/// with equal (non-`None`) data are the same file of the same layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Data {
    None,
    /// In one of the image's blob files on disk, at a byte offset.
    Blob {
        blob: u32,
        offset: u64,
    },
    /// In a layer directory, at a path relative to it.
    LayerFile {
        layer: u32,
        rel: PathBuf,
    },
}

/// One path of the image with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (no file type bits).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Bytes of a regular file (or of a hard link's data).
    pub size: u64,
    /// Extended attributes that belong in an image (`security.capability`).
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub data: Data,
}

impl Node {
    pub fn dir(mode: u32) -> Self {
        Node {
            kind: Kind::Dir,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            xattrs: Vec::new(),
            data: Data::None,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// Regular files carry bytes.
    pub fn has_data(&self) -> bool {
        self.kind == Kind::File
    }
}

/// One entry of a layer, in the order the layer lists it.
#[derive(Clone, Debug)]
pub enum LayerEntry {
    Add(PathBuf, Node),
    /// `.wh.<name>`: the path and everything below it is deleted from lower layers.
    Whiteout(PathBuf),
    /// `.wh..wh..opq`: the directory hides everything lower layers put in it.
    Opaque(PathBuf),
    /// A hard link: the path becomes the same file as `target` (of this layer or a lower
    /// one), with its metadata and its bytes.
    Link {
        path: PathBuf,
        target: PathBuf,
    },
}

/// The flattened file system of an image, ordered so that a directory precedes its contents.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
    /// Bytes of the paths in `nodes`.
    path_bytes: usize,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(PathBuf::from("/"), Node::dir(0o755));
        Tree {
            nodes,
            path_bytes: 1,
        }
    }

    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PathBuf, &Node)> {
        self.nodes.iter()
    }

    /// Everything strictly below `dir`.
    pub fn descendants<'a>(
        &'a self,
        dir: &'a Path,
    ) -> impl Iterator<Item = (&'a PathBuf, &'a Node)> {
        self.nodes
            .range::<Path, _>((Bound::Excluded(dir), Bound::Unbounded))
            .take_while(move |(p, _)| p.starts_with(dir))
    }

    /// The direct children of `dir`.
    pub fn children<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = (&'a PathBuf, &'a Node)> {
        self.descendants(dir)
            .filter(move |(p, _)| p.parent() == Some(dir))
    }

    /// Total bytes of regular files, each hard-linked file once.
    pub fn file_bytes(&self) -> u64 {
        let mut seen = HashSet::new();
        self.nodes
            .values()
            .filter(|n| n.kind == Kind::File && (n.data == Data::None || seen.insert(&n.data)))
            .map(|n| n.size)
            .sum()
    }

    fn remove_below(&mut self, dir: &Path) {
        let doomed: Vec<PathBuf> = self.descendants(dir).map(|(p, _)| p.clone()).collect();
        for path in doomed {
            self.remove(&path);
        }
    }

    fn remove_subtree(&mut self, path: &Path) {
        self.remove_below(path);
        self.remove(path);
    }

    fn remove(&mut self, path: &Path) {
        if self.nodes.remove(path).is_some() {
            self.path_bytes -= path.as_os_str().len();
        }
    }

    fn insert(&mut self, path: PathBuf, node: Node) -> Result<(), TreeError> {
        let len = path.as_os_str().len();
        match self.nodes.insert(path, node) {
            Some(_) => Ok(()),
            None => {
                self.path_bytes += len;
                if self.nodes.len() > MAX_NODES {
                    Err(TreeError::TooManyPaths)
                } else if self.path_bytes > MAX_PATH_BYTES {
                    Err(TreeError::TooManyPathBytes)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Applies one layer on top of what is there. Whiteouts and opaque markers act on the
    /// lower layers only, wherever the layer lists them.
    pub fn apply_layer(&mut self, entries: Vec<LayerEntry>) -> Result<(), TreeError> {
        let mut added = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                LayerEntry::Whiteout(path) => self.remove_subtree(&path),
                LayerEntry::Opaque(dir) => self.remove_below(&dir),
                add => added.push(add),
            }
        }
        for entry in added {
            let (path, node) = match entry {
                LayerEntry::Add(path, node) => (path, node),
                LayerEntry::Link { path, target } => {
                    // The same file as the target as it is now: this layer's, or a lower
                    // one's (a later layer that replaces the target leaves the link alone).
                    match self.nodes.get(&target) {
                        Some(t) if t.kind == Kind::File => (path, t.clone()),
                        _ => {
                            tracing::warn!(
                                path = %path.display(),
                                target = %target.display(),
                                "hard link to a path that is not a file; skipped"
                            );
                            continue;
                        }
                    }
                }
                LayerEntry::Whiteout(_) | LayerEntry::Opaque(_) => continue,
            };
            let len = path.as_os_str().len();
            if len > MAX_NAME {
                return Err(TreeError::PathTooLong(len));
            }
            match self.nodes.get(&path) {
                Some(old) if old.is_dir() && !node.is_dir() => self.remove_below(&path),
                _ => {}
            }
            self.ensure_parents(&path)?;
            self.insert(path, node)?;
        }
        Ok(())
    }

    /// Layers may omit directories that a lower layer or the layer itself never listed. Only
    /// the missing ones are copied out of `path`, whose ancestors are borrowed slices of it.
    fn ensure_parents(&mut self, path: &Path) -> Result<(), TreeError> {
        let mut missing: Vec<&Path> = Vec::new();
        let mut cur = path.parent();
        while let Some(dir) = cur {
            match self.nodes.get(dir) {
                Some(n) if n.is_dir() => break,
                Some(_) => {
                    // A non-directory where a directory must be: the layer replaces it.
                    self.remove_subtree(dir);
                    missing.push(dir);
                }
                None => missing.push(dir),
            }
            cur = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            self.insert(dir.to_path_buf(), Node::dir(0o755))?;
        }
        Ok(())
    }
}

/// Turns a path from a layer or a report into the tree's form: absolute, without `.` or
/// trailing slashes. `..` and paths longer than `PATH_MAX` are refused (None): layers and
/// reports never need them.
pub fn normalize(raw: &Path) -> Option<PathBuf> {
    if raw.as_os_str().as_bytes().len() > MAX_NAME {
        return None;
    }
    let mut out = PathBuf::from("/");
    for comp in raw.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(name),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> Node {
        Node {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size,
            xattrs: Vec::new(),
            data: Data::None,
        }
    }

    fn add(path: &str, node: Node) -> LayerEntry {
        LayerEntry::Add(PathBuf::from(path), node)
    }

    fn paths(tree: &Tree) -> Vec<String> {
        tree.iter().map(|(p, _)| p.display().to_string()).collect()
    }

    #[test]
    fn whiteout_removes_a_lower_subtree_and_opaque_hides_lower_children() {
        let mut tree = Tree::new();
        tree.apply_layer(vec![
            add("/a/x", file(1)),
            add("/a/y", file(1)),
            add("/b/deep/z", file(1)),
        ])
        .unwrap();
        tree.apply_layer(vec![
            add("/a/new", file(2)),
            LayerEntry::Opaque(PathBuf::from("/a")),
            LayerEntry::Whiteout(PathBuf::from("/b/deep")),
        ])
        .unwrap();
        assert_eq!(paths(&tree), ["/", "/a", "/a/new", "/b"]);
    }

    #[test]
    fn a_file_replacing_a_directory_drops_its_contents() {
        let mut tree = Tree::new();
        tree.apply_layer(vec![add("/d/inner", file(1))]).unwrap();
        tree.apply_layer(vec![add("/d", file(5))]).unwrap();
        assert_eq!(paths(&tree), ["/", "/d"]);
        assert_eq!(tree.get(Path::new("/d")).unwrap().size, 5);
    }

    #[test]
    fn a_hard_link_keeps_its_file_when_a_later_layer_replaces_the_target() {
        let mut tree = Tree::new();
        let mut target = file(7);
        target.data = Data::Blob {
            blob: 0,
            offset: 512,
        };
        tree.apply_layer(vec![
            add("/usr/bin/perl", target.clone()),
            LayerEntry::Link {
                path: "/usr/bin/perl5.36.0".into(),
                target: "/usr/bin/perl".into(),
            },
        ])
        .unwrap();
        assert_eq!(tree.get(Path::new("/usr/bin/perl5.36.0")), Some(&target));
        assert_eq!(tree.file_bytes(), 7, "one file, two names");
        let mut edited = file(9);
        edited.data = Data::Blob {
            blob: 1,
            offset: 512,
        };
        tree.apply_layer(vec![add("/usr/bin/perl", edited)])
            .unwrap();
        assert_eq!(tree.get(Path::new("/usr/bin/perl5.36.0")), Some(&target));
        assert_eq!(tree.file_bytes(), 16);
    }

    #[test]
    fn bounds_paths_and_nodes() {
        let mut tree = Tree::new();
        let long = format!("/{}", "a/".repeat(MAX_NAME / 2));
        assert!(matches!(
            tree.apply_layer(vec![add(&long, file(1))]),
            Err(TreeError::PathTooLong(_))
        ));
        assert_eq!(normalize(Path::new(&long)), None);
    }

    #[test]
    fn children_are_direct_only_and_ordered() {
        let mut tree = Tree::new();
        tree.apply_layer(vec![
            add("/etc/b", file(1)),
            add("/etc/a/deep", file(1)),
            add("/etc-x", file(1)),
        ])
        .unwrap();
        let kids: Vec<_> = tree
            .children(Path::new("/etc"))
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(kids, ["/etc/a", "/etc/b"]);
    }

    #[test]
    fn normalize_refuses_parent_components() {
        assert_eq!(
            normalize(Path::new("./usr//bin/")),
            Some(PathBuf::from("/usr/bin"))
        );
        assert_eq!(normalize(Path::new("a/../../etc")), None);
    }
}
