//! The shared-library closure of an executable, found the way `ld.so` finds it, but by
//! reading the image's files (never by running `ldd`).
use std::{
    collections::{BTreeSet, VecDeque},
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::{
    image::{ImageFiles, elf},
    resolve::walk::{Outcome, Walker},
};

/// Where glibc looks when nothing else says (after `/etc/ld.so.conf`): its built-in trusted
/// directories, with the multiarch ones Debian-family glibc adds.
const DEFAULT_DIRS: [&str; 8] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
];
const LD_SO_CONF: &str = "/etc/ld.so.conf";
/// Nesting of `include` lines followed in ld.so.conf.
const MAX_INCLUDE_DEPTH: usize = 4;
/// An ld.so.conf file larger than this is not read.
const MAX_CONF_BYTES: u64 = 1 << 20;
/// ld.so.conf files read, lines read and directories kept, over all includes together.
const MAX_CONF_FILES: usize = 256;
const MAX_CONF_LINES: usize = 65_536;
const MAX_CONF_DIRS: usize = 4096;

/// Finds libraries inside one image.
pub struct LibraryFinder<'a> {
    files: &'a ImageFiles,
    walker: &'a Walker<'a>,
    /// `LD_LIBRARY_PATH` from the image's environment.
    env_dirs: Vec<Vec<u8>>,
    /// ld.so.conf directories, then the defaults.
    system_dirs: Vec<Vec<u8>>,
}

/// What reading ld.so.conf and its includes found so far.
#[derive(Default)]
struct ConfRead {
    files: BTreeSet<PathBuf>,
    lines: usize,
    dirs: Vec<Vec<u8>>,
}

/// Every path the closure needs: the files found and the symlinks passed to reach them.
#[derive(Debug, Default)]
pub struct Closure {
    pub paths: BTreeSet<PathBuf>,
    /// Sonames no directory had.
    pub missing: Vec<String>,
}

