//! A bounded, streaming tar reader for hostile input: layer tars and image archives.
//!
//! Every header is checksummed, every number range-checked, and every piece of metadata held
//! in memory (names, link targets, PAX records, GNU long names) is bounded before it is read,
//! so a crafted archive costs at most a few megabytes, whatever sizes its headers claim.
//! Entry data is never buffered: the caller streams it or it is skipped by reading through,
//! so that a hashing reader underneath sees every byte.
use std::io::{self, Read};

/// The longest path or link target accepted (the kernel's `PATH_MAX`).
pub const MAX_NAME: usize = 4096;
/// The largest PAX extended header or GNU long-name record read into memory.
const MAX_META: u64 = 1 << 20;
const BLOCK: usize = 512;

/// What an entry is (the typeflag, with the metadata-only ones already applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Hardlink,
    Symlink,
    CharDevice,
    BlockDevice,
    Dir,
    Fifo,
    /// GNU sparse files: refused by the layer reader.
    Sparse,
    /// Anything else (vendor extensions): carries no file.
    Other(u8),
}

/// One entry's header, with PAX and GNU overrides applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: EntryKind,
    /// The name exactly as stored (relative, `./` and all).
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    /// Bytes of data that follow the header.
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Where the data starts, counted from the start of the stream.
    pub data_offset: u64,
    /// `SCHILY.xattr.*` PAX records whose names `keep_xattr` accepted.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

fn invalid(at: u64, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt tar at byte {at}: {what}"),
    )
}

/// Reads the entries of a tar stream one after the other.
pub struct TarReader<R> {
    inner: R,
    /// Bytes consumed from `inner`.
    pos: u64,
    /// Data (and padding) of the current entry not yet consumed.
    remaining: u64,
    padding: u64,
    done: bool,
    keep_xattr: fn(&str) -> bool,
}

/// PAX and GNU records that apply to the next real entry.
#[derive(Default)]
struct Overrides {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl<R: Read> TarReader<R> {
    /// `keep_xattr` says which extended attributes (by name, without `SCHILY.xattr.`) to keep.
    pub fn new(inner: R, keep_xattr: fn(&str) -> bool) -> Self {
        TarReader {
            inner,
            pos: 0,
            remaining: 0,
            padding: 0,
            done: false,
            keep_xattr,
        }
    }

    /// The data of the entry last returned by [`Self::next_entry`], up to its end.
    pub fn data(&mut self) -> DataReader<'_, R> {
        DataReader { tar: self }
    }

    /// Reads everything after the end-of-archive marker, so that a reader underneath sees the
    /// whole stream; `max` bounds how much.
    pub fn drain(&mut self, max: u64) -> io::Result<()> {
        self.skip_current()?;
        let n = io::copy(&mut (&mut self.inner).take(max), &mut io::sink())?;
        self.pos += n;
        Ok(())
    }

