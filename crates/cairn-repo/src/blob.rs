//! Blob codec: compress (lz4 block, kept raw when it does not shrink), then seal with
//! associated data = kind byte + blob id.
//!
//! Plaintext layout (before sealing): 1 byte codec (0 = stored raw, 1 = lz4 block), then
//! the body. The raw length is recorded in the index and bounds decompression.

use crate::crypto::{Crypto, Sealer};
use crate::{BlobId, BlobKind, Error, Result};

/// Largest raw (decompressed) blob accepted: the largest chunk any chunker produces.
pub const MAX_BLOB_RAW: u32 = cairn_chunk::CHUNK_MAX;

const CODEC_RAW: u8 = 0;
const CODEC_LZ4: u8 = 1;

/// A blob ready for a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBlob {
    /// Content id.
    pub id: BlobId,
    /// Kind.
    pub kind: BlobKind,
    /// Length before compression.
    pub raw_len: u32,
    /// The bytes stored in the pack.
    pub stored: Vec<u8>,
    /// CRC32 of `stored`.
    pub crc32: u32,
}

/// Associated data of a blob's seal.
pub(crate) fn aad(kind: BlobKind, id: &BlobId) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = kind.byte();
    a[1..].copy_from_slice(&id.0);
    a
}

pub(crate) fn encode(
    sealer: &Sealer,
    kind: BlobKind,
    id: BlobId,
    data: &[u8],
) -> Result<EncodedBlob> {
    let raw_len = u32::try_from(data.len())
        .ok()
        .filter(|&n| n <= MAX_BLOB_RAW)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "blob of {} bytes exceeds {MAX_BLOB_RAW}",
                data.len()
            ))
        })?;
    let compressed = lz4_flex::block::compress(data);
    let mut plain = Vec::with_capacity(1 + compressed.len().min(data.len()));
    if compressed.len() < data.len() {
        plain.push(CODEC_LZ4);
        plain.extend_from_slice(&compressed);
    } else {
        plain.push(CODEC_RAW);
        plain.extend_from_slice(data);
    }
    drop(compressed);
    let stored = crate::crypto::seal(sealer, &aad(kind, &id), &plain)?;
    let crc32 = crc32fast::hash(&stored);
    Ok(EncodedBlob {
        id,
        kind,
        raw_len,
        stored,
        crc32,
    })
}

/// Largest stored size a blob of `raw_len` bytes may have: codec byte + raw + seal overhead.
pub(crate) fn max_stored(raw_len: u32, overhead: usize) -> u64 {
    u64::from(raw_len) + 1 + overhead as u64
}

/// Opens, decompresses and checks one stored blob; `where_` names it in errors.
pub(crate) fn decode(
    crypto: &Crypto,
    where_: &str,
    kind: BlobKind,
    id: &BlobId,
    raw_len: u32,
    crc32: u32,
    stored: &[u8],
) -> Result<Vec<u8>> {
    let corrupt = |why: String| Error::BlobCorrupt {
        id: *id,
        pack: where_.to_string(),
        why,
    };
    if raw_len > MAX_BLOB_RAW {
        return Err(corrupt(format!(
            "raw length {raw_len} exceeds {MAX_BLOB_RAW}"
        )));
    }
    let computed = crc32fast::hash(stored);
    if computed != crc32 {
        return Err(corrupt(format!(
            "CRC32 mismatch (index {crc32:08x}, data {computed:08x})"
        )));
    }
    let plain = crypto
        .open(where_, &aad(kind, id), stored)
        .map_err(|e| corrupt(e.to_string()))?;
    let Some((&codec, body)) = plain.split_first() else {
        return Err(corrupt("empty plaintext (no codec byte)".into()));
    };
    let raw = raw_len as usize;
    let data = match codec {
        CODEC_RAW => {
            if body.len() != raw {
                return Err(corrupt(format!(
                    "stored raw {} bytes, index says {raw}",
                    body.len()
                )));
            }
            body.to_vec()
        }
        CODEC_LZ4 => {
            // Decompress into exactly the recorded length: a hostile block cannot make us
            // allocate more than MAX_BLOB_RAW.
            let mut out = vec![0u8; raw];
            let n = lz4_flex::block::decompress_into(body, &mut out)
                .map_err(|e| corrupt(format!("lz4: {e}")))?;
            if n != raw {
                return Err(corrupt(format!("decompressed {n} bytes, index says {raw}")));
            }
            out
        }
        other => return Err(corrupt(format!("unknown codec {other}"))),
    };
    let again = BlobId(crypto.chunk_id(&data));
    if &again != id {
        return Err(corrupt(format!("content hashes to {again}")));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(0u8..4, 0..20_000)) {
            let c = Crypto::none();
            let s = c.sealer().unwrap();
            let id = BlobId(c.chunk_id(&data));
            let e = encode(&s, BlobKind::Data, id, &data).unwrap();
            prop_assert!(e.stored.len() as u64 <= max_stored(e.raw_len, c.overhead()));
            let back = decode(&c, "p", BlobKind::Data, &id, e.raw_len, e.crc32, &e.stored).unwrap();
            prop_assert_eq!(back, data);
        }

        #[test]
        fn hostile_stored_bytes_are_errors(stored in proptest::collection::vec(any::<u8>(), 0..300), raw_len in 0u32..100_000) {
            let c = Crypto::none();
            let id = BlobId([1; 32]);
            let crc = crc32fast::hash(&stored);
            prop_assert!(decode(&c, "p", BlobKind::Data, &id, raw_len, crc, &stored).is_err());
        }
    }

    #[test]
    fn incompressible_is_stored_raw_and_flip_is_caught() {
        let c = Crypto::none();
        let s = c.sealer().unwrap();
        let data: Vec<u8> = (0..5000u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2])
            .collect();
        let id = BlobId(c.chunk_id(&data));
        let e = encode(&s, BlobKind::Data, id, &data).unwrap();
        let mut bad = e.stored.clone();
        bad[10] ^= 1;
        let err = decode(&c, "p", BlobKind::Data, &id, e.raw_len, e.crc32, &bad).unwrap_err();
        assert!(matches!(err, Error::BlobCorrupt { .. }), "{err}");
        // Even with a matching CRC the content hash catches it.
        let crc = crc32fast::hash(&bad);
        assert!(decode(&c, "p", BlobKind::Data, &id, e.raw_len, crc, &bad).is_err());
        assert!(decode(
            &c,
            "p",
            BlobKind::Data,
            &id,
            MAX_BLOB_RAW + 1,
            e.crc32,
            &e.stored
        )
        .is_err());
    }
}
