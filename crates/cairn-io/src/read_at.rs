use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Result};

/// Positional reads through a shared reference.
///
/// Implementations must be safe to call from many threads at once. A read never moves a
/// cursor; `read_at` may return fewer bytes than asked only at the end of the source.
pub trait ReadAt: Send + Sync {
    /// Size of the source in bytes.
    fn size(&self) -> u64;

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at or past
    /// the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize>;

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with [`Error::OutOfBounds`].
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let len = buf.len() as u64;
        let end = offset.checked_add(len);
        if end.is_none_or(|e| e > self.size()) {
            return Err(Error::OutOfBounds {
                offset,
                len,
                size: self.size(),
            });
        }
        let mut done = 0usize;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(Error::OutOfBounds {
                    offset,
                    len,
                    size: self.size(),
                });
            }
            done += n;
        }
        Ok(())
    }

    /// Fills `buf` from `offset`; bytes past the end of the source read as zeros. This is how
    /// a child layer reads a parent smaller than itself.
    fn read_zero_padded_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` into a new vector. The caller must have checked `len`
    /// against a limit: this allocates `len` bytes.
    fn read_vec_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.read_exact_at(&mut v, offset)?;
        Ok(v)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        (**self).read_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        (**self).read_at(buf, offset)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        (**self).read_at(buf, offset)
    }
}

fn read_from_bytes(data: &[u8], buf: &mut [u8], offset: u64) -> usize {
    let Ok(start) = usize::try_from(offset) else {
        return 0;
    };
    if start >= data.len() {
        return 0;
    }
    let n = buf.len().min(data.len() - start);
    buf[..n].copy_from_slice(&data[start..start + n]);
    n
}

impl ReadAt for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        Ok(read_from_bytes(self, buf, offset))
    }
}

impl ReadAt for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        Ok(read_from_bytes(self, buf, offset))
    }
}

impl<const N: usize> ReadAt for [u8; N] {
    fn size(&self) -> u64 {
        N as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        Ok(read_from_bytes(self, buf, offset))
    }
}

impl ReadAt for bytes::Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        Ok(read_from_bytes(self, buf, offset))
    }
}

/// A file read with `pread` (Unix) or `seek_read` (Windows); the size is taken once at open,
/// since a source image must not change under a backup.
#[derive(Debug)]
pub struct FileReader {
    file: File,
    size: u64,
    path: PathBuf,
}

impl FileReader {
    /// Opens `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        let file = File::open(path)?;
        Self::from_file(file, path)
    }

    /// Wraps an open file; `path` is kept for error messages.
    pub fn from_file(file: File, path: impl AsRef<Path>) -> std::io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(FileReader {
            file,
            size,
            path: path.as_ref().to_path_buf(),
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl ReadAt for FileReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let max = usize::try_from(self.size - offset).unwrap_or(usize::MAX);
        let want = buf.len().min(max);
        let buf = &mut buf[..want];
        loop {
            #[cfg(unix)]
            let r = std::os::unix::fs::FileExt::read_at(&self.file, buf, offset);
            #[cfg(windows)]
            let r = std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset);
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(offset, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadAt;

    #[test]
    fn zero_padded_reads_fill_past_the_end_with_zeros() {
        let src = vec![7u8; 10];
        let mut buf = [0xffu8; 8];
        src.read_zero_padded_at(&mut buf, 6).unwrap();
        assert_eq!(buf, [7, 7, 7, 7, 0, 0, 0, 0]);
        let mut buf = [0xffu8; 4];
        src.read_zero_padded_at(&mut buf, 100).unwrap();
        assert_eq!(buf, [0; 4]);
        // An exact read is not padded and an out-of-bounds exact read is an error.
        assert!(src.read_exact_at(&mut [0u8; 8], 6).is_err());
    }
}
