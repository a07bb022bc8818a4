//! The repository's view of cairn-crypto: content ids, sealing and opening, with errors
//! that name the object concerned.

use std::fmt;

pub use cairn_crypto::{ChunkIdHash, Encryption};

use crate::{Error, Result};

/// Keys and algorithms of an open repository.
#[derive(Clone)]
pub(crate) struct Crypto(cairn_crypto::RepoCrypto);

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Crypto({}, {})",
            self.0.encryption(),
            self.0.chunk_id_hash()
        )
    }
}

/// One writer's sealing session.
pub(crate) type Sealer = cairn_crypto::Sealer;

impl Crypto {
    /// Unencrypted, SHA-256 ids (decoders for fuzzing and tests, where no id is checked
    /// against a repository's).
    pub(crate) fn none() -> Self {
        Crypto(cairn_crypto::RepoCrypto::none())
    }

    /// Unencrypted with `hash` ids: an unencrypted repository's crypto.
    pub(crate) fn none_with(hash: ChunkIdHash) -> Self {
        Crypto(cairn_crypto::RepoCrypto::none_with(hash))
    }

    /// Encrypted under `master` with `hash` ids: an encrypted repository's crypto.
    pub(crate) fn keyed(master: &cairn_crypto::MasterKey, hash: ChunkIdHash) -> Self {
        Crypto(cairn_crypto::RepoCrypto::with_chunk_id(master, hash))
    }

    #[cfg(test)]
    pub(crate) fn new(inner: cairn_crypto::RepoCrypto) -> Self {
        Crypto(inner)
    }

    pub(crate) fn encryption(&self) -> Encryption {
        self.0.encryption()
    }

    pub(crate) fn chunk_id_hash(&self) -> ChunkIdHash {
        self.0.chunk_id_hash()
    }

    pub(crate) fn fingerprint(&self) -> Option<[u8; 32]> {
        self.0.key_fingerprint()
    }

    pub(crate) fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        self.0.chunk_id(data)
    }

    pub(crate) fn sealer(&self) -> Result<Sealer> {
        self.0.sealer().map_err(Error::Keys)
    }

    pub(crate) fn open(&self, name: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.0.open(aad, sealed).map_err(|e| Error::Crypto {
            name: name.to_string(),
            why: e.to_string(),
        })
    }

    pub(crate) fn open_in_place<'a>(
        &self,
        name: &str,
        aad: &[u8],
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8]> {
        self.0
            .open_in_place(aad, sealed)
            .map_err(|e| Error::Crypto {
                name: name.to_string(),
                why: e.to_string(),
            })
    }

    pub(crate) fn overhead(&self) -> usize {
        self.0.overhead()
    }
}

pub(crate) fn seal(sealer: &Sealer, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    sealer.seal(aad, plain).map_err(Error::Keys)
}

/// Length of the tag [`seal_in_place`] appends (when encrypted).
pub(crate) const SEAL_TAG_LEN: usize = cairn_crypto::TAG_LEN;

/// Seals `buf` in place (see [`cairn_crypto::Sealer::seal_in_place`]).
pub(crate) fn seal_in_place(sealer: &Sealer, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    sealer.seal_in_place(aad, buf).map_err(Error::Keys)
}
