//! The flattened file system of an image: every layer applied in order, whiteouts included.
use std::{
    collections::BTreeMap,
    ops::Bound,
    path::{Component, Path, PathBuf},
};

/// What a path in the image is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symlink and its target exactly as stored.
    Symlink(PathBuf),
    /// A hard link to another path of the image (the link's data is that path's data).
    Hardlink(PathBuf),
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
            Kind::Hardlink(_) => "hardlink",
            Kind::CharDevice { .. } => "char-device",
            Kind::BlockDevice { .. } => "block-device",
            Kind::Fifo => "fifo",
        }
    }
}

/// Where the bytes of a regular file are.
#[derive(Clone, Debug, PartialEq, Eq)]
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

    /// Regular files and hard links carry bytes.
    pub fn has_data(&self) -> bool {
        matches!(self.kind, Kind::File | Kind::Hardlink(_))
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
}

/// The flattened file system of an image, ordered so that a directory precedes its contents.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    pub fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(PathBuf::from("/"), Node::dir(0o755));
        Tree { nodes }
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

    /// Total bytes of regular files.
    pub fn file_bytes(&self) -> u64 {
        self.nodes
            .values()
            .filter(|n| n.kind == Kind::File)
            .map(|n| n.size)
            .sum()
    }

    fn remove_below(&mut self, dir: &Path) {
        let doomed: Vec<PathBuf> = self.descendants(dir).map(|(p, _)| p.clone()).collect();
        for path in doomed {
            self.nodes.remove(&path);
        }
    }

    fn remove_subtree(&mut self, path: &Path) {
        self.remove_below(path);
        self.nodes.remove(path);
    }

    /// Applies one layer on top of what is there. Whiteouts and opaque markers act on the
    /// lower layers only, wherever the layer lists them.
    pub fn apply_layer(&mut self, entries: Vec<LayerEntry>) {
        let mut added = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry {
                LayerEntry::Whiteout(path) => self.remove_subtree(&path),
                LayerEntry::Opaque(dir) => self.remove_below(&dir),
                LayerEntry::Add(path, node) => added.push((path, node)),
            }
        }
        for (path, mut node) in added {
            if let Kind::Hardlink(target) = &node.kind {
                // The link shares its target's bytes; take them now, while the target is the
                // one this layer meant (a later layer may replace it).
                if let Some(t) = self.nodes.get(target) {
                    node.data = t.data.clone();
                    node.size = t.size;
                }
            }
            match self.nodes.get(&path) {
                Some(old) if old.is_dir() && !node.is_dir() => self.remove_below(&path),
                _ => {}
            }
            self.ensure_parents(&path);
            self.nodes.insert(path, node);
        }
    }

    /// Layers may omit directories that a lower layer or the layer itself never listed.
    fn ensure_parents(&mut self, path: &Path) {
        let mut missing = Vec::new();
        let mut cur = path.parent();
        while let Some(dir) = cur {
            match self.nodes.get(dir) {
                Some(n) if n.is_dir() => break,
                Some(_) => {
                    // A non-directory where a directory must be: the layer replaces it.
                    self.remove_subtree(dir);
                    missing.push(dir.to_path_buf());
                }
                None => missing.push(dir.to_path_buf()),
            }
            cur = dir.parent();
        }
        for dir in missing {
            self.nodes.insert(dir, Node::dir(0o755));
        }
    }
}

/// Turns a path from a layer or a report into the tree's form: absolute, without `.` or
/// trailing slashes. `..` is refused (None): layers and reports never need it.
pub fn normalize(raw: &Path) -> Option<PathBuf> {
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
        ]);
        tree.apply_layer(vec![
            add("/a/new", file(2)),
            LayerEntry::Opaque(PathBuf::from("/a")),
            LayerEntry::Whiteout(PathBuf::from("/b/deep")),
        ]);
        assert_eq!(paths(&tree), ["/", "/a", "/a/new", "/b"]);
    }

    #[test]
    fn a_file_replacing_a_directory_drops_its_contents() {
        let mut tree = Tree::new();
        tree.apply_layer(vec![add("/d/inner", file(1))]);
        tree.apply_layer(vec![add("/d", file(5))]);
        assert_eq!(paths(&tree), ["/", "/d"]);
        assert_eq!(tree.get(Path::new("/d")).unwrap().size, 5);
    }

    #[test]
    fn hardlink_to_a_lower_layer_takes_its_data() {
        let mut tree = Tree::new();
        let mut target = file(7);
        target.data = Data::Blob {
            blob: 0,
            offset: 512,
        };
        tree.apply_layer(vec![add("/t", target)]);
        let mut link = file(0);
        link.kind = Kind::Hardlink(PathBuf::from("/t"));
        tree.apply_layer(vec![add("/l", link)]);
        let l = tree.get(Path::new("/l")).unwrap();
        assert_eq!(l.size, 7);
        assert_eq!(
            l.data,
            Data::Blob {
                blob: 0,
                offset: 512
            }
        );
    }

    #[test]
    fn children_are_direct_only_and_ordered() {
        let mut tree = Tree::new();
        tree.apply_layer(vec![
            add("/etc/b", file(1)),
            add("/etc/a/deep", file(1)),
            add("/etc-x", file(1)),
        ]);
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
