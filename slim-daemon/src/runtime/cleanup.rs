//! What an earlier slimd left behind when it was killed (SIGKILL gives it no chance to clean
//! up): its containers and the cgroups it made for them. Each is marked with its owner (pid
//! and start time), and removed at a later start only once that process is gone.
use std::path::Path;

use super::Docker;

/// The label every container slimd creates carries: `<pid>:<start time>` of its slimd.
pub const OWNER_LABEL: &str = "slimd.owner";

/// A process's identity that survives pid reuse: its pid and its start time.
fn identity(pid: u32) -> Option<String> {
    let stat = procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()?;
    Some(format!("{pid}:{}", stat.starttime))
}

/// This process's owner mark.
pub fn owner() -> String {
    identity(std::process::id()).unwrap_or_else(|| format!("{}:0", std::process::id()))
}

fn is_alive(owner: &str) -> bool {
    let Some(pid) = owner.split(':').next().and_then(|p| p.parse().ok()) else {
        return false;
    };
    identity(pid).as_deref() == Some(owner)
}

/// Removes, by id, the containers whose slimd is gone. Failures only cost a log line.
pub async fn stale_containers(docker: &Docker) {
    let stale = match docker.containers_labelled(OWNER_LABEL).await {
        Ok(list) => list,
        Err(e) => {
            tracing::debug!("looking for containers left behind: {e}");
            return;
        }
    };
    for (id, owner) in stale {
        if is_alive(&owner) {
            continue;
        }
        tracing::info!("removing container {id}, left behind by slimd {owner}");
        if let Err(e) = docker.remove_container(&id).await {
            tracing::warn!("could not remove container {id}, left behind by slimd: {e}");
        }
    }
}

/// Removes the empty cgroups below `parent` (named `<pid in hex>-<suffix>`) whose slimd is
/// gone.
pub fn stale_cgroups(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| u32::from_str_radix(pid, 16).ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        // Only an empty cgroup can be removed, which is what is wanted.
        if std::fs::remove_dir(entry.path()).is_ok() {
            tracing::info!(
                "removed cgroup {}, left behind by slimd",
                entry.path().display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_alive_while_their_process_is() {
        let me = owner();
        assert!(is_alive(&me));
        let (pid, _) = me.split_once(':').unwrap();
        assert!(!is_alive(&format!("{pid}:1")), "same pid, other start time");
        assert!(!is_alive("4194304:1"));
        assert!(!is_alive("garbage"));
    }
}
