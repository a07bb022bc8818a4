//! The repository configuration (`config`). Stored framed but never sealed: a reader must
//! learn whether the repository is encrypted before it has a key. It holds nothing secret.

use serde::{Deserialize, Serialize};

use crate::{ChunkIdHash, Encryption, Error, ObjectId, Result};

/// Largest config payload accepted.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;
/// Repository layout version this build writes: the config records its chunk-id hash
/// ([`RepoConfig::chunk_id`]). A build that predates the field refuses the version instead
/// of naming chunks with the wrong hash.
pub const REPO_VERSION: u32 = 2;
/// Layout version of repositories created before the chunk-id hash was recorded: their
/// config ends before [`RepoConfig::chunk_id`] and their ids are [`ChunkIdHash::Sha256`].
/// Still read and written to (the version of an existing repository never changes).
pub const REPO_VERSION_SHA256_IDS: u32 = 1;
/// Smallest pack target accepted (1 MiB) and largest (256 MiB, well under the 1 GiB pack cap).
pub const PACK_TARGET_RANGE: (u64, u64) = (1 << 20, 256 << 20);
/// Default pack target: 32 MiB, few enough objects for object stores, small enough to
/// re-read cheaply when verifying.
pub const DEFAULT_PACK_TARGET: u64 = 32 << 20;

/// Contents of `config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Random repository id.
    pub id: ObjectId,
    /// Layout version.
    pub version: u32,
    /// How data is cut into chunks.
    pub chunker: cairn_chunk::ChunkerParams,
    /// Encryption.
    pub encryption: Encryption,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Writers close a pack once it reaches this many bytes.
    pub pack_target: u64,
    /// Fingerprint of the repository key (cairn-crypto `key_fingerprint`), so a key ring
    /// of another repository is refused at open. `None` when unencrypted.
    pub key_fingerprint: Option<[u8; 32]>,
    /// The hash naming every chunk of the repository: present exactly when `version` is
    /// [`REPO_VERSION`]. Absent (decoded as `None`, see `trailing_optional`) in configs of
    /// version [`REPO_VERSION_SHA256_IDS`], whose ids are [`ChunkIdHash::Sha256`]. Use
    /// [`chunk_id_hash`](Self::chunk_id_hash).
    #[serde(default, deserialize_with = "crate::manifest::trailing_optional")]
    pub chunk_id: Option<ChunkIdHash>,
}

impl RepoConfig {
    /// The hash that names this repository's chunks: the recorded one, or
    /// [`ChunkIdHash::Sha256`] for a repository created before it was recorded.
    pub fn chunk_id_hash(&self) -> ChunkIdHash {
        self.chunk_id.unwrap_or(ChunkIdHash::Sha256)
    }

