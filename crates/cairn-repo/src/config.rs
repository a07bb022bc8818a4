//! The repository configuration (`config`). Stored framed but never sealed: a reader must
//! learn whether the repository is encrypted before it has a key. It holds nothing secret.

use serde::{Deserialize, Serialize};

use crate::{Encryption, Error, ObjectId, Result};

/// Largest config payload accepted.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;
/// Repository layout version this build writes.
pub const REPO_VERSION: u32 = 1;
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
}

impl RepoConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.version != REPO_VERSION {
            return Err(Error::Unsupported {
                name: "config".into(),
                offset: 24,
                field: "repository version",
                found: u64::from(self.version),
            });
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
