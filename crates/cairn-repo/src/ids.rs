use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn parse_hex32(s: &str) -> Result<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return Err(Error::Invalid(format!("id {s:?}: expected 64 hex digits")));
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        match (hi, lo) {
            (Some(h), Some(l)) => out[i] = u8::try_from(h * 16 + l).unwrap_or(0),
            _ => return Err(Error::Invalid(format!("id {s:?}: not hex"))),
        }
    }
    Ok(out)
}

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        pub struct $name(pub [u8; 32]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                hex(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                hex(&self.0[..8], f)?;
                f.write_str("..)")
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                parse_hex32(s).map($name)
            }
        }
    };
}

id_type!(
    /// A blob's content id: SHA-256 of the chunk (unencrypted) or HMAC-SHA256 under the
    /// repository's id key (encrypted).
    BlobId
);
id_type!(
    /// A random id naming a pack, index or restore-point file.
    ObjectId
);

impl ObjectId {
    /// 32 bytes from the system's secure random generator.
    pub fn random() -> Result<Self> {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| Error::Crypto {
                name: "random".into(),
                why: "system random number generator failed".into(),
            })?;
        Ok(ObjectId(b))
    }
}

/// A restore point's id (the name of its `snapshots/` file).
pub type SnapshotId = ObjectId;

/// What a blob holds. Part of the associated data of its seal, so a blob cannot be served
/// as another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
#[repr(u8)]
pub enum BlobKind {
    /// A chunk of disk (or file) data.
    Data = 0,
    /// Metadata (file catalogs, trees), for later formats.
    Meta = 1,
}

impl BlobKind {
    /// The on-disk byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// From the on-disk byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::Meta),
            _ => None,
        }
    }
}
