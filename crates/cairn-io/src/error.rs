use std::io;

/// Errors of the I/O spine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying reader or file failed.
    #[error("I/O error at offset {offset}: {source}")]
    Io {
        /// Byte offset of the failed read.
        offset: u64,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A read asked for bytes past the end of the source.
    #[error("read of {len} bytes at offset {offset} runs past the end ({size} bytes)")]
    OutOfBounds {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Size of the source.
        size: u64,
    },
    /// A map's runs overlap, leave a gap, or run past its size.
    #[error("allocation map: {0}")]
    BadMap(String),
}

impl Error {
    /// Wraps an `io::Error` with the offset of the read that failed.
    pub fn io(offset: u64, source: io::Error) -> Self {
        Error::Io { offset, source }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { source, .. } => source,
            Error::OutOfBounds { .. } => io::Error::new(io::ErrorKind::UnexpectedEof, e),
            other => io::Error::other(other),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
