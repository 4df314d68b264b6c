//! Struct member offsets from the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust eBPF has no CO-RE relocations, so the eBPF programs take the offsets of the kernel
//! struct members they read as globals, set from here at load time.
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {0}: {1}")]
    Read(&'static str, std::io::Error),
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("struct {0} is not in the kernel's BTF")]
    NoStruct(String),
    #[error("{0}.{1} is not in the kernel's BTF")]
    NoMember(String, String),
}

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    /// Size, or the referenced type for typedef/const/volatile/...
    size_or_type: u32,
    members: Vec<Member>,
}

/// The parsed type section of a BTF blob.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(d: &[u8], at: usize) -> Result<u32, BtfError> {
    d.get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    pub fn from_kernel() -> Result<Self, BtfError> {
        let data = std::fs::read(VMLINUX).map_err(|e| BtfError::Read(VMLINUX, e))?;
        Self::parse(&data)
    }

    pub fn parse(d: &[u8]) -> Result<Self, BtfError> {
        let magic = d.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err(BtfError::Malformed(
                "bad magic (big-endian BTF is not supported)",
            ));
        }
        let hdr_len = u32_at(d, 4)? as usize;
        let (type_off, type_len) = (u32_at(d, 8)? as usize, u32_at(d, 12)? as usize);
        let (str_off, str_len) = (u32_at(d, 16)? as usize, u32_at(d, 20)? as usize);
        let section = |off: usize, len: usize| {
            d.get(hdr_len + off..hdr_len + off + len)
                .ok_or(BtfError::Malformed("section out of bounds"))
        };
        let tb = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < tb.len() {
            let name_off = u32_at(tb, at)?;
            let info = u32_at(tb, at + 4)?;
            let size_or_type = u32_at(tb, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kflag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_ARRAY => at += 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let raw = u32_at(tb, m + 8)?;
                        members.push(Member {
                            name_off: u32_at(tb, m)?,
                            type_id: u32_at(tb, m + 4)?,
                            bit_offset: if kflag { raw & 0xff_ffff } else { raw },
                        });
                    }
                    at += vlen * 12;
                }
                KIND_ENUM | KIND_FUNC_PROTO => at += vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => at += vlen * 12,
                _ => {}
            }
            types.push(Type {
                name_off,
                kind,
                size_or_type,
                members,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && !t.members.is_empty() {
                let name = btf.name(t.name_off).to_owned();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(0);
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Strips typedef, const, volatile, restrict and type tags.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of `member` in the struct or union `id`, looking into anonymous members.
    fn find(&self, id: u32, member: &str) -> Option<u32> {
        let t = self.resolve(id)?;
        for m in &t.members {
            if m.name_off == 0 {
                if let Some(inner) = self.find(m.type_id, member) {
                    return Some(m.bit_offset / 8 + inner);
                }
            } else if self.name(m.name_off) == member {
                return Some(m.bit_offset / 8);
            }
        }
        None
    }

    /// Byte offset of `member` in `struct name`; `member` may be a dotted path (`d_name.name`).
    pub fn offset(&self, name: &str, member: &str) -> Result<u64, BtfError> {
        let mut id = *self
            .structs
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        let mut total = 0u64;
        for part in member.split('.') {
            let off = self
                .find(id, part)
                .ok_or_else(|| BtfError::NoMember(name.to_owned(), member.to_owned()))?;
            total += u64::from(off);
            id = self.member_type(id, part).unwrap_or(0);
        }
        Ok(total)
    }

    /// The type id of a (possibly anonymous-nested) member.
    fn member_type(&self, id: u32, member: &str) -> Option<u32> {
        let t = self.resolve(id)?;
        for m in &t.members {
            if m.name_off == 0 {
                if let Some(inner) = self.member_type(m.type_id, member) {
                    return Some(inner);
                }
            } else if self.name(m.name_off) == member {
                return Some(m.type_id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offsets_of_the_running_kernel() {
        let Ok(btf) = Btf::from_kernel() else {
            eprintln!("skipped: {VMLINUX} is not readable here");
            return;
        };
        assert_eq!(btf.offset("path", "mnt").unwrap(), 0);
        assert_eq!(btf.offset("path", "dentry").unwrap(), 8);
        let name = btf.offset("dentry", "d_name").unwrap();
        assert_eq!(
            btf.offset("dentry", "d_name.name").unwrap(),
            name + btf.offset("qstr", "name").unwrap()
        );
        assert!(matches!(
            btf.offset("dentry", "no_such_member"),
            Err(BtfError::NoMember(..))
        ));
    }
}
