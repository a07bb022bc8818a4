//! # cairn-crypto
//!
//! The cryptography of a Cairn repository:
//!
//! - **Chunk ids**: a keyed PRF in encrypted repositories (storage cannot confirm it holds a
//!   known file), a plain hash in unencrypted ones ([`RepoCrypto::chunk_id`]). The algorithm is
//!   the repository's [`ChunkIdHash`]: keyed BLAKE3 / BLAKE3 for new repositories,
//!   HMAC-SHA256 / SHA-256 for those created before the choice existed.
//! - **Sealing**: AES-256-GCM with caller-supplied associated data (blob kind + id). Each writer
//!   gets a [`Sealer`] with a random 128-bit session id and its own HKDF-derived key, and counts
//!   nonces, so a nonce never repeats under a key ([`RepoCrypto::sealer`], [`RepoCrypto::open`]).
//! - **Key ring** (`keys` file): the 32-byte [`MasterKey`] wrapped by slots opened by a
//!   passphrase (Argon2id), a key file or a recovery key (HKDF). Adding or removing slots never
//!   touches data ([`KeyRing`]).
//!
//! Formats: `docs/formats/keys.md`; threat model: `docs/security.md`.
//!
//! ```
//! use cairn_crypto::{ChunkIdHash, KdfParams, KeyRing, MasterKey, RepoCrypto, SlotSecret};
//!
//! // Create a repository key and a key ring with a passphrase slot.
//! let master = MasterKey::generate()?;
//! let pass = SlotSecret::Passphrase("correct horse battery staple".into());
//! // Real code uses KeyRing::create (64 MiB Argon2id); cheap parameters keep the example fast.
//! let ring = KeyRing::create_with_params(&master, &pass, "admin", KdfParams::insecure_for_tests())?;
//! let keys_file = ring.encode();
//!
//! // Later: unlock and seal / open blobs.
//! let master = KeyRing::decode(&keys_file)?.unlock(&pass)?;
//! let crypto = RepoCrypto::with_chunk_id(&master, ChunkIdHash::Blake3);
//! let sealer = crypto.sealer()?;
//! let id = crypto.chunk_id(b"hello");
//! let sealed = sealer.seal(&id, b"hello")?;
//! assert_eq!(sealed.len(), 5 + crypto.overhead());
//! assert_eq!(crypto.open(&id, &sealed)?, b"hello");
//! assert!(crypto.open(b"another blob id", &sealed).is_err());
//! // Ids are keyed: another algorithm, or no key, names the same bytes differently.
//! assert_ne!(id, RepoCrypto::new(&master).chunk_id(b"hello"));
//! assert_ne!(id, RepoCrypto::none_with(ChunkIdHash::Blake3).chunk_id(b"hello"));
//! # Ok::<(), cairn_crypto::Error>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod kdf;
mod keyring;
mod recovery;
mod repo;

pub use error::{Error, Result};
pub use kdf::{
    KdfParams, MAX_KDF_MEMORY_KIB, MAX_KDF_PARALLELISM, MAX_KDF_TIME_COST,
    MIN_KDF_MEMORY_KIB_PER_LANE,
};
pub use keyring::{
    generate_key_file, KeyRing, SlotId, SlotInfo, SlotKind, SlotSecret, GENERATED_KEY_FILE_LEN,
    KEYRING_HEADER_LEN, KEYRING_MAC_LEN, KEYRING_MAGIC, KEYRING_VERSION, MAX_KEYRING_PAYLOAD,
    MAX_KEY_FILE_LEN, MAX_LABEL_LEN, MAX_PASSPHRASE_LEN, MAX_SLOTS, MIN_KEY_FILE_LEN,
    SLOT_SALT_LEN,
};
pub use recovery::{generate_recovery_key, RECOVERY_DATA_CHARS};
pub use repo::{
    ChunkIdHash, Encryption, MasterKey, RepoCrypto, Sealer, KEY_LEN, MAX_SEALS_PER_SESSION,
    NONCE_LEN, SEALED_HEADER_LEN, SEALED_OVERHEAD, SEALED_VERSION, SESSION_ID_LEN, TAG_LEN,
};
