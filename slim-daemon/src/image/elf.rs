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

/// Random access to the bytes of a file: exactly `len` bytes at `offset`, or None.
pub trait ReadAt {
    fn read_at(&self, offset: u64, len: usize) -> Option<Vec<u8>>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let at = usize::try_from(offset).ok()?;
        self.get(at..at.checked_add(len)?).map(<[u8]>::to_vec)
    }
}

/// Program headers read at most (real files have a dozen).
const MAX_SEGMENTS: u64 = 4096;
/// Bytes of a dynamic section read at most (real ones hold a few hundred bytes).
const MAX_DYNAMIC: u64 = 1 << 20;
/// `DT_NEEDED`, `DT_RPATH` and `DT_RUNPATH` entries kept at most.
const MAX_NAMED: usize = 1024;
/// The longest string read from a file (`PATH_MAX`).
const MAX_STRING: usize = 4096;

#[derive(Clone, Copy)]
struct Reader<'a, S: ?Sized> {
    src: &'a S,
    big_endian: bool,
    is64: bool,
}

impl<S: ReadAt + ?Sized> Reader<'_, S> {
    fn bytes<const N: usize>(&self, at: u64) -> Option<[u8; N]> {
        self.src.read_at(at, N)?.try_into().ok()
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

    /// A word of a table read into memory: 8 bytes in ELF64, 4 in ELF32.
    fn word_in(&self, table: &[u8], at: usize) -> Option<u64> {
        if self.is64 {
            let b: [u8; 8] = table.get(at..at + 8)?.try_into().ok()?;
            Some(if self.big_endian {
                u64::from_be_bytes(b)
            } else {
                u64::from_le_bytes(b)
            })
        } else {
            let b: [u8; 4] = table.get(at..at + 4)?.try_into().ok()?;
            Some(u64::from(if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }))
        }
    }

    /// A NUL-terminated string at `at`, of at most `MAX_STRING` bytes.
    fn cstr(&self, at: u64, room: u64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = at;
        let end = at.checked_add(room.min(MAX_STRING as u64 + 1))?;
        while pos < end {
            let chunk = (end - pos).min(256) as usize;
            // Near the end of the file a chunk may not fit: read what there is, a byte at a time.
            let bytes = self
                .src
                .read_at(pos, chunk)
                .or_else(|| self.src.read_at(pos, 1))?;
            if let Some(nul) = bytes.iter().position(|&b| b == 0) {
                out.extend_from_slice(&bytes[..nul]);
                return Some(out);
            }
            out.extend_from_slice(&bytes);
            pos += bytes.len() as u64;
        }
        None
    }
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

fn reader<S: ReadAt + ?Sized>(src: &S) -> Option<Reader<'_, S>> {
    let ident = src.read_at(0, 6)?;
    if ident[..4] != *b"\x7fELF" {
        return None;
    }
    Some(Reader {
        src,
        is64: match ident[4] {
            1 => false,
            2 => true,
            _ => return None,
        },
        big_endian: match ident[5] {
            1 => false,
            2 => true,
            _ => return None,
        },
    })
}

/// `PT_INTERP` alone: the dynamic loader the kernel maps for an ELF executable. Reads only
/// the header, the program headers and the interpreter's name.
pub fn interpreter<S: ReadAt + ?Sized>(src: &S) -> Option<Vec<u8>> {
    let r = reader(src)?;
    let seg = segments(&r)?.into_iter().find(|s| s.kind == PT_INTERP)?;
    r.cstr(seg.offset, seg.filesz)
}

