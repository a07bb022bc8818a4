use std::path::PathBuf;

/// Errors of backup and restore jobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] cairn_repo::Error),
    /// Reading a source disk failed.
    #[error("disk {disk:?} at offset {offset}: {source}")]
    Read {
        /// Disk label.
        disk: String,
        /// Offset of the failed read.
        offset: u64,
        /// The reader's error.
        #[source]
        source: cairn_io::Error,
    },
    /// Writing a restore target failed.
    #[error("{path}: {source}")]
    Write {
        /// Target path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A restore point or disk that does not exist.
    #[error("restore point {snapshot} has no disk {disk_index} ({disks} disks)")]
    NoSuchDisk {
        /// Restore point.
        snapshot: cairn_repo::SnapshotId,
        /// Disk asked for.
        disk_index: usize,
        /// Disks it has.
        disks: usize,
    },
    /// A source or option the job cannot use.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A source image could not be opened or mapped.
    #[error(transparent)]
    Source(#[from] cairn_vdisk::Error),
    /// A VM bundle (configuration files and their disks) could not be read or rewritten.
    #[error(transparent)]
    Bundle(#[from] cairn_bundle::Error),
    /// The job was cancelled by the progress callback.
    #[error("cancelled")]
    Cancelled,
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
