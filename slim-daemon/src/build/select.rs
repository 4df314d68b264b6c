//! Which paths of the image the slim image keeps: the used paths and everything they need to
//! work the same way.
use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::libs::LibraryFinder;
use crate::{
    image::{ImageFiles, tree::Kind, writer::Keep},
    report::{AccessReport, Use},
    resolve::walk::{Outcome, Walker},
};

/// The kept paths, and what could not be kept.
#[derive(Debug, Default)]
pub struct Selection {
    pub keep: BTreeMap<PathBuf, Keep>,
    /// Report paths that are not in this image.
    pub not_in_image: Vec<PathBuf>,
    /// Shared libraries an executable needs that the image does not have.
    pub missing_libraries: Vec<String>,
}

/// Extra paths asked for by the image itself (its working directory).
pub struct ImageNeeds {
    pub working_dir: Option<PathBuf>,
    pub ld_library_path: Option<String>,
}

/// Whether every sensor behind the report saw the symlinks paths went through (fanotify
/// sees only the files opened at their end).
fn sees_symlinks(report: &AccessReport) -> bool {
    !report.sensor.kind.split(',').any(|k| k == "fanotify")
}

/// Keeps every symlink of the image that leads to a kept path or to a directory on the way
/// to one: a workload may have reached the path through any of them.
fn keep_links_to_kept(files: &ImageFiles, walker: &Walker<'_>, whole: &mut BTreeSet<PathBuf>) {
    let dirs: BTreeSet<PathBuf> = whole
        .iter()
        .flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    let links: Vec<PathBuf> = files
        .tree
        .iter()
        .filter(|(_, node)| matches!(node.kind, Kind::Symlink(_)))
        .map(|(path, _)| path.clone())
        .collect();
    for link in links {
        let walk = walker.walk(Path::new("/"), link.as_os_str().as_bytes(), true);
        if let Outcome::Found(target) = walk.outcome
            && (whole.contains(&target) || dirs.contains(&target))
        {
            whole.extend(walk.links);
        }
    }
}

/// The closure of the used paths:
/// - every used path, with every parent directory;
/// - every symlink on the way to it (the report lists them) and every symlink's target;
/// - the ELF interpreter and shared-library closure of every executed file;
/// - the names in directories that were listed, as placeholders.
pub fn select(files: &ImageFiles, report: &AccessReport, needs: &ImageNeeds) -> Selection {
    let no_mounts = BTreeSet::new();
    let walker = Walker::new(&files.tree, &no_mounts);
    let libs = LibraryFinder::new(files, &walker, needs.ld_library_path.as_deref());
    let mut sel = Selection::default();
    let mut whole: BTreeSet<PathBuf> = BTreeSet::new();
    let mut listed = Vec::new();

    for (path, record) in &report.paths {
        if files.tree.get(path).is_none() {
            sel.not_in_image.push(path.clone());
            continue;
        }
        whole.insert(path.clone());
        if record.uses.contains(&Use::List) {
            listed.push(path.clone());
        }
        if record
            .uses
            .iter()
            .any(|u| matches!(u, Use::Exec | Use::Interpreter))
        {
            let closure = libs.closure(path);
            whole.extend(closure.paths);
            sel.missing_libraries.extend(closure.missing);
        }
    }
    if let Some(dir) = &needs.working_dir
        && let Outcome::Found(found) = walker
            .walk(Path::new("/"), dir.as_os_str().as_bytes(), true)
            .outcome
    {
        whole.insert(found);
    }

    if !sees_symlinks(report) {
        keep_links_to_kept(files, &walker, &mut whole);
    }

    // Symlink targets, until nothing new turns up (a target may itself be a link).
    let mut pending: Vec<PathBuf> = whole.iter().cloned().collect();
    while let Some(path) = pending.pop() {
        if let Some(Kind::Symlink(_)) = files.tree.get(&path).map(|n| &n.kind) {
            let walk = walker.walk(Path::new("/"), path.as_os_str().as_bytes(), true);
            let found = match walk.outcome {
                Outcome::Found(p) => Some(p),
                _ => None,
            };
            for p in walk.links.into_iter().chain(found) {
                if whole.insert(p.clone()) {
                    pending.push(p);
                }
            }
        }
    }

    for path in &whole {
        sel.keep.insert(path.clone(), Keep::Whole);
    }
    for dir in listed {
        for (child, node) in files.tree.children(&dir) {
            let how = if node.has_data() {
                Keep::Placeholder
            } else {
                Keep::Whole
            };
            sel.keep.entry(child.clone()).or_insert(how);
        }
    }
    let parents: BTreeSet<PathBuf> = sel
        .keep
        .keys()
        .flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    for parent in parents {
        sel.keep.insert(parent, Keep::Whole);
    }
    sel.missing_libraries.sort();
    sel.missing_libraries.dedup();
    sel
}
