//! What an executable needs before its first instruction: the `#!` interpreter of a script,
//! or the ELF interpreter and the shared libraries of a binary. Files are hostile input: every
//! read is bounds-checked and a malformed file yields nothing rather than an error.

/// Bytes of a `#!` line the kernel looks at (`BINPRM_BUF_SIZE`).
pub const SHEBANG_MAX: usize = 256;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// The dynamic-linking needs of an ELF file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ElfDeps {
    /// `PT_INTERP`: the dynamic loader the kernel maps.
    pub interpreter: Option<Vec<u8>>,
    /// `DT_NEEDED` sonames, in order.
    pub needed: Vec<Vec<u8>>,
    /// `DT_RUNPATH` entries (`:`-separated in the file).
    pub runpath: Vec<Vec<u8>>,
    /// `DT_RPATH` entries.
    pub rpath: Vec<Vec<u8>>,
}

/// The interpreter named by a `#!` line, if `head` starts with one.
pub fn shebang(head: &[u8]) -> Option<Vec<u8>> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.len().min(SHEBANG_MAX - 2)];
    let line = line.split(|&b| b == b'\n').next()?;
    let interp = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|tok| !tok.is_empty())?;
    Some(interp.to_vec())
}

#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    big_endian: bool,
    is64: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        let at = usize::try_from(at).ok()?;
        self.data.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(&self, at: u64) -> Option<u16> {
        let b = self.bytes::<2>(at)?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: u64) -> Option<u32> {
        let b = self.bytes::<4>(at)?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&self, at: u64) -> Option<u64> {
        let b = self.bytes::<8>(at)?;
        Some(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, at: u64) -> Option<u64> {
        if self.is64 {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }

    fn cstr(&self, at: u64) -> Option<&[u8]> {
        let rest = self.data.get(usize::try_from(at).ok()?..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..end])
    }
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Parses the program headers and the dynamic section of an ELF file. None when `data` is
/// not ELF or is malformed.
pub fn elf_deps(data: &[u8]) -> Option<ElfDeps> {
    if data.get(..4)? != b"\x7fELF" {
        return None;
    }
    let r = Reader {
        data,
        is64: match data.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        },
        big_endian: match data.get(5)? {
            1 => false,
            2 => true,
            _ => return None,
        },
    };
    let segments = segments(&r)?;
    let mut deps = ElfDeps::default();
    for seg in &segments {
        if seg.kind == PT_INTERP {
            deps.interpreter = Some(r.cstr(seg.offset)?.to_vec());
        }
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Some(deps);
    };
    let entry_size = if r.is64 { 16 } else { 8 };
    let mut entries = Vec::new();
    let mut strtab_vaddr = None;
    for i in 0..dynamic.filesz / entry_size {
        let at = dynamic.offset.checked_add(i * entry_size)?;
        let tag = r.word(at)?;
        let val = r.word(at + entry_size / 2)?;
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab_vaddr = Some(val),
            DT_NEEDED | DT_RPATH | DT_RUNPATH => entries.push((tag, val)),
            _ => {}
        }
    }
    let strtab = file_offset(&segments, strtab_vaddr?)?;
    for (tag, val) in entries {
        let s = r.cstr(strtab.checked_add(val)?)?.to_vec();
        match tag {
            DT_NEEDED => deps.needed.push(s),
            DT_RPATH => deps.rpath.extend(split_path_list(&s)),
            _ => deps.runpath.extend(split_path_list(&s)),
        }
    }
    Some(deps)
}

fn split_path_list(list: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    list.split(|&b| b == b':')
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
}

fn segments(r: &Reader<'_>) -> Option<Vec<Segment>> {
    let (phoff, phentsize, phnum) = if r.is64 {
        (r.u64(0x20)?, r.u16(0x36)?, r.u16(0x38)?)
    } else {
        (u64::from(r.u32(0x1c)?), r.u16(0x2a)?, r.u16(0x2c)?)
    };
    let mut out = Vec::with_capacity(usize::from(phnum));
    for i in 0..u64::from(phnum) {
        let at = phoff.checked_add(i * u64::from(phentsize))?;
        let seg = if r.is64 {
            Segment {
                kind: r.u32(at)?,
                offset: r.u64(at + 8)?,
                vaddr: r.u64(at + 16)?,
                filesz: r.u64(at + 32)?,
            }
        } else {
            Segment {
                kind: r.u32(at)?,
                offset: u64::from(r.u32(at + 4)?),
                vaddr: u64::from(r.u32(at + 8)?),
                filesz: u64::from(r.u32(at + 16)?),
            }
        };
        out.push(seg);
    }
    Some(out)
}

/// Maps a virtual address to a file offset through the `PT_LOAD` segments.
fn file_offset(segments: &[Segment], vaddr: u64) -> Option<u64> {
    segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
        .and_then(|s| s.offset.checked_add(vaddr - s.vaddr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_takes_the_interpreter_only() {
        assert_eq!(
            shebang(b"#!/usr/bin/env python3\nprint()"),
            Some(b"/usr/bin/env".to_vec())
        );
        assert_eq!(shebang(b"#! /bin/sh -e\n"), Some(b"/bin/sh".to_vec()));
        assert_eq!(shebang(b"#!\n"), None);
        assert_eq!(shebang(b"\x7fELF"), None);
    }

    #[test]
    fn parses_the_test_binary_itself() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let deps = elf_deps(&exe).expect("the test binary is ELF");
        let interp = deps.interpreter.expect("dynamically linked");
        assert!(
            interp.starts_with(b"/lib"),
            "{}",
            String::from_utf8_lossy(&interp)
        );
        assert!(deps.needed.iter().any(|n| n.starts_with(b"libc.so")));
    }

    #[test]
    fn garbage_is_not_elf() {
        assert_eq!(elf_deps(b"\x7fELF\x02\x01"), None);
        let mut truncated = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        truncated.truncate(100);
        assert!(elf_deps(&truncated).is_none_or(|d| d.needed.is_empty()));
    }
}
