//! Path lookup inside an image's tree, the way the kernel does it inside the container:
//! relative to a directory, with `.` and `..`, following every symlink on the way.
//!
//! The walk never touches the host file system: it reads the in-memory tree only, and `..`
//! at the root stays at the root. A hostile symlink to `/etc/shadow` or `../../..` therefore
//! names a path of the image, never one of the host.
use std::{
    collections::{BTreeSet, VecDeque},
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::image::tree::{Kind, Tree};

/// Symlinks one lookup may follow (the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// How a lookup ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The path names this path of the image.
    Found(PathBuf),
    /// Nothing in the image has that path (created at run time, or a failed lookup); the
    /// deepest directory of the image the lookup reached, where such a file would be made.
    Missing(PathBuf),
    /// The path leads into a mount of the container that is not the image (`/proc`, `/dev`,
    /// a bind mount or a volume).
    Mounted,
    /// Too many symlinks.
    Loop,
}

/// The result of a lookup: how it ended and every symlink it went through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    pub outcome: Outcome,
    pub links: Vec<PathBuf>,
}

/// Looks paths up in a tree, with the container's other mounts fenced off.
pub struct Walker<'a> {
    tree: &'a Tree,
    mounts: &'a BTreeSet<PathBuf>,
}

impl<'a> Walker<'a> {
    /// `mounts` are the container's mount points other than its root.
    pub fn new(tree: &'a Tree, mounts: &'a BTreeSet<PathBuf>) -> Self {
        Walker { tree, mounts }
    }

    /// Looks up `path` relative to `dir` (ignored when `path` is absolute). When
    /// `follow_final` is false a final symlink is the answer itself (lstat, readlink).
    pub fn walk(&self, dir: &Path, path: &[u8], follow_final: bool) -> Walk {
        let mut links = Vec::new();
        let mut current = if path.first() == Some(&b'/') {
            PathBuf::from("/")
        } else {
            dir.to_path_buf()
        };
        if self.is_mounted(&current) {
            return Walk {
                outcome: Outcome::Mounted,
                links,
            };
        }
        // A trailing slash asks for a directory, which follows a final symlink.
        let follow_final = follow_final || path.ends_with(b"/");
        let mut pending: VecDeque<Vec<u8>> = components(path).collect();
        while let Some(name) = pending.pop_front() {
            match name.as_slice() {
                b"." => continue,
                b".." => {
                    if let Some(parent) = current.parent() {
                        current = parent.to_path_buf();
                    }
                    continue;
                }
                _ => {}
            }
            let next = current.join(OsStr::from_bytes(&name));
            if self.mounts.contains(&next) {
                return Walk {
                    outcome: Outcome::Mounted,
                    links,
                };
            }
            let Some(node) = self.tree.get(&next) else {
                return Walk {
                    outcome: Outcome::Missing(current),
                    links,
                };
            };
            let is_last = pending.is_empty();
            match &node.kind {
                Kind::Symlink(target) if !is_last || follow_final => {
                    links.push(next);
                    if links.len() > MAX_LINKS {
                        return Walk {
                            outcome: Outcome::Loop,
                            links,
                        };
                    }
                    let target = target.as_os_str().as_bytes();
                    if target.first() == Some(&b'/') {
                        current = PathBuf::from("/");
                    }
                    for comp in components(target).rev() {
                        pending.push_front(comp);
                    }
                }
                Kind::Dir => current = next,
                _ if is_last => current = next,
                // A file in the middle of a path: ENOTDIR.
                _ => {
                    return Walk {
                        outcome: Outcome::Missing(current),
                        links,
                    };
                }
            }
        }
        Walk {
            outcome: Outcome::Found(current),
            links,
        }
    }

    fn is_mounted(&self, path: &Path) -> bool {
        path.ancestors().any(|a| self.mounts.contains(a))
    }
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tree::{Data, LayerEntry, Node};

    fn node(kind: Kind) -> Node {
        Node {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            xattrs: Vec::new(),
            data: Data::None,
        }
    }

