//! Which paths of the image the slim image keeps: the used paths, what the user asked for,
//! and everything they need to work the same way.
use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::{BuildError, libs::LibraryFinder};
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

/// What the image's config asks of its file system.
pub struct ImageNeeds {
    pub working_dir: Option<PathBuf>,
    pub ld_library_path: Option<String>,
}

/// What the user adds to, or takes from, the used paths.
#[derive(Clone, Debug, Default)]
pub struct SelectionRules {
    /// Paths (a directory with everything below it) or globs (`*` within a component, `**`
    /// across components) to keep.
    pub include: Vec<String>,
    /// Globs (or paths) to leave out, whatever else asks for them.
    pub exclude: Vec<String>,
    /// Executables to keep with their ELF interpreter and shared-library closure.
    pub include_bin: Vec<PathBuf>,
}

impl SelectionRules {
    /// True when the rules keep nothing by themselves.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.include_bin.is_empty()
    }
}

/// A path or glob, matched against absolute image paths.
struct Matcher {
    pattern: glob::Pattern,
}

const GLOB_OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Matcher {
    fn new(text: &str) -> Result<Self, BuildError> {
        let absolute = if text.starts_with('/') {
            text.to_owned()
        } else {
            format!("/{text}")
        };
        let trimmed = absolute.trim_end_matches('/');
        let pattern = glob::Pattern::new(if trimmed.is_empty() { "/" } else { trimmed })
            .map_err(|e| BuildError::Config(format!("bad pattern {text:?}: {e}")))?;
        Ok(Matcher { pattern })
    }

    /// The path itself matches, or one of its directories does.
    fn covers(&self, path: &Path) -> bool {
        path.ancestors()
            .any(|p| self.pattern.matches_path_with(p, GLOB_OPTIONS))
    }
}

/// The closure of the used and included paths:
/// - every used path, with every parent directory;
/// - every symlink on the way to it (the report lists them) and every symlink's target;
/// - the ELF interpreter and shared-library closure of every executed file;
/// - the names in directories that were listed, as placeholders;
/// - then, out of all that, whatever the exclude rules name.
pub fn select(
    files: &ImageFiles,
    report: Option<&AccessReport>,
    needs: &ImageNeeds,
    rules: &SelectionRules,
) -> Result<Selection, BuildError> {
    let no_mounts = BTreeSet::new();
    let walker = Walker::new(&files.tree, &no_mounts);
    let libs = LibraryFinder::new(files, &walker, needs.ld_library_path.as_deref());
    let mut sel = Selection::default();
    let mut whole: BTreeSet<PathBuf> = BTreeSet::new();
    let mut listed = Vec::new();
    let mut executables = Vec::new();

    for (path, record) in report.map(|r| &r.paths).into_iter().flatten() {
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
            executables.push(path.clone());
        }
    }
    include(files, rules, &mut whole)?;
    for bin in &rules.include_bin {
        let walk = walker.walk(Path::new("/"), bin.as_os_str().as_bytes(), true);
        match walk.outcome {
            Outcome::Found(found) if files.is_file(&found) => {
                whole.extend(walk.links);
                whole.insert(found.clone());
                executables.push(found);
            }
            _ => {
                return Err(BuildError::IncludeBin(
                    bin.clone(),
                    "no such file in the image".into(),
                ));
            }
        }
    }
    for exe in &executables {
        let closure = libs.closure(exe);
        whole.extend(closure.paths);
        sel.missing_libraries.extend(closure.missing);
    }
    if let Some(dir) = &needs.working_dir
        && let Outcome::Found(found) = walker
            .walk(Path::new("/"), dir.as_os_str().as_bytes(), true)
            .outcome
    {
        whole.insert(found);
    }
    if report.is_some_and(|r| !sees_symlinks(r)) {
        keep_links_to_kept(files, &walker, &mut whole);
    }
    keep_link_targets(files, &walker, &mut whole);

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
    exclude(rules, &mut sel.keep)?;
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
    Ok(sel)
}

/// Adds the paths the include rules name, directories with everything below them.
fn include(
    files: &ImageFiles,
    rules: &SelectionRules,
    whole: &mut BTreeSet<PathBuf>,
) -> Result<(), BuildError> {
    let matchers = rules
        .include
        .iter()
        .map(|t| Matcher::new(t))
        .collect::<Result<Vec<_>, _>>()?;
    if matchers.is_empty() {
        return Ok(());
    }
    for (path, _) in files.tree.iter() {
        if matchers.iter().any(|m| m.covers(path)) {
            whole.insert(path.clone());
        }
    }
    Ok(())
}

/// Removes the paths the exclude rules name, directories with everything below them.
fn exclude(rules: &SelectionRules, keep: &mut BTreeMap<PathBuf, Keep>) -> Result<(), BuildError> {
    let matchers = rules
        .exclude
        .iter()
        .map(|t| Matcher::new(t))
        .collect::<Result<Vec<_>, _>>()?;
    if !matchers.is_empty() {
        keep.retain(|path, _| !matchers.iter().any(|m| m.covers(path)));
    }
    Ok(())
}

/// Adds the targets of kept symlinks, until nothing new turns up (a target may itself be a
/// link).
fn keep_link_targets(files: &ImageFiles, walker: &Walker<'_>, whole: &mut BTreeSet<PathBuf>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_cover_paths_and_what_is_below_them() {
        let dir = Matcher::new("/usr/share/doc").unwrap();
        assert!(dir.covers(Path::new("/usr/share/doc")));
        assert!(dir.covers(Path::new("/usr/share/doc/bash/copyright")));
        assert!(!dir.covers(Path::new("/usr/share/docs")));
        let star = Matcher::new("/usr/lib/*/libsqlite3*").unwrap();
        assert!(star.covers(Path::new("/usr/lib/x86_64-linux-gnu/libsqlite3.so.0")));
        assert!(!star.covers(Path::new("/usr/lib/a/b/libsqlite3.so.0")));
        let deep = Matcher::new("**/*.pyc").unwrap();
        assert!(deep.covers(Path::new(
            "/usr/lib/python3.11/__pycache__/os.cpython-311.pyc"
        )));
        assert!(
            Matcher::new("relative/path")
                .unwrap()
                .covers(Path::new("/relative/path/x"))
        );
    }
}