/// Parses the program headers and the dynamic section of an ELF file. None when it is not
/// ELF or is malformed. Reads are bounded whatever the file claims.
pub fn elf_deps<S: ReadAt + ?Sized>(src: &S) -> Option<ElfDeps> {
    let r = reader(src)?;
    let segments = segments(&r)?;
    let mut deps = ElfDeps::default();
    if let Some(seg) = segments.iter().find(|s| s.kind == PT_INTERP) {
        deps.interpreter = Some(r.cstr(seg.offset, seg.filesz)?);
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Some(deps);
    };
    let entry_size: usize = if r.is64 { 16 } else { 8 };
    let table_len = dynamic.filesz.min(MAX_DYNAMIC) as usize / entry_size * entry_size;
    let table = src.read_at(dynamic.offset, table_len)?;
    let mut entries = Vec::new();
    let mut strtab_vaddr = None;
    for at in (0..table.len()).step_by(entry_size) {
        let tag = r.word_in(&table, at)?;
        let val = r.word_in(&table, at + entry_size / 2)?;
        match tag {
            DT_NULL => break,
            DT_STRTAB => strtab_vaddr = Some(val),
            DT_NEEDED | DT_RPATH | DT_RUNPATH if entries.len() < MAX_NAMED => {
                entries.push((tag, val))
            }
            _ => {}
        }
    }
    let strtab = file_offset(&segments, strtab_vaddr?)?;
    for (tag, val) in entries {
        let s = r.cstr(strtab.checked_add(val)?, MAX_STRING as u64 + 1)?;
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

fn segments<S: ReadAt + ?Sized>(r: &Reader<'_, S>) -> Option<Vec<Segment>> {
    let (phoff, phentsize, phnum) = if r.is64 {
        (r.u64(0x20)?, r.u16(0x36)?, r.u16(0x38)?)
    } else {
        (u64::from(r.u32(0x1c)?), r.u16(0x2a)?, r.u16(0x2c)?)
    };
    let phnum = u64::from(phnum).min(MAX_SEGMENTS);
    let mut out = Vec::with_capacity(phnum as usize);
    for i in 0..phnum {
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
        let deps = elf_deps(exe.as_slice()).expect("the test binary is ELF");
        assert_eq!(interpreter(exe.as_slice()), deps.interpreter);
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
        assert_eq!(elf_deps(b"\x7fELF\x02\x01".as_slice()), None);
        let mut truncated = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        truncated.truncate(100);
        assert!(elf_deps(truncated.as_slice()).is_none_or(|d| d.needed.is_empty()));
    }

    /// A 64-bit little-endian ELF whose dynamic section is `entries` (tag, value) and whose
    /// one `PT_LOAD` maps the whole file at address 0.
    fn elf_with_dynamic(entries: &[(u64, u64)], strtab: &[u8]) -> Vec<u8> {
        let phoff = 64u64;
        let dyn_off = phoff + 2 * 56;
        let str_off = dyn_off + 16 * (entries.len() as u64 + 2);
        let mut f = vec![0u8; str_off as usize];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        let total = str_off + strtab.len() as u64;
        let mut ph = |i: usize, kind: u32, off: u64, size: u64| {
            let at = phoff as usize + i * 56;
            f[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            f[at + 16..at + 24].copy_from_slice(&off.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        };
        ph(0, PT_LOAD, 0, total);
        ph(1, PT_DYNAMIC, dyn_off, 16 * (entries.len() as u64 + 2));
        let mut at = dyn_off as usize;
        for (tag, val) in [(DT_STRTAB, str_off)].iter().chain(entries) {
            f[at..at + 8].copy_from_slice(&tag.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&val.to_le_bytes());
            at += 16;
        }
        f.extend_from_slice(strtab);
        f
    }

    #[test]
    fn needed_entries_are_bounded_however_many_a_file_lists() {
        // 200,000 DT_NEEDED entries naming one 4 KB string: unbounded, 800 MB of copies.
        let mut name = vec![b'x'; 4000];
        name.push(0);
        let entries = vec![(DT_NEEDED, 0); 200_000];
        let file = elf_with_dynamic(&entries, &name);
        let deps = elf_deps(file.as_slice()).expect("parses");
        assert!(deps.needed.len() <= MAX_NAMED, "{}", deps.needed.len());
        assert_eq!(deps.needed[0].len(), 4000);
        // A string that never ends is refused, not read to the end of the file.
        let endless = elf_with_dynamic(&[(DT_NEEDED, 0)], &vec![b'y'; 100_000]);
        assert_eq!(elf_deps(endless.as_slice()), None);
    }
}