impl<'a> LibraryFinder<'a> {
    pub fn new(
        files: &'a ImageFiles,
        walker: &'a Walker<'a>,
        ld_library_path: Option<&str>,
    ) -> Self {
        let env_dirs = ld_library_path
            .map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(|d| d.as_bytes().to_vec())
                    .collect()
            })
            .unwrap_or_default();
        let mut finder = LibraryFinder {
            files,
            walker,
            env_dirs,
            system_dirs: Vec::new(),
        };
        let mut conf = ConfRead::default();
        finder.read_conf(LD_SO_CONF.as_bytes(), 0, &mut conf);
        let mut dirs = conf.dirs;
        dirs.extend(DEFAULT_DIRS.iter().map(|d| d.as_bytes().to_vec()));
        finder.system_dirs = dirs;
        finder
    }

    /// The directories ld.so would search, in order, for tests and fuzzing.
    pub fn system_dirs(&self) -> &[Vec<u8>] {
        &self.system_dirs
    }

    /// The ELF interpreter and the libraries `exe` needs, transitively.
    pub fn closure(&self, exe: &Path) -> Closure {
        let mut out = Closure::default();
        let mut queue = VecDeque::from([exe.to_path_buf()]);
        let mut seen = BTreeSet::new();
        while let Some(object) = queue.pop_front() {
            if !seen.insert(object.clone()) {
                continue;
            }
            let Some(deps) = self
                .files
                .read_at(&object)
                .and_then(|bytes| elf::elf_deps(&bytes))
            else {
                continue;
            };
            if let Some(interp) = &deps.interpreter
                && let Some(found) = self.lookup(Path::new("/"), interp, &mut out.paths)
            {
                queue.push_back(found);
            }
            let origin = object
                .parent()
                .unwrap_or(Path::new("/"))
                .as_os_str()
                .as_bytes();
            for soname in &deps.needed {
                match self.find_library(soname, &deps, origin, &mut out.paths) {
                    Some(found) => queue.push_back(found),
                    None => out
                        .missing
                        .push(String::from_utf8_lossy(soname).into_owned()),
                }
            }
        }
        out
    }

    fn find_library(
        &self,
        soname: &[u8],
        deps: &elf::ElfDeps,
        origin: &[u8],
        paths: &mut BTreeSet<PathBuf>,
    ) -> Option<PathBuf> {
        if soname.contains(&b'/') {
            return self.lookup(Path::new("/"), soname, paths);
        }
        let expand = |dir: &Vec<u8>| -> Vec<u8> {
            let s = dir.as_slice();
            for token in [&b"$ORIGIN"[..], b"${ORIGIN}"] {
                if let Some(pos) = s.windows(token.len()).position(|w| w == token) {
                    return [&s[..pos], origin, &s[pos + token.len()..]].concat();
                }
            }
            dir.clone()
        };
        // DT_RPATH only counts when there is no DT_RUNPATH.
        let rpath = if deps.runpath.is_empty() {
            deps.rpath.as_slice()
        } else {
            &[]
        };
        let candidates = rpath
            .iter()
            .map(expand)
            .chain(self.env_dirs.iter().cloned())
            .chain(deps.runpath.iter().map(expand))
            .chain(self.system_dirs.iter().cloned());
        for dir in candidates {
            let mut full = dir;
            full.push(b'/');
            full.extend_from_slice(soname);
            let mut trial = BTreeSet::new();
            if let Some(found) = self.lookup(Path::new("/"), &full, &mut trial)
                && self.files.is_file(&found)
            {
                paths.extend(trial);
                return Some(found);
            }
        }
        None
    }

    /// Looks a path up; on success adds it and every link passed to `paths`.
    fn lookup(&self, dir: &Path, path: &[u8], paths: &mut BTreeSet<PathBuf>) -> Option<PathBuf> {
        let walk = self.walker.walk(dir, path, true);
        match walk.outcome {
            Outcome::Found(found) => {
                paths.extend(walk.links);
                paths.insert(found.clone());
                Some(found)
            }
            _ => None,
        }
    }

    /// Directories listed in an ld.so.conf file and the files it includes. Each file is read
    /// once, however often it is included, and the whole read is bounded.
    fn read_conf(&self, conf: &[u8], depth: usize, read: &mut ConfRead) {
        if depth > MAX_INCLUDE_DEPTH || read.files.len() >= MAX_CONF_FILES {
            return;
        }
        let Outcome::Found(found) = self.walker.walk(Path::new("/"), conf, true).outcome else {
            return;
        };
        if !read.files.insert(found.clone()) {
            return;
        }
        let Some(text) = self.files.read_small(&found, MAX_CONF_BYTES) else {
            return;
        };
        for line in text.split(|&b| b == b'\n') {
            read.lines += 1;
            if read.lines > MAX_CONF_LINES {
                return;
            }
            let line = line
                .split(|&b| b == b'#')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if line.is_empty() {
                continue;
            }
            if let Some(pattern) = line.strip_prefix(b"include").map(<[u8]>::trim_ascii) {
                let base = found.parent().unwrap_or(Path::new("/"));
                for included in self.glob(base, pattern) {
                    self.read_conf(included.as_os_str().as_bytes(), depth + 1, read);
                }
            } else if line.starts_with(b"/")
                && read.dirs.len() < MAX_CONF_DIRS
                && !read.dirs.iter().any(|d| d == line)
            {
                read.dirs.push(line.to_vec());
            }
        }
    }

    /// Files matching a pattern whose last component may hold one `*` (`dir/*.conf`).
    fn glob(&self, base: &Path, pattern: &[u8]) -> Vec<PathBuf> {
        let pattern = Path::new(OsStr::from_bytes(pattern));
        let pattern = if pattern.is_absolute() {
            pattern.to_path_buf()
        } else {
            base.join(pattern)
        };
        let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
            return Vec::new();
        };
        let name = name.as_bytes();
        let Outcome::Found(dir) = self
            .walker
            .walk(Path::new("/"), dir.as_os_str().as_bytes(), true)
            .outcome
        else {
            return Vec::new();
        };
        let (prefix, suffix) = match name.iter().position(|&b| b == b'*') {
            Some(star) => (&name[..star], &name[star + 1..]),
            None => (name, &[][..]),
        };
        let exact = !name.contains(&b'*');
        self.files
            .tree
            .children(&dir)
            .filter(|(p, _)| {
                let n = p.file_name().map(|n| n.as_bytes()).unwrap_or_default();
                if exact {
                    n == name
                } else {
                    n.len() >= prefix.len() + suffix.len()
                        && n.starts_with(prefix)
                        && n.ends_with(suffix)
                }
            })
            .map(|(p, _)| p.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image of one layer holding these files.
    fn image(files: &[(&str, &[u8])]) -> ImageFiles {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, *data).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        ImageFiles::from_tar_files(vec![file]).unwrap()
    }

    #[test]
    fn ld_so_conf_that_includes_itself_is_read_once() {
        // Each file includes every file ten times over: without a visited set, 10^5 reads.
        let mut conf = b"/opt/lib\n".to_vec();
        for _ in 0..10 {
            conf.extend_from_slice(b"include /etc/ld.so.conf\ninclude ld.so.conf.d/*.conf\n");
        }
        let names: Vec<String> = (0..10)
            .map(|i| format!("etc/ld.so.conf.d/{i}.conf"))
            .collect();
        let mut files: Vec<(&str, &[u8])> = vec![("etc/ld.so.conf", &conf)];
        files.extend(names.iter().map(|n| (n.as_str(), conf.as_slice())));
        let image = image(&files);
        let mounts = BTreeSet::new();
        let walker = Walker::new(&image.tree, &mounts);
        let started = std::time::Instant::now();
        let finder = LibraryFinder::new(&image, &walker, None);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let dirs = finder.system_dirs();
        assert_eq!(dirs[0], b"/opt/lib");
        assert_eq!(
            dirs.iter().filter(|d| d.as_slice() == b"/opt/lib").count(),
            1
        );
    }
}