    fn tree() -> Tree {
        let link = |t: &str| node(Kind::Symlink(PathBuf::from(t)));
        let mut tree = Tree::new();
        tree.apply_layer(vec![
            LayerEntry::Add("/usr/bin/python3.11".into(), node(Kind::File)),
            LayerEntry::Add("/usr/bin/python3".into(), link("python3.11")),
            LayerEntry::Add("/bin".into(), link("usr/bin")),
            LayerEntry::Add("/data/real/f".into(), node(Kind::File)),
            LayerEntry::Add("/data/hop1".into(), link("hop2")),
            LayerEntry::Add("/data/hop2".into(), link("/data/real")),
            LayerEntry::Add("/evil-abs".into(), link("/etc/shadow")),
            LayerEntry::Add("/evil-up".into(), link("../../../../etc/passwd")),
            LayerEntry::Add("/etc/passwd".into(), node(Kind::File)),
            LayerEntry::Add("/loop".into(), link("/loop")),
            LayerEntry::Add("/proc".into(), node(Kind::Dir)),
        ])
        .unwrap();
        tree
    }

    fn found(p: &str) -> Outcome {
        Outcome::Found(PathBuf::from(p))
    }

    #[test]
    fn follows_every_link_and_keeps_them() {
        let tree = tree();
        let mounts = BTreeSet::new();
        let w = Walker::new(&tree, &mounts).walk(Path::new("/"), b"/bin/python3", true);
        assert_eq!(w.outcome, found("/usr/bin/python3.11"));
        assert_eq!(
            w.links,
            [PathBuf::from("/bin"), PathBuf::from("/usr/bin/python3")]
        );
    }

    #[test]
    fn chains_of_links_to_directories_and_relative_lookups() {
        let tree = tree();
        let mounts = BTreeSet::new();
        let walker = Walker::new(&tree, &mounts);
        let w = walker.walk(Path::new("/data"), b"hop1/f", true);
        assert_eq!(w.outcome, found("/data/real/f"));
        assert_eq!(w.links.len(), 2);
        let w = walker.walk(Path::new("/data/real"), b"../real/./f", true);
        assert_eq!(w.outcome, found("/data/real/f"));
    }

    #[test]
    fn lstat_keeps_the_final_link() {
        let tree = tree();
        let mounts = BTreeSet::new();
        let w = Walker::new(&tree, &mounts).walk(Path::new("/"), b"/usr/bin/python3", false);
        assert_eq!(w.outcome, found("/usr/bin/python3"));
        assert!(w.links.is_empty());
    }

    #[test]
    fn hostile_links_stay_inside_the_image() {
        let tree = tree();
        let mounts = BTreeSet::new();
        let walker = Walker::new(&tree, &mounts);
        assert_eq!(
            walker.walk(Path::new("/"), b"/evil-abs", true).outcome,
            Outcome::Missing(PathBuf::from("/etc"))
        );
        assert_eq!(
            walker.walk(Path::new("/"), b"/evil-up", true).outcome,
            found("/etc/passwd")
        );
        assert_eq!(
            walker
                .walk(Path::new("/"), b"/../../etc/passwd", true)
                .outcome,
            found("/etc/passwd")
        );
        assert_eq!(
            walker.walk(Path::new("/"), b"/loop", true).outcome,
            Outcome::Loop
        );
    }

    #[test]
    fn mounts_and_files_in_the_middle_are_not_image_paths() {
        let tree = tree();
        let mounts = BTreeSet::from([PathBuf::from("/proc")]);
        let walker = Walker::new(&tree, &mounts);
        assert_eq!(
            walker.walk(Path::new("/"), b"/proc/self/exe", true).outcome,
            Outcome::Mounted
        );
        assert_eq!(
            walker.walk(Path::new("/proc"), b"cpuinfo", true).outcome,
            Outcome::Mounted
        );
        assert_eq!(
            walker.walk(Path::new("/"), b"/etc/passwd/x", true).outcome,
            Outcome::Missing(PathBuf::from("/etc"))
        );
    }
}
