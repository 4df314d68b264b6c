//! The seccomp profile (the OCI/Docker JSON format) that allows what was observed, what the
//! runtime needs between installing the filter and exec'ing the workload, and what every
//! process needs to end.
use std::{collections::BTreeSet, path::Path};

use serde_json::{Value, json};

use super::{Abi, Syscalls};
use crate::{fsutil, report::AccessReport};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "{0} names syscall {1:?}, which the {2} syscall table does not have: the report is corrupt or from another kernel architecture"
    )]
    UnknownSyscall(String, String, &'static str),
    #[error(
        "{0} has no syscalls: it was made by the {1} sensor, which cannot see them; re-record it with --sensor ebpf"
    )]
    NoSyscalls(String, String),
    #[error(
        "{0} covers only part of the containers' lives ({1}): a profile from it may deny what the rest did; record the whole life (slimd run, or a daemon running before the containers start), or pass --allow-partial"
    )]
    Partial(String, String),
    #[error(
        "{0}: the kernel could not record {1} syscalls; record again (fewer containers at once), or pass --allow-partial"
    )]
    Unrecorded(String, u64),
    #[error("cannot write seccomp profile {0}: {1}")]
    Write(String, std::io::Error),
}

/// Which runtime starts the containers: what it does after installing the filter is allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// runc (Docker, containerd): its Go runtime and the end of its init, after the filter.
    #[default]
    Runc,
    /// crun: a C runtime, which execs soon after the filter.
    Crun,
    /// Nothing beyond what was observed and what every process needs to end.
    None,
}

/// runc installs the filter in `runc init`, then (with `no-new-privileges` off, as Docker's
/// default) sets up the user, capabilities and working directory, opens the exec FIFO, closes
/// its descriptors (checking with `fstatfs` that `/proc/self/fd` is on procfs) and looks the
/// program up; its Go runtime may meanwhile start threads, take signals and sleep.
const RUNC: &[&str] = &[
    "arch_prctl",
    "brk",
    "capget",
    "capset",
    "chdir",
    "clone",
    "close",
    "dup3",
    "epoll_ctl",
    "epoll_pwait",
    "execve",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fcntl",
    "fstat",
    "fstatfs",
    "futex",
    "getcwd",
    "getdents64",
    "getpid",
    "getppid",
    "gettid",
    "madvise",
    "mmap",
    "mprotect",
    "munmap",
    "nanosleep",
    "newfstatat",
    "openat",
    "prctl",
    "read",
    "readlinkat",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_getaffinity",
    "sched_yield",
    "setgid",
    "setgroups",
    "setuid",
    "sigaltstack",
    "tgkill",
    "write",
];

/// crun installs the filter last and execs: it closes descriptors and looks the program up.
const CRUN: &[&str] = &[
    "capget",
    "capset",
    "close",
    "close_range",
    "execve",
    "execveat",
    "fstatfs",
    "newfstatat",
    "openat",
    "prctl",
    "write",
];

/// Every process may end, and the kernel restarts interrupted syscalls on its own.
const ALWAYS: &[&str] = &["exit", "exit_group", "restart_syscall"];

/// ENOSYS, so that glibc falls back from `clone3` to `clone` (EPERM would fail the thread).
const ENOSYS: u32 = 38;
/// EPERM, for every syscall not allowed.
const EPERM: u32 = 1;

