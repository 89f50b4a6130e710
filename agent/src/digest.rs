//! SHA-256 of whatever streams through, from aws-lc (the crypto library TLS and JWT already
//! use), so that every file and archive is read exactly once.

use std::io::{self, Read, Write};

use aws_lc_rs::digest::{Context, SHA256};

use dcbackup_protocol::Sha256;

/// Wraps a reader or a writer and hashes and counts the bytes that pass.
pub(crate) struct Hashing<T> {
    inner: T,
    context: Context,
    bytes: u64,
}

impl<T> Hashing<T> {
    pub(crate) fn new(inner: T) -> Self {
        Hashing {
            inner,
            context: Context::new(&SHA256),
            bytes: 0,
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.context.update(data);
        self.bytes += data.len() as u64;
    }

    /// The wrapped value, the digest and the byte count.
    pub(crate) fn finish(self) -> (T, Sha256, u64) {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(self.context.finish().as_ref());
        (self.inner, Sha256(digest), self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.update(&buf[..n]);
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The digest and size of a file.
pub(crate) fn file(path: &std::path::Path) -> io::Result<(Sha256, u64)> {
    let mut reader = Hashing::new(std::fs::File::open(path)?);
    io::copy(&mut reader, &mut io::sink())?;
    let (_, digest, size) = reader.finish();
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_passes() {
        let mut writer = Hashing::new(Vec::new());
        writer.write_all(b"abc").expect("write");
        let (out, digest, size) = writer.finish();
        assert_eq!(out, b"abc");
        assert_eq!(size, 3);
        assert_eq!(
            digest.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
