//! Seccomp profiles from the syscalls a workload made: the kernel's bitmaps named by ABI, and
//! the OCI/Docker profile that allows them.
mod names;
mod profile;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use slim_common::SYSCALL_WORDS;

pub use profile::{
    Baseline, ProfileOptions, SeccompError, profile, profile_of_report, write_profile,
};

/// A syscall table of the x86_64 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    X86_64,
    /// 32-bit programs (the compat table).
    X86,
}

impl Abi {
    fn names(self) -> &'static [&'static str; 512] {
        match self {
            Abi::X86_64 => &names::X86_64,
            Abi::X86 => &names::X86,
        }
    }

    /// The syscall's name, when the table has that number.
    pub fn name(self, nr: usize) -> Option<&'static str> {
        self.names().get(nr).copied().filter(|n| !n.is_empty())
    }

    pub fn knows(self, name: &str) -> bool {
        !name.is_empty() && self.names().contains(&name)
    }

    /// The architecture as seccomp profiles name it.
    pub fn seccomp_arch(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X86 => "SCMP_ARCH_X86",
        }
    }
}

/// Syscall numbers seen, one bit each, per ABI (as the kernel keeps them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallBits {
    pub native: [u64; SYSCALL_WORDS],
    pub compat: [u64; SYSCALL_WORDS],
}

impl SyscallBits {
    pub fn add(&mut self, native: &[u64; SYSCALL_WORDS], compat: &[u64; SYSCALL_WORDS]) {
        for (mine, theirs) in self.native.iter_mut().zip(native) {
            *mine |= theirs;
        }
        for (mine, theirs) in self.compat.iter_mut().zip(compat) {
            *mine |= theirs;
        }
    }

    /// The syscalls by name. A number without a name in slimd's table is kept as `#<nr>`,
    /// which a profile refuses.
    pub fn named(&self, unrecorded: u64) -> Syscalls {
        let names = |abi: Abi, words: &[u64; SYSCALL_WORDS]| -> BTreeSet<String> {
            (0..SYSCALL_WORDS * 64)
                .filter(|nr| words[nr / 64] & (1 << (nr % 64)) != 0)
                .map(|nr| abi.name(nr).map_or_else(|| format!("#{nr}"), str::to_owned))
                .collect()
        };
        Syscalls {
            x86_64: names(Abi::X86_64, &self.native),
            x86: names(Abi::X86, &self.compat),
            unrecorded,
        }
    }
}

/// The syscalls a report's workload made, by name, per ABI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Syscalls {
    pub x86_64: BTreeSet<String>,
    /// Made by 32-bit programs.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub x86: BTreeSet<String>,
    /// Syscalls the kernel side could not record (its map was full, or the number is beyond
    /// its table, as x32 ones are): the sets may miss some.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unrecorded: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Syscalls {
    pub fn union(&mut self, other: &Syscalls) {
        self.x86_64.extend(other.x86_64.iter().cloned());
        self.x86.extend(other.x86.iter().cloned());
        self.unrecorded = self.unrecorded.saturating_add(other.unrecorded);
    }

    pub fn len(&self) -> usize {
        self.x86_64.len() + self.x86.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables agree with the uapi headers of the machine the test runs on.
    #[test]
    fn tables_match_the_kernel_headers() {
        for (abi, header) in [
            (Abi::X86_64, "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
            (Abi::X86, "/usr/include/x86_64-linux-gnu/asm/unistd_32.h"),
        ] {
            let Ok(text) = std::fs::read_to_string(header) else {
                eprintln!("skipped: {header} is not installed");
                continue;
            };
            let mut checked = 0;
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if words.next() != Some("#define") {
                    continue;
                }
                let (Some(name), Some(nr)) = (words.next(), words.next()) else {
                    continue;
                };
                let (Some(name), Ok(nr)) = (name.strip_prefix("__NR_"), nr.parse::<usize>()) else {
                    continue;
                };
                assert_eq!(abi.name(nr), Some(name), "{header}: {nr}");
                checked += 1;
            }
            assert!(checked > 300, "{header}: only {checked} syscalls");
        }
    }

    #[test]
    fn bits_are_named_by_their_own_table() {
        let mut bits = SyscallBits::default();
        let mut native = [0u64; SYSCALL_WORDS];
        let mut compat = [0u64; SYSCALL_WORDS];
        native[0] = 1 << 39; // getpid on x86_64
        compat[0] = 1 << 20; // getpid on i386
        compat[7] = 1 << 63; // 511: no such syscall
        bits.add(&native, &compat);
        let named = bits.named(0);
        assert_eq!(named.x86_64, BTreeSet::from(["getpid".to_owned()]));
        assert_eq!(
            named.x86,
            BTreeSet::from(["getpid".to_owned(), "#511".to_owned()])
        );
    }
}
