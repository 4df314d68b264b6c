//! From what processes named to paths of the image: every access is looked up in the image's
//! tree as the container saw it, with every symlink on the way kept, and executables add
//! what the kernel loads for them without a syscall (ELF and `#!` interpreters).
pub mod mountinfo;
pub mod walk;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Deref,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::{
    image::{ImageFiles, elf, tree::Kind},
    report::{PathRecord, Process, Use},
    sensor::{Access, AccessOp},
};
use walk::{Outcome, Walker};

/// `#!` scripts may name scripts as interpreters; the kernel allows this many levels.
const MAX_INTERP_DEPTH: usize = 5;
const O_PATH: u32 = 0o10_000_000;

/// Why accesses added nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolveStats {
    /// Paths not in the image: created at run time, or failed lookups.
    pub not_in_image: u64,
    /// Paths in `/proc`, `/dev`, bind mounts or volumes.
    pub mounted: u64,
    /// Relative paths whose base directory the sensor could not tell.
    pub no_base: u64,
}

/// Accumulates the report's paths from accesses. It holds the image's files and the
/// container's mounts by reference (`&T`) or shared (`Arc<T>`, for a watch that lives long).
pub struct Resolver<F, M>
where
    F: Deref<Target = ImageFiles>,
    M: Deref<Target = BTreeSet<PathBuf>>,
{
    files: F,
    mounts: M,
    paths: BTreeMap<PathBuf, PathRecord>,
    /// Executables whose interpreter was looked for already: a container that runs one file
    /// under many spellings costs one read of it.
    examined: HashMap<PathBuf, Option<Vec<u8>>>,
    pub stats: ResolveStats,
}

impl<F, M> Resolver<F, M>
where
    F: Deref<Target = ImageFiles>,
    M: Deref<Target = BTreeSet<PathBuf>>,
{
    /// `mounts`: the container's mount points other than its root.
    pub fn new(files: F, mounts: M) -> Self {
        Resolver {
            files,
            mounts,
            paths: BTreeMap::new(),
            examined: HashMap::new(),
            stats: ResolveStats::default(),
        }
    }

    pub fn finish(self) -> (BTreeMap<PathBuf, PathRecord>, ResolveStats) {
        (self.paths, self.stats)
    }

    /// The paths found so far.
    pub fn paths(&self) -> &BTreeMap<PathBuf, PathRecord> {
        &self.paths
    }

    pub fn add(&mut self, access: &Access) {
        let dir = match (&access.dir, access.path.first()) {
            (_, Some(b'/')) => PathBuf::from("/"),
            (Some(dir), _) => dir.clone(),
            (None, _) => {
                self.stats.no_base += 1;
                return;
            }
        };
        let follow = !access.nofollow && access.op != AccessOp::Readlink;
        let Some(found) = self.lookup(&dir, &access.path, follow, access) else {
            return;
        };
        let node_is_dir = self.files.tree.get(&found).is_some_and(|n| n.is_dir());
        let how = match access.op {
            AccessOp::Open if node_is_dir && access.flags & O_PATH == 0 => Use::List,
            AccessOp::Open if access.flags & O_PATH != 0 => Use::Stat,
            AccessOp::Open => Use::Open,
            AccessOp::Exec => Use::Exec,
            AccessOp::Interpreter => Use::Interpreter,
            AccessOp::Stat => Use::Stat,
            AccessOp::Readlink => Use::Readlink,
            AccessOp::Chdir => Use::Chdir,
            AccessOp::Modify => Use::Modify,
        };
        self.record(&found, how, access);
        if matches!(how, Use::Exec | Use::Interpreter) {
            self.add_interpreters(&found, access, 0);
        }
    }

    /// Walks a path; records the symlinks it passed; the image path it names, if any.
    fn lookup(
        &mut self,
        dir: &Path,
        path: &[u8],
        follow: bool,
        access: &Access,
    ) -> Option<PathBuf> {
        let walk = Walker::new(&self.files.tree, &self.mounts).walk(dir, path, follow);
        for link in &walk.links {
            self.record(link, Use::Follow, access);
        }
        match walk.outcome {
            Outcome::Found(p) => Some(p),
            Outcome::Mounted => {
                self.stats.mounted += 1;
                None
            }
            Outcome::Missing(reached) => {
                // The directory a file would be created in, or looked for in, must exist.
                self.record(&reached, Use::Stat, access);
                self.stats.not_in_image += 1;
                None
            }
            Outcome::Loop => {
                self.stats.not_in_image += 1;
                None
            }
        }
    }

    /// The interpreter the kernel loads for an executable: `#!` line or ELF `PT_INTERP`.
    fn add_interpreters(&mut self, exe: &Path, access: &Access, depth: usize) {
        if depth >= MAX_INTERP_DEPTH {
            return;
        }
        let files = &*self.files;
        let interp = self
            .examined
            .entry(exe.to_path_buf())
            .or_insert_with(|| interpreter_of(files, exe))
            .clone();
        let Some(interp) = interp else { return };
        let dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
        if let Some(found) = self.lookup(&dir, &interp, true, access) {
            let new = !self
                .paths
                .get(&found)
                .is_some_and(|r| r.uses.contains(&Use::Interpreter));
            self.record(&found, Use::Interpreter, access);
            if new {
                self.add_interpreters(&found, access, depth + 1);
            }
        }
    }

    fn record(&mut self, path: &Path, how: Use, access: &Access) {
        let Some(node) = self.files.tree.get(path) else {
            return;
        };
        let record = self
            .paths
            .entry(path.to_path_buf())
            .or_insert_with(|| PathRecord {
                kind: node.kind.name().to_owned(),
                target: match &node.kind {
                    Kind::Symlink(t) => {
                        Some(String::from_utf8_lossy(t.as_os_str().as_bytes()).into_owned())
                    }
                    _ => None,
                },
                size: if node.has_data() { node.size } else { 0 },
                uses: BTreeSet::new(),
                first_seen_ms: access.at_ms,
                first_process: Process {
                    pid: access.pid,
                    comm: access.comm.clone(),
                },
            });
        record.uses.insert(how);
        if access.at_ms < record.first_seen_ms {
            record.first_seen_ms = access.at_ms;
            record.first_process = Process {
                pid: access.pid,
                comm: access.comm.clone(),
            };
        }
    }
}

/// The interpreter the kernel loads for a file it executes: the `#!` line's, or ELF's
/// `PT_INTERP` (read without reading the rest of the file).
fn interpreter_of(files: &ImageFiles, exe: &Path) -> Option<Vec<u8>> {
    let head = files.read_head(exe, elf::SHEBANG_MAX)?;
    if head.starts_with(b"#!") {
        elf::shebang(&head)
    } else if head.starts_with(b"\x7fELF") {
        elf::interpreter(&files.read_at(exe)?)
    } else {
        None
    }
}
