use crate::{Error, ReadAt, Result};

/// A bounds-checked view of `len` bytes of a source starting at `start`.
///
/// Reads past the view's end stop at the end; the view itself is checked against the
/// source's size when it is made.
#[derive(Debug, Clone)]
pub struct Slice<R> {
    inner: R,
    start: u64,
    len: u64,
}

impl<R: ReadAt> Slice<R> {
    /// Makes a view of `inner[start..start + len]`; fails when that range is not inside the
    /// source.
    pub fn new(inner: R, start: u64, len: u64) -> Result<Self> {
        let end = start.checked_add(len);
        if end.is_none_or(|e| e > inner.size()) {
            return Err(Error::OutOfBounds {
                offset: start,
                len,
                size: inner.size(),
            });
        }
        Ok(Slice { inner, start, len })
    }

    /// Offset of the view in its source.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The source.
    pub fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: ReadAt> ReadAt for Slice<R> {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let max = usize::try_from(self.len - offset).unwrap_or(usize::MAX);
        let want = buf.len().min(max);
        self.inner.read_at(&mut buf[..want], self.start + offset)
    }
}