    /// The next entry that names a file, or None at the end of the archive.
    pub fn next_entry(&mut self) -> io::Result<Option<Header>> {
        crate::interrupt::check_io()?;
        self.skip_current()?;
        let mut overrides = Overrides::default();
        loop {
            if self.done {
                return Ok(None);
            }
            let at = self.pos;
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block)? {
                // A stream may end without the two zero blocks; what came before stands.
                self.done = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            check_checksum(&block, at)?;
            let typeflag = block[156];
            let size = number(&block[124..136], at, "size")?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > MAX_META {
                        return Err(invalid(at, format!("a {size}-byte metadata record")));
                    }
                    let mut meta = vec![0u8; size as usize];
                    self.read_exact_counted(&mut meta)?;
                    self.skip_bytes(pad_of(size))?;
                    match typeflag {
                        b'x' => parse_pax(&meta, at, &mut overrides, self.keep_xattr)?,
                        b'L' => overrides.path = Some(bounded_name(trim_nul(&meta), at)?),
                        b'K' => overrides.link = Some(bounded_name(trim_nul(&meta), at)?),
                        // Global PAX headers describe the archive, not a file.
                        _ => {}
                    }
                    continue;
                }
                _ => {}
            }
            let header = self.entry(&block, at, typeflag, size, overrides)?;
            self.remaining = header.size;
            self.padding = pad_of(header.size);
            return Ok(Some(header));
        }
    }

    fn entry(
        &mut self,
        block: &[u8; BLOCK],
        at: u64,
        typeflag: u8,
        size: u64,
        o: Overrides,
    ) -> io::Result<Header> {
        let ustar = &block[257..263] == b"ustar\0";
        let path = match o.path {
            Some(p) => p,
            None => {
                let name = trim_nul(&block[0..100]);
                let prefix = trim_nul(&block[345..500]);
                if ustar && !prefix.is_empty() {
                    [prefix, b"/", name].concat()
                } else {
                    name.to_vec()
                }
            }
        };
        let link = o
            .link
            .unwrap_or_else(|| trim_nul(&block[157..257]).to_vec());
        let kind = match typeflag {
            b'0' | 0 | b'7' => EntryKind::File,
            b'1' => EntryKind::Hardlink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            b'S' => EntryKind::Sparse,
            other => EntryKind::Other(other),
        };
        // Old tars mark directories with a trailing slash on a regular entry.
        let kind = if kind == EntryKind::File && path.ends_with(b"/") {
            EntryKind::Dir
        } else {
            kind
        };
        let device = |field: &[u8], what| -> io::Result<u32> {
            if !matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
                return Ok(0);
            }
            u32::try_from(number(field, at, what)?).map_err(|_| invalid(at, what))
        };
        let mtime = match o.mtime {
            Some(m) => m,
            None => i64::try_from(number(&block[136..148], at, "mtime")?)
                .map_err(|_| invalid(at, "mtime"))?,
        };
        Ok(Header {
            kind,
            path: bounded_name(&path, at)?,
            link: bounded_name(&link, at)?,
            mode: (number(&block[100..108], at, "mode")? & 0o7777) as u32,
            uid: match o.uid {
                Some(u) => u,
                None => number(&block[108..116], at, "uid")?,
            },
            gid: match o.gid {
                Some(g) => g,
                None => number(&block[116..124], at, "gid")?,
            },
            mtime,
            // Only regular files carry data; a size on anything else is padding we skip.
            size: o.size.unwrap_or(size),
            dev_major: device(&block[329..337], "devmajor")?,
            dev_minor: device(&block[337..345], "devminor")?,
            data_offset: self.pos,
            xattrs: o.xattrs,
        })
    }

    fn skip_current(&mut self) -> io::Result<()> {
        let n = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip_bytes(n)
    }

    fn skip_bytes(&mut self, n: u64) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())?;
        self.pos += copied;
        if copied != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("tar ends inside an entry at byte {}", self.pos),
            ));
        }
        Ok(())
    }

    /// A whole block, or false at a clean end of the stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK]) -> io::Result<bool> {
        let mut filled = 0;
        while filled < BLOCK {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("tar ends inside a header at byte {}", self.pos),
                    ));
                }
                Ok(n) => {
                    filled += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn read_exact_counted(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }
}

/// The data of the current entry.
pub struct DataReader<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.tar.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tar ends inside an entry's data",
            ));
        }
        self.tar.remaining -= n as u64;
        self.tar.pos += n as u64;
        Ok(n)
    }
}

fn pad_of(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

fn bounded_name(name: &[u8], at: u64) -> io::Result<Vec<u8>> {
    if name.len() > MAX_NAME {
        return Err(invalid(
            at,
            format!("a name of {} bytes (the limit is {MAX_NAME})", name.len()),
        ));
    }
    if name.contains(&0) {
        return Err(invalid(at, "a name with a NUL byte"));
    }
    Ok(name.to_vec())
}

/// The header checksum: the sum of its bytes with the checksum field read as spaces.
fn check_checksum(block: &[u8; BLOCK], at: u64) -> io::Result<()> {
    let stored = number(&block[148..156], at, "checksum")?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != sum {
        return Err(invalid(at, "header checksum mismatch"));
    }
    Ok(())
}

/// A numeric header field: octal digits (space or NUL padded), or GNU base-256.
fn number(field: &[u8], at: u64, what: &str) -> io::Result<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return Err(invalid(at, format!("negative {what}")));
        }
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| invalid(at, format!("{what} out of range")))?;
        }
        return Ok(v);
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| b != 0 && b != b' ');
    let mut v: u64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return Err(invalid(at, format!("bad {what} field")));
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or_else(|| invalid(at, format!("{what} out of range")))?;
    }
    Ok(v)
}