    /// The `config` file: the postcard payload in an unsealed frame.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let payload =
            postcard::to_stdvec(self).map_err(|e| Error::Invalid(format!("postcard: {e}")))?;
        Ok(crate::frame::encode(
            crate::frame::FileKind::Config,
            false,
            &payload,
        ))
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        match (self.version, self.chunk_id) {
            (REPO_VERSION, Some(_)) | (REPO_VERSION_SHA256_IDS, None) => {}
            (REPO_VERSION, None) => {
                return Err(Error::malformed(
                    "config",
                    format!("a version-{REPO_VERSION} config must record its chunk-id hash"),
                ))
            }
            (REPO_VERSION_SHA256_IDS, Some(h)) => {
                return Err(Error::malformed(
                    "config",
                    format!(
                        "a version-{REPO_VERSION_SHA256_IDS} config records no chunk-id hash \
                         (found {h})"
                    ),
                ))
            }
            (other, _) => {
                return Err(Error::Unsupported {
                    name: "config".into(),
                    offset: 24,
                    field: "repository version",
                    found: u64::from(other),
                })
            }
        }
        self.chunker.validate()?;
        if !(PACK_TARGET_RANGE.0..=PACK_TARGET_RANGE.1).contains(&self.pack_target) {
            return Err(Error::malformed(
                "config",
                format!(
                    "pack target {} outside {PACK_TARGET_RANGE:?}",
                    self.pack_target
                ),
            ));
        }
        if (self.encryption == Encryption::None) != self.key_fingerprint.is_none() {
            return Err(Error::malformed(
                "config",
                "key fingerprint present exactly when encrypted",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The version-1 layout (no chunk-id field) is tested in tests/chunk_id.rs, which
    // keeps the one definition of it.

    fn config(encryption: Encryption, chunk_id: ChunkIdHash) -> RepoConfig {
        RepoConfig {
            id: ObjectId([5; 32]),
            version: REPO_VERSION,
            chunker: cairn_chunk::ChunkerParams::default(),
            encryption,
            created: 1_700_000_000,
            pack_target: DEFAULT_PACK_TARGET,
            key_fingerprint: (encryption == Encryption::Aes256Gcm).then_some([9; 32]),
            chunk_id: Some(chunk_id),
        }
    }

    fn decode(bytes: &[u8]) -> Result<RepoConfig> {
        let c: RepoConfig = postcard::from_bytes(bytes)
            .map_err(|e| Error::malformed("config", format!("postcard: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn the_chunk_id_hash_is_the_last_byte() {
        let c = config(Encryption::Aes256Gcm, ChunkIdHash::Blake3);
        let bytes = postcard::to_stdvec(&c).unwrap();
        let n = bytes.len();
        assert_eq!(&bytes[n - 2..], [1, 1], "Some, variant 1");
        // Variant 0: a different but valid config.
        let mut v = bytes.clone();
        v[n - 1] = 0;
        assert_eq!(decode(&v).unwrap().chunk_id, Some(ChunkIdHash::Sha256));
        // Unknown variants: typed errors, never a panic.
        for b in [2u8, 3, 0x7F, 0x80, 0xFF] {
            v[n - 1] = b;
            assert!(
                matches!(decode(&v), Err(Error::Malformed { .. })),
                "variant byte {b:#x}"
            );
        }
        // Option tag: 0 = absent, refused in a version-2 config; 2 and up: not an option.
        let mut v = bytes.clone();
        v[n - 2] = 0;
        let err = decode(&v[..n - 1]).unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { why, .. } if why.contains("must record")),
            "{err}"
        );
        for b in [2u8, 0x80, 0xFF] {
            v[n - 2] = b;
            assert!(
                matches!(decode(&v), Err(Error::Malformed { .. })),
                "tag {b:#x}"
            );
        }
        // Cut inside the field: the tag alone is an error, not "absent".
        assert!(matches!(
            decode(&bytes[..n - 1]),
            Err(Error::Malformed { .. })
        ));
        // Cut before it: absent, which version 2 refuses.
        assert!(matches!(
            decode(&bytes[..n - 2]),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn version_and_field_must_agree() {
        let mut c = config(Encryption::None, ChunkIdHash::Sha256);
        c.version = REPO_VERSION_SHA256_IDS;
        assert!(matches!(c.validate(), Err(Error::Malformed { .. })));
        c.chunk_id = None;
        c.validate().unwrap();
        c.version = REPO_VERSION;
        assert!(matches!(c.validate(), Err(Error::Malformed { .. })));
        for version in [0, 3, u32::MAX] {
            c.version = version;
            c.chunk_id = Some(ChunkIdHash::Blake3);
            assert!(matches!(
                c.validate(),
                Err(Error::Unsupported { found, .. }) if found == u64::from(version)
            ));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for hash in ChunkIdHash::ALL {
            let bytes = postcard::to_stdvec(&config(Encryption::Aes256Gcm, hash)).unwrap();
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trip(
            encrypted in any::<bool>(),
            blake3 in any::<bool>(),
            created in any::<i64>(),
            pack_target in PACK_TARGET_RANGE.0..=PACK_TARGET_RANGE.1,
            id in any::<[u8; 32]>(),
            fingerprint in any::<[u8; 32]>(),
        ) {
            let encryption = if encrypted { Encryption::Aes256Gcm } else { Encryption::None };
            let hash = if blake3 { ChunkIdHash::Blake3 } else { ChunkIdHash::Sha256 };
            let c = RepoConfig {
                id: ObjectId(id),
                created,
                pack_target,
                key_fingerprint: encrypted.then_some(fingerprint),
                ..config(encryption, hash)
            };
            let back = decode(&postcard::to_stdvec(&c).unwrap()).unwrap();
            prop_assert_eq!(back.chunk_id_hash(), hash);
            prop_assert_eq!(back, c);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }
}
