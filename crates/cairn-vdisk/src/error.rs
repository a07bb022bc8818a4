use std::path::PathBuf;

/// Boxed error of a format crate, kept as the source of [`Error::Format`].
pub type FormatError = Box<dyn std::error::Error + Send + Sync>;

/// Errors opening, reading or converting a virtual disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A format reader or writer refused the file.
    #[error("{path}: {format}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The format it was read as.
        format: &'static str,
        /// The format crate's error (it names the structure and offset).
        #[source]
        source: FormatError,
    },
    /// No file at any of the parent hints exists.
    #[error("{child}: parent not found (hints {hints:?}, searched {searched:?})")]
    ParentNotFound {
        /// The child image.
        child: PathBuf,
        /// The hints the child records.
        hints: Vec<String>,
        /// The paths tried.
        searched: Vec<PathBuf>,
    },
    /// The parent found is not the one the child was made from.
    #[error(
        "{child}: parent {parent} does not match: child expects {expected}, parent has {found}"
    )]
    ParentMismatch {
        /// The child image.
        child: PathBuf,
        /// The parent image.
        parent: PathBuf,
        /// What the child records.
        expected: String,
        /// What the parent has.
        found: String,
    },
    /// The chain is deeper than the limit.
    #[error("{path}: parent chain deeper than {limit} layers")]
    ChainTooDeep {
        /// The layer at which the limit was reached.
        path: PathBuf,
        /// The limit.
        limit: u32,
    },
    /// A layer names an ancestor of itself (or itself) as parent.
    #[error("{path}: parent chain loops back to this file")]
    ChainCycle {
        /// The file seen twice.
        path: PathBuf,
    },
    /// A read of the virtual disk failed.
    #[error("reading the virtual disk: {0}")]
    Read(#[from] cairn_io::Error),
    /// A conversion target or option is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
