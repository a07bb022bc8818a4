use std::path::PathBuf;

/// Errors reading a VM bundle or rewriting its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or listed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A key = "value" file (`.vmx`, `.vmsd`) breaks the syntax at a line.
    #[error("{file}: line {line}: {what}")]
    Syntax {
        /// The file (name as given).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What was expected.
        what: String,
    },
    /// An XML configuration does not parse.
    #[error("{file}: XML at line {line}, column {column}: {what}")]
    Xml {
        /// The file.
        file: String,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The parser's message.
        what: String,
    },
    /// A configuration parses but lacks or breaks something required.
    #[error("{file}: {what}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong, and where (line, byte offset, element).
        what: String,
    },
    /// A file or a count exceeds a named limit.
    #[error("{file}: {what} is {value}, the limit is {limit}")]
    Limit {
        /// The file.
        file: String,
        /// What was counted.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// A disk path from the configuration points outside the bundle folder.
    #[error("{config}: disk {config_ref} path {path:?} leads outside the bundle folder {root}")]
    Escape {
        /// The configuration file.
        config: String,
        /// The device reference (`scsi0:0`, `vda`...).
        config_ref: String,
        /// The path as written.
        path: String,
        /// The bundle folder.
        root: PathBuf,
    },
    /// A disk the configuration names does not exist.
    #[error("{config}: disk {config_ref}: {path} does not exist")]
    DiskMissing {
        /// The configuration file.
        config: String,
        /// The device reference.
        config_ref: String,
        /// The resolved path.
        path: PathBuf,
    },
    /// No VM configuration was recognised at the path.
    #[error("{path}: no VM configuration found ({why})")]
    NotABundle {
        /// The path given.
        path: PathBuf,
        /// What was looked for.
        why: String,
    },
    /// A running VM has a disk that is not a delta, so there is no frozen point to read.
    #[error("{config_ref}: {path}: the VM is running and this disk has no snapshot delta above it: take a hypervisor snapshot first (a pre hook) or back it up powered off")]
    NoFrozenPoint {
        /// The device reference.
        config_ref: String,
        /// The live disk.
        path: PathBuf,
    },
    /// A disk image could not be opened (for its identity or chain).
    #[error("disk {config_ref}: {source}")]
    Disk {
        /// The device reference.
        config_ref: String,
        /// The image reader's error.
        #[source]
        source: cairn_vdisk::Error,
    },
    /// A tar archive (an OVA) is damaged or hostile: a header, a size or a name at
    /// `offset` breaks the format or a limit.
    #[error("{file}: archive member {member:?} at offset {offset}: {what}")]
    Archive {
        /// The archive.
        file: String,
        /// The member, when its header was read far enough to name it.
        member: Option<String>,
        /// Offset of the header (or data) in the archive.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The operation is not possible for this kind of configuration.
    #[error("{0}")]
    Unsupported(String),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn invalid(file: &str, what: impl Into<String>) -> Error {
        Error::Invalid {
            file: file.to_string(),
            what: what.into(),
        }
    }
}
