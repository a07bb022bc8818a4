//! The repository's view of cairn-crypto: content ids, sealing and opening.
//!
//! Interim: until cairn-crypto compiles this carries only the unencrypted path, with the
//! agreed API shape (`chunk_id`, `sealer().seal`, `open`, `overhead`).

use std::fmt;

use crate::{Error, Result};

/// Whether and how a repository is encrypted (recorded in its `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Encryption {
    /// No encryption: ids are SHA-256, blobs and files stored as plaintext (CRC-checked).
    None,
    /// AES-256-GCM with per-session keys; ids are HMAC-SHA256 under a repository key.
    Aes256Gcm,
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encryption::None => "none",
            Encryption::Aes256Gcm => "aes-256-gcm",
        })
    }
}

/// Keys and algorithms of an open repository.
#[derive(Clone)]
pub(crate) struct Crypto {
    encryption: Encryption,
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crypto({})", self.encryption)
    }
}

/// One writer's sealing session.
#[derive(Debug)]
pub(crate) struct Sealer {
    sealing: bool,
}

impl Crypto {
    pub(crate) fn none() -> Self {
        Crypto {
            encryption: Encryption::None,
        }
    }

    pub(crate) fn encryption(&self) -> Encryption {
        self.encryption
    }

    pub(crate) fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let mut id = [0u8; 32];
        id.copy_from_slice(d.as_ref());
        id
    }

    pub(crate) fn sealer(&self) -> Result<Sealer> {
        Ok(Sealer {
            sealing: self.encryption != Encryption::None,
        })
    }

    pub(crate) fn open(&self, name: &str, _aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if self.encryption != Encryption::None {
            return Err(Error::Crypto {
                name: name.to_string(),
                why: "encrypted repositories need cairn-crypto".into(),
            });
        }
        Ok(sealed.to_vec())
    }

    pub(crate) fn overhead(&self) -> usize {
        0
    }
}

impl Sealer {
    pub(crate) fn seal(&self, _aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        if self.sealing {
            return Err(Error::Crypto {
                name: String::new(),
                why: "encrypted repositories need cairn-crypto".into(),
            });
        }
        Ok(plaintext.to_vec())
    }
}