/// PAX records: `<len> <key>=<value>\n`, where `<len>` counts the whole record.
fn parse_pax(
    mut data: &[u8],
    at: u64,
    o: &mut Overrides,
    keep_xattr: fn(&str) -> bool,
) -> io::Result<()> {
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| invalid(at, "PAX record without a length"))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > space + 1 && l <= data.len())
            .ok_or_else(|| invalid(at, "bad PAX record length"))?;
        let record = &data[space + 1..len];
        data = &data[len..];
        let record = record
            .strip_suffix(b"\n")
            .ok_or_else(|| invalid(at, "PAX record without a newline"))?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| invalid(at, "PAX record without '='"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let numeric = |what: &str| -> io::Result<i64> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                .ok_or_else(|| invalid(at, format!("bad PAX {what}")))
        };
        let unsigned = |what: &str| -> io::Result<u64> {
            u64::try_from(numeric(what)?).map_err(|_| invalid(at, format!("negative PAX {what}")))
        };
        match key {
            b"path" => o.path = Some(bounded_name(value, at)?),
            b"linkpath" => o.link = Some(bounded_name(value, at)?),
            b"size" => o.size = Some(unsigned("size")?),
            b"uid" => o.uid = Some(unsigned("uid")?),
            b"gid" => o.gid = Some(unsigned("gid")?),
            b"mtime" => o.mtime = Some(numeric("mtime")?),
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.")
                    && let Ok(name) = std::str::from_utf8(name)
                    && keep_xattr(name)
                {
                    o.xattrs.push((name.to_owned(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        b[100..107].copy_from_slice(b"0000644");
        b[108..115].copy_from_slice(b"0000000");
        b[116..123].copy_from_slice(b"0000000");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"00000000000");
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    fn tar(entries: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, typeflag, data) in entries {
            out.extend_from_slice(&header(name, *typeflag, data.len() as u64));
            out.extend_from_slice(data);
            out.resize(out.len() + pad_of(data.len() as u64) as usize, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() != rest.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        body
    }

    #[test]
    fn reads_entries_data_and_pax_overrides() {
        let long = "d/".repeat(200) + "f";
        let records = pax(&[
            ("path", long.as_bytes()),
            ("uid", b"70000000000"),
            ("SCHILY.xattr.security.capability", b"\x01\x02"),
            ("SCHILY.xattr.user.other", b"x"),
        ]);
        let data = tar(&[
            (b"PaxHeaders/f", b'x', &records),
            (b"short", b'0', b"hello"),
            (b"dir/", b'5', b""),
        ]);
        let mut r = TarReader::new(&data[..], |n| n == "security.capability");
        let first = r.next_entry().unwrap().unwrap();
        assert_eq!(first.path, long.as_bytes());
        assert_eq!(first.uid, 70_000_000_000);
        assert_eq!(
            first.xattrs,
            vec![("security.capability".to_owned(), vec![1, 2])]
        );
        let mut content = Vec::new();
        r.data().read_to_end(&mut content).unwrap();
        assert_eq!(content, b"hello");
        assert_eq!(r.next_entry().unwrap().unwrap().kind, EntryKind::Dir);
        assert_eq!(r.next_entry().unwrap(), None);
    }

    #[test]
    fn refuses_what_would_cost_memory_or_lie() {
        let long = vec![b'a'; MAX_NAME + 1];
        let data = tar(&[(b"././@LongLink", b'L', &long)]);
        assert!(TarReader::new(&data[..], |_| false).next_entry().is_err());

        let mut huge = header(b"PaxHeaders/x", b'x', 0);
        huge[124..135].copy_from_slice(format!("{:011o}", 4u64 << 30).as_bytes());
        huge[148..156].copy_from_slice(b"        ");
        let sum: u64 = huge.iter().map(|&x| u64::from(x)).sum();
        huge[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(TarReader::new(&huge[..], |_| false).next_entry().is_err());

        let mut bad = tar(&[(b"f", b'0', b"x")]);
        bad[0] = b'g';
        assert!(TarReader::new(&bad[..], |_| false).next_entry().is_err());

        let cut = tar(&[(b"f", b'0', &[7u8; 2000])]);
        let mut r = TarReader::new(&cut[..1000], |_| false);
        r.next_entry().unwrap();
        assert!(r.next_entry().is_err());
    }
}
