//! `/proc/<pid>/mountinfo`: a container's root file system, its overlay layers, and the
//! other mounts (`/proc`, `/dev`, bind mounts, volumes) whose files are not image files.
//!
//! Parsed here, where the rest of `/proc` is read with the procfs crate: procfs leaves mount
//! points escaped (`\040`) and keeps superblock options in a map, which loses overlay's
//! repeated `lowerdir+=` options and their order, and so the layers.
use std::{
    collections::BTreeSet,
    ffi::OsStr,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// One line of a mountinfo file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted, relative to the reading process's root.
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// Options of the file system itself (overlay's `lowerdir=...` and so on).
    pub super_options: String,
}

/// A container's mounts, as its own processes see them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMounts {
    /// Overlay lower directories of the root, top first.
    pub lower_dirs: Vec<PathBuf>,
    pub upper_dir: Option<PathBuf>,
    /// Every mount point but the root.
    pub others: BTreeSet<PathBuf>,
}

pub fn read_self() -> io::Result<Vec<Mount>> {
    Ok(parse(&fs::read_to_string("/proc/self/mountinfo")?))
}

pub fn read_pid(pid: u32) -> io::Result<Vec<Mount>> {
    Ok(parse(&fs::read_to_string(format!(
        "/proc/{pid}/mountinfo"
    ))?))
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.splitn(3, ' ');
    Some(Mount {
        mount_point: PathBuf::from(OsStr::from_bytes(&unescape(left.get(4)?))),
        fs_type: right.next()?.to_owned(),
        source: String::from_utf8_lossy(&unescape(right.next()?)).into_owned(),
        super_options: right.next().unwrap_or("").to_owned(),
    })
}

/// Undoes the kernel's octal escapes (`\040` for a space, and so on); anything else, an
/// escape beyond a byte (`\777`) included, stays as written.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')))
            .and_then(|v| u8::try_from(v).ok());
        if let Some(byte) = octal {
            out.push(byte);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Splits super options at commas that are not escaped.
fn split_options(opts: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in opts.chars() {
        match c {
            ',' if !escaped => out.push(std::mem::take(&mut cur)),
            '\\' if !escaped => {
                escaped = true;
                cur.push(c);
                continue;
            }
            _ => cur.push(c),
        }
        escaped = false;
    }
    out.push(cur);
    out
}

/// Splits an overlay `lowerdir` list at `:` that are not escaped with a backslash.
fn split_lower(list: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let bytes = unescape(list);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => {
                cur.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            b':' => out.push(PathBuf::from(OsStr::from_bytes(&std::mem::take(&mut cur)))),
            c => cur.push(c),
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(OsStr::from_bytes(&cur)));
    }
    out
}

impl ContainerMounts {
    /// The root overlay and the other mounts of a mount table read from inside a container.
    /// Relative overlay directories (Docker mounts with them when the list is long) are taken
    /// relative to `relative_base`.
    pub fn from_mounts(mounts: &[Mount], relative_base: Option<&Path>) -> Self {
        let mut out = ContainerMounts::default();
        let absolute = |p: PathBuf| match relative_base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p,
        };
        // The last mount on "/" is the one in effect.
        if let Some(root) = mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == Path::new("/") && m.fs_type == "overlay")
        {
            for opt in split_options(&root.super_options) {
                if let Some(list) = opt.strip_prefix("lowerdir=") {
                    out.lower_dirs
                        .extend(split_lower(list).into_iter().map(absolute));
                } else if let Some(one) = opt.strip_prefix("lowerdir+=") {
                    out.lower_dirs
                        .extend(split_lower(one).into_iter().map(absolute));
                } else if let Some(upper) = opt.strip_prefix("upperdir=") {
                    out.upper_dir = split_lower(upper).into_iter().next().map(absolute);
                }
            }
        }
        out.others = mounts
            .iter()
            .map(|m| m.mount_point.clone())
            .filter(|p| p != Path::new("/"))
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
597 508 0:52 / / rw,relatime master:281 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/AAA:/var/lib/docker/overlay2/l/BBB,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
598 597 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
605 597 254:0 /var/lib/docker/containers/c/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw
606 597 254:0 /data /mnt/my\\040data rw,relatime - ext4 /dev/vda rw
";

    #[test]
    fn finds_layers_and_other_mounts() {
        let m = ContainerMounts::from_mounts(&parse(SAMPLE), None);
        assert_eq!(
            m.lower_dirs,
            [
                PathBuf::from("/var/lib/docker/overlay2/l/AAA"),
                PathBuf::from("/var/lib/docker/overlay2/l/BBB")
            ]
        );
        assert_eq!(
            m.upper_dir,
            Some(PathBuf::from("/var/lib/docker/overlay2/x/diff"))
        );
        assert!(m.others.contains(Path::new("/proc")));
        assert!(m.others.contains(Path::new("/etc/hostname")));
        assert!(m.others.contains(Path::new("/mnt/my data")));
        assert!(!m.others.contains(Path::new("/")));
    }

    #[test]
    fn escapes_beyond_a_byte_stay_as_written() {
        assert_eq!(unescape("a\\040b"), b"a b");
        assert_eq!(unescape("a\\440b"), b"a\\440b");
        assert_eq!(unescape("end\\04"), b"end\\04");
    }

    #[test]
    fn relative_layers_get_the_base() {
        let text =
            "1 0 0:1 / / rw - overlay overlay rw,lowerdir=l/A:l/B,upperdir=x/diff,workdir=x/work\n";
        let m =
            ContainerMounts::from_mounts(&parse(text), Some(Path::new("/var/lib/docker/overlay2")));
        assert_eq!(
            m.lower_dirs[1],
            PathBuf::from("/var/lib/docker/overlay2/l/B")
        );
    }
}