impl Baseline {
    pub fn syscalls(self) -> &'static [&'static str] {
        match self {
            Baseline::Runc => RUNC,
            Baseline::Crun => CRUN,
            Baseline::None => &[],
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ProfileOptions {
    pub baseline: Baseline,
    /// Log what is not allowed (`SCMP_ACT_LOG`) instead of denying it.
    pub complain: bool,
}

/// The profile for `syscalls`, of the report named `source`. Every name is checked against
/// its ABI's table.
pub fn profile(
    source: &str,
    syscalls: &Syscalls,
    options: ProfileOptions,
) -> Result<Value, SeccompError> {
    for (abi, names) in [(Abi::X86_64, &syscalls.x86_64), (Abi::X86, &syscalls.x86)] {
        if let Some(bad) = names.iter().find(|n| !abi.knows(n)) {
            return Err(SeccompError::UnknownSyscall(
                source.to_owned(),
                bad.clone(),
                abi.seccomp_arch(),
            ));
        }
    }
    let mut allowed: BTreeSet<&str> = syscalls
        .x86_64
        .iter()
        .chain(&syscalls.x86)
        .map(String::as_str)
        .collect();
    allowed.extend(options.baseline.syscalls());
    allowed.extend(ALWAYS);
    let mut architectures = vec![Abi::X86_64.seccomp_arch()];
    if !syscalls.x86.is_empty() {
        architectures.push(Abi::X86.seccomp_arch());
    }
    let mut rules = vec![json!({ "names": allowed, "action": "SCMP_ACT_ALLOW" })];
    if !allowed.contains("clone3") {
        rules.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    }
    Ok(json!({
        "defaultAction": if options.complain { "SCMP_ACT_LOG" } else { "SCMP_ACT_ERRNO" },
        "defaultErrnoRet": EPERM,
        "architectures": architectures,
        "syscalls": rules,
    }))
}

/// The profile for what the report `source` saw. A report that saw only part of its
/// containers' lives, or could not record every syscall, is refused unless `allow_partial`.
pub fn profile_of_report(
    source: &str,
    report: &AccessReport,
    options: ProfileOptions,
    allow_partial: bool,
) -> Result<Value, SeccompError> {
    let Some(syscalls) = &report.syscalls else {
        return Err(SeccompError::NoSyscalls(
            source.to_owned(),
            report.sensor.kind.clone(),
        ));
    };
    if !allow_partial {
        if !report.coverage.partial.is_empty() {
            let reasons: Vec<String> = report
                .coverage
                .partial
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            return Err(SeccompError::Partial(source.to_owned(), reasons.join(", ")));
        }
        if syscalls.unrecorded > 0 {
            return Err(SeccompError::Unrecorded(
                source.to_owned(),
                syscalls.unrecorded,
            ));
        }
    }
    profile(source, syscalls, options)
}

/// Writes a profile atomically.
pub fn write_profile(path: &Path, profile: &Value) -> Result<(), SeccompError> {
    let mut text = serde_json::to_vec_pretty(profile).expect("a profile serialises");
    text.push(b'\n');
    fsutil::write_atomic(path, &text, fsutil::Access::Umask)
        .map_err(|e| SeccompError::Write(path.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn baselines_name_real_syscalls() {
        for name in RUNC.iter().chain(CRUN).chain(ALWAYS) {
            assert!(Abi::X86_64.knows(name), "{name}");
        }
    }

    #[test]
    fn allows_what_was_seen_and_denies_the_rest() {
        let seen = Syscalls {
            x86_64: names(&["read", "write"]),
            ..Default::default()
        };
        let p = profile("r.json", &seen, ProfileOptions::default()).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(p["architectures"], json!(["SCMP_ARCH_X86_64"]));
        assert!(p.get("archMap").is_none());
        let allowed = p["syscalls"][0]["names"].as_array().unwrap();
        for n in ["read", "write", "exit_group", "restart_syscall", "fstatfs"] {
            assert!(allowed.contains(&json!(n)), "{n} is not allowed");
        }
        assert_eq!(
            p["syscalls"][1],
            json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
        );
        let complain = ProfileOptions {
            complain: true,
            baseline: Baseline::None,
        };
        let p = profile("r.json", &seen, complain).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_LOG");
        assert!(
            !p["syscalls"][0]["names"]
                .as_array()
                .unwrap()
                .contains(&json!("fstatfs"))
        );
    }

    #[test]
    fn observed_clone3_is_allowed_and_x86_adds_its_architecture() {
        let seen = Syscalls {
            x86_64: names(&["clone3"]),
            x86: names(&["socketcall"]),
            unrecorded: 0,
        };
        let p = profile("r.json", &seen, ProfileOptions::default()).unwrap();
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 1);
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
    }

    #[test]
    fn names_outside_the_table_are_refused() {
        for bad in ["#511", "no_such_call", ""] {
            let seen = Syscalls {
                x86_64: names(&["read", bad]),
                ..Default::default()
            };
            let e = profile("r.json", &seen, ProfileOptions::default()).unwrap_err();
            assert!(matches!(e, SeccompError::UnknownSyscall(..)), "{e}");
        }
        // A name of the other table only.
        let seen = Syscalls {
            x86_64: names(&["socketcall"]),
            ..Default::default()
        };
        assert!(profile("r.json", &seen, ProfileOptions::default()).is_err());
    }
}
