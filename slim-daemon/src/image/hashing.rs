//! SHA-256 of what streams through, so that a blob is checked against its digest in the same
//! pass that reads it.
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

/// Hashes and counts what is read through it, and refuses to read more than `limit` bytes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
    /// What the limit stands for, for the error.
    what: &'static str,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, limit: u64, what: &'static str) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
            limit,
            what,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// `sha256:<hex>` of everything read, after reading the rest of the stream, and the
    /// reader underneath.
    pub fn finish(mut self) -> io::Result<(String, R)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format!("sha256:{:x}", self.hasher.finalize()), self.inner))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::interrupt::check_io()?;
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is larger than {} bytes", self.what, self.limit),
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes and counts what is written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// `sha256:<hex>` of everything written, and the writer underneath.
    pub fn finish(self) -> (String, W) {
        (format!("sha256:{:x}", self.hasher.finalize()), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies what is read from `inner` into `copy` as it passes.
pub struct TeeReader<R, W> {
    pub inner: R,
    pub copy: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}
