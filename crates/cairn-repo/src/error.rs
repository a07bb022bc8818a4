use std::io;

use crate::BlobId;

/// Errors of the repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed on an object.
    #[error("backend: {op} {name}: {source}")]
    Backend {
        /// Operation (`get`, `put`, `list`, ...).
        op: &'static str,
        /// Object name.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The object does not exist.
    #[error("object {name} not found")]
    NotFound {
        /// Object name.
        name: String,
    },
    /// `init` found an existing repository.
    #[error("a repository already exists here (object {name} present)")]
    AlreadyExists {
        /// The object found.
        name: String,
    },
    /// A file is shorter than its fixed header or trailer.
    #[error("{name}: {len} bytes, shorter than the {need} bytes of its frame")]
    Truncated {
        /// Object name.
        name: String,
        /// Bytes present.
        len: u64,
        /// Bytes needed.
        need: u64,
    },
    /// A file does not start (or end) with the magic of its type.
    #[error("{name} at offset {offset}: magic {found:02x?}, expected {expected:?}")]
    BadMagic {
        /// Object name.
        name: String,
        /// Offset of the magic.
        offset: u64,
        /// Bytes found.
        found: [u8; 8],
        /// Magic expected.
        expected: &'static str,
    },
    /// A version or flag this build does not know.
    #[error("{name} at offset {offset}: unsupported {field} {found}")]
    Unsupported {
        /// Object name.
        name: String,
        /// Offset of the field.
        offset: u64,
        /// Field name.
        field: &'static str,
        /// Value found.
        found: u64,
    },
    /// A length field disagrees with the file or exceeds a named limit.
    #[error("{name} at offset {offset}: {field} is {found}, {expected}")]
    BadLength {
        /// Object name.
        name: String,
        /// Offset of the field.
        offset: u64,
        /// Field name.
        field: &'static str,
        /// Value found.
        found: u64,
        /// What was expected.
        expected: String,
    },
    /// The CRC32 of a file or blob does not match.
    #[error("{name}: CRC32 mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Object name (and blob, for blobs).
        name: String,
        /// CRC stored.
        stored: u32,
        /// CRC computed.
        computed: u32,
    },
    /// The payload does not decode (postcard) or breaks a structural rule.
    #[error("{name}: malformed payload: {why}")]
    Malformed {
        /// Object name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// Decryption / authentication or key handling failed.
    #[error("{name}: {why}")]
    Crypto {
        /// Object name (or `keys`).
        name: String,
        /// What failed.
        why: String,
    },
    /// A blob referenced by a manifest or asked for is not in any index.
    #[error("blob {0} is not in the index")]
    BlobMissing(BlobId),
    /// A blob's content does not hash to its id, or its decompressed length is wrong.
    #[error("blob {id} in {pack}: {why}")]
    BlobCorrupt {
        /// Blob id.
        id: BlobId,
        /// Pack object name.
        pack: String,
        /// What is wrong.
        why: String,
    },
    /// The repository is encrypted and no secret (passphrase, key file, recovery key) was given.
    #[error("the repository is encrypted: a passphrase, key file or recovery key is needed")]
    KeyNeeded,
    /// The key ring or sealing failed (wrong key, damaged key ring, random generator).
    #[error("keys: {0}")]
    Keys(#[source] cairn_crypto::Error),
    /// The key ring given does not belong to this repository.
    #[error("the key ring opens a different repository (key fingerprint mismatch)")]
    ForeignKeyRing,
    /// A decoded field holds a value outside its range (the payload is postcard, so no
    /// byte offset: the field is named instead).
    #[error("{name}: {field} is {found}, expected {expected}")]
    OutOfRange {
        /// Object name.
        name: String,
        /// Field name.
        field: &'static str,
        /// Value found.
        found: u64,
        /// What was expected.
        expected: &'static str,
    },
    /// Caller error: a value outside what the repository accepts.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Chunker parameters in the configuration are invalid.
    #[error(transparent)]
    Chunker(#[from] cairn_chunk::Error),
}

impl Error {
    pub(crate) fn backend(op: &'static str, name: &str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            Error::NotFound {
                name: name.to_string(),
            }
        } else {
            Error::Backend {
                op,
                name: name.to_string(),
                source,
            }
        }
    }

    pub(crate) fn malformed(name: &str, why: impl Into<String>) -> Self {
        Error::Malformed {
            name: name.to_string(),
            why: why.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
