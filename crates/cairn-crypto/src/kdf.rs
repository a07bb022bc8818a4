//! Key-encryption-key derivation for key ring slots.

use argon2::{Algorithm, Argon2, Block, Params, Version};
use ring::hkdf;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::{hkdf_expand32, KEY_LEN};

/// Largest Argon2id memory cost accepted, in KiB (4 GiB). A hostile keys file must not make
/// us allocate more than this; honest files use [`KdfParams::default`] (46 MiB).
pub const MAX_KDF_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// Smallest Argon2id memory cost per lane, in KiB (the Argon2 minimum is 8 blocks per lane).
pub const MIN_KDF_MEMORY_KIB_PER_LANE: u32 = 8;
/// Largest Argon2id time cost (passes over memory): with the memory cap this bounds the work a
/// hostile keys file can demand per slot.
pub const MAX_KDF_TIME_COST: u32 = 16;
/// Largest Argon2id parallelism (lanes). Our Argon2 runs lanes on one thread; more lanes only
/// raise the memory floor.
pub const MAX_KDF_PARALLELISM: u32 = 16;

/// HKDF info of a key-file slot's key-encryption key.
pub(crate) const INFO_KEK_KEY_FILE: &[u8] = b"cairn/v1/kek/key-file";
/// HKDF info of a recovery-key slot's key-encryption key.
pub(crate) const INFO_KEK_RECOVERY: &[u8] = b"cairn/v1/kek/recovery-key";

/// Argon2id cost parameters of a passphrase slot (stored per slot, checked on decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB (`m`).
    pub memory_kib: u32,
    /// Number of passes (`t`).
    pub time_cost: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 46 MiB, 1 pass, 1 lane: OWASP's first recommended Argon2id setting (m=47104 KiB, t=1,
    /// p=1), about a tenth of a second on one core of a small server. 46 MiB per guess keeps
    /// GPU/ASIC guessing expensive while leaving room for a whole backup or restore command
    /// under 64 MiB of memory (the KDF's memory is freed before the data pipeline starts).
    /// Slots made with the earlier default (64 MiB, t=3, RFC 9106's second option) record
    /// their own parameters and open unchanged.
    fn default() -> Self {
        KdfParams {
            memory_kib: 46 * 1024,
            time_cost: 1,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Checked constructor.
    pub fn new(memory_kib: u32, time_cost: u32, parallelism: u32) -> Result<Self> {
        let p = KdfParams {
            memory_kib,
            time_cost,
            parallelism,
        };
        p.validate()?;
        Ok(p)
    }

    /// The cheapest parameters Argon2 accepts (8 KiB, 1 pass). Offers no protection: for tests
    /// only, so they stay fast.
    #[doc(hidden)]
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            memory_kib: MIN_KDF_MEMORY_KIB_PER_LANE,
            time_cost: 1,
            parallelism: 1,
        }
    }

    /// Checks every field against the named bounds.
    pub fn validate(&self) -> Result<()> {
        let field = |field, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(Error::KdfParams {
                    field,
                    value: u64::from(value),
                    min: u64::from(min),
                    max: u64::from(max),
                })
            }
        };
        field("parallelism", self.parallelism, 1, MAX_KDF_PARALLELISM)?;
        field("time_cost", self.time_cost, 1, MAX_KDF_TIME_COST)?;
        // parallelism <= 16, so this cannot overflow.
        let min_memory = MIN_KDF_MEMORY_KIB_PER_LANE.saturating_mul(self.parallelism);
        field(
            "memory_kib",
            self.memory_kib,
            min_memory,
            MAX_KDF_MEMORY_KIB,
        )
    }
}

/// Argon2id(passphrase, salt) -> 32-byte KEK. The memory is reserved fallibly, so a large
/// (but in-bounds) memory cost on a small machine is an error, not an abort.
pub(crate) fn argon2id_kek(
    params: &KdfParams,
    passphrase: &[u8],
    salt: &[u8],
) -> Result<[u8; KEY_LEN]> {
    params.validate()?;
    let kdf_err = |e: argon2::Error| Error::Kdf {
        detail: e.to_string(),
    };
    let argon_params = Params::new(
        params.memory_kib,
        params.time_cost,
        params.parallelism,
        Some(KEY_LEN),
    )
    .map_err(kdf_err)?;
    let blocks_needed = argon_params.block_count();
    let mut blocks: Vec<Block> = Vec::new();
    blocks
        .try_reserve_exact(blocks_needed)
        .map_err(|_| Error::Kdf {
            detail: format!(
                "cannot allocate {} MiB for the passphrase KDF",
                params.memory_kib / 1024
            ),
        })?;
    blocks.resize(blocks_needed, Block::default());
    let mut out = [0u8; KEY_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params)
        .hash_password_into_with_memory(passphrase, salt, &mut out, &mut blocks)
        .map_err(kdf_err)?;
    Ok(out)
}

/// HKDF-SHA256(salt, ikm, info) -> 32-byte KEK, for the high-entropy secrets (key file,
/// recovery key) that need no slow KDF.
pub(crate) fn hkdf_kek(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; KEY_LEN] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    hkdf_expand32(&prk, &[info])
}
