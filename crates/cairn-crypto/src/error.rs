//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `cairn-crypto`.
///
/// Decoding errors name the byte offset or the slot concerned and what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The secret does not open any slot of its kind in the key ring. Deliberately one message
    /// for every kind of secret and every reason, so it leaks nothing about the slots.
    #[error(
        "wrong key: no slot of the key ring accepts this passphrase, key file or recovery key"
    )]
    WrongKey,

    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,

    /// A sealed blob is shorter than the fixed header plus tag.
    #[error("sealed blob is {len} bytes, shorter than the {min}-byte minimum (header + tag)")]
    SealedTooShort {
        /// Length of the input.
        len: usize,
        /// Minimum length of a sealed blob.
        min: usize,
    },

    /// A sealed blob starts with a version byte this build does not know.
    #[error("sealed blob at offset 0: unsupported version {found} (expected {expected})")]
    SealedVersion {
        /// Version byte found.
        found: u8,
        /// Version this build writes and reads.
        expected: u8,
    },

    /// AES-256-GCM authentication of a sealed blob failed: it was modified, truncated, sealed
    /// under another repository key, or opened with different associated data (blob kind / id).
    #[error("sealed blob failed authentication: tampered or corrupted data, wrong associated data (blob kind/id) or another repository's key")]
    SealedAuthentication,

    /// A sealer used up its per-session message budget; start a new session with
    /// [`RepoCrypto::sealer`](crate::RepoCrypto::sealer).
    #[error("sealing session exhausted after {limit} messages; start a new sealer")]
    SealerExhausted {
        /// The per-session cap ([`MAX_SEALS_PER_SESSION`](crate::MAX_SEALS_PER_SESSION)).
        limit: u64,
    },

    /// A plaintext beyond AES-GCM's per-message limit (about 64 GiB).
    #[error("plaintext of {len} bytes is beyond AES-GCM's per-message limit")]
    PlaintextTooLarge {
        /// Length of the plaintext.
        len: usize,
    },

    /// The key ring file is shorter than its fixed header.
    #[error("keys file is {len} bytes, shorter than the {need}-byte header")]
    KeyRingTooShort {
        /// Length of the input.
        len: usize,
        /// Bytes needed.
        need: usize,
    },

    /// The key ring file does not start with the expected magic.
    #[error("keys file at offset 0: bad magic {found:02x?} (expected \"CAIRNKEY\")")]
    KeyRingMagic {
        /// The eight bytes found.
        found: [u8; 8],
    },

    /// The key ring file has a format version this build does not know.
    #[error("keys file at offset 8: unsupported format version {found} (expected {expected})")]
    KeyRingVersion {
        /// Version found.
        found: u16,
        /// Version this build reads and writes.
        expected: u16,
    },

    /// Reserved header bits are set.
    #[error("keys file at offset 10: reserved flags {found:#06x} must be zero")]
    KeyRingFlags {
        /// Flags found.
        found: u16,
    },

    /// The declared payload length exceeds the cap.
    #[error("keys file at offset 12: payload length {declared} exceeds the {max}-byte limit")]
    KeyRingPayloadTooLarge {
        /// Declared payload length.
        declared: u64,
        /// Cap ([`MAX_KEYRING_PAYLOAD`](crate::MAX_KEYRING_PAYLOAD)).
        max: u64,
    },

    /// The declared payload length does not match the bytes present.
    #[error("keys file at offset 12: header declares a {declared}-byte payload but {actual} bytes follow the header")]
    KeyRingLength {
        /// Declared payload length.
        declared: u64,
        /// Bytes actually following the header.
        actual: u64,
    },

    /// The CRC32 over header and payload does not match.
    #[error(
        "keys file at offset 16: CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    KeyRingChecksum {
        /// CRC32 stored in the header.
        stored: u32,
        /// CRC32 computed over the file.
        computed: u32,
    },

    /// The payload could not be decoded.
    #[error("keys file payload (offset {offset}): {detail}")]
    KeyRingPayload {
        /// File offset where the problem lies (the start of the payload when postcard
        /// cannot say more precisely).
        offset: usize,
        /// What was wrong.
        detail: String,
    },

    /// A slot holds a value outside the accepted bounds.
    #[error("keys file slot {slot}: {field} = {value} outside the accepted range {min}..={max}")]
    SlotField {
        /// Slot id.
        slot: u32,
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },

    /// Too many slots (decoding, or adding one more).
    #[error("key ring has {count} slots, more than the limit of {max}")]
    TooManySlots {
        /// Number of slots.
        count: usize,
        /// Cap ([`MAX_SLOTS`](crate::MAX_SLOTS)).
        max: usize,
    },

    /// A key ring without any slot (it could never be unlocked).
    #[error("key ring has no slot")]
    NoSlots,

    /// Two slots share an id, or an id is not below the ring's next id.
    #[error("keys file slot {slot}: id is duplicated or not below the next slot id {next}")]
    SlotId {
        /// The offending slot id.
        slot: u32,
        /// The ring's next slot id.
        next: u32,
    },

    /// The key ring has used up every slot id.
    #[error("key ring has used every slot id")]
    SlotIdsExhausted,

    /// No slot with this id.
    #[error("no slot {id} in the key ring")]
    NoSuchSlot {
        /// The id asked for.
        id: u32,
    },

    /// Removing this slot would leave the key ring without any slot.
    #[error(
        "refusing to remove slot {id}: it is the last slot, the repository would become unreadable"
    )]
    LastSlot {
        /// The id asked for.
        id: u32,
    },

    /// A slot label is too long or contains control characters.
    #[error("slot label is {len} bytes or contains control characters (limit {max} bytes, printable text only)")]
    Label {
        /// Label length in bytes.
        len: usize,
        /// Cap ([`MAX_LABEL_LEN`](crate::MAX_LABEL_LEN)).
        max: usize,
    },

    /// The passphrase is empty or longer than the cap.
    #[error("passphrase must be 1..={max} bytes, got {len}")]
    PassphraseLength {
        /// Length in bytes.
        len: usize,
        /// Cap ([`MAX_PASSPHRASE_LEN`](crate::MAX_PASSPHRASE_LEN)).
        max: usize,
    },

    /// A key file is too short to hold enough entropy, or absurdly large.
    #[error("key file must be {min}..={max} bytes, got {len}")]
    KeyFileLength {
        /// Length in bytes.
        len: usize,
        /// Minimum ([`MIN_KEY_FILE_LEN`](crate::MIN_KEY_FILE_LEN)).
        min: usize,
        /// Maximum ([`MAX_KEY_FILE_LEN`](crate::MAX_KEY_FILE_LEN)).
        max: usize,
    },

    /// A recovery key is malformed (wrong length, a character outside the alphabet, or a
    /// failed check: most likely a typo).
    #[error("recovery key is malformed: {detail}")]
    RecoveryKeyFormat {
        /// What is wrong.
        detail: String,
    },

    /// Argon2id parameters are outside the accepted bounds.
    #[error("Argon2id parameter {field} = {value} outside the accepted range {min}..={max}")]
    KdfParams {
        /// Parameter name.
        field: &'static str,
        /// Value given.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },

    /// The Argon2 implementation refused to run (should not happen: parameters are checked).
    #[error("Argon2id failed: {detail}")]
    Kdf {
        /// Message of the argon2 crate.
        detail: String,
    },

    /// A slot accepted the secret but the key ring's authentication code does not match: the
    /// slot list or labels were changed by someone without the master key.
    #[error("key ring failed authentication: its slots or labels were modified by someone who does not hold the master key")]
    KeyRingTampered,

    /// Reading or writing a keys file failed.
    #[error("keys file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
