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

/// Bytes probed at each of [`PROBES`] places of a chunk before compressing it whole.
const PROBE_LEN: usize = 4096;
/// Places probed (start, end and evenly between).
const PROBES: usize = 4;
/// The probes must shrink to at most this many 1/1000ths of their size for the whole blob to
/// be compressed: below ~3% saving lz4 costs a full pass for (almost) nothing.
const PROBE_KEEP_PERMILLE: usize = 970;

/// Whether lz4 is worth a try on `data`: compresses [`PROBES`] samples of [`PROBE_LEN`]
/// bytes. Random (already compressed or encrypted) data fails this in ~1/16 of the time a
/// whole-chunk lz4 pass takes. Small blobs are always tried.
fn worth_compressing(data: &[u8]) -> bool {
    if data.len() < PROBE_LEN * PROBES * 4 {
        return true;
    }
    let mut out = [0u8; lz4_flex::block::get_maximum_output_size(PROBE_LEN)];
    let step = (data.len() - PROBE_LEN) / (PROBES - 1);
    let mut packed = 0usize;
    for i in 0..PROBES {
        let sample = &data[i * step..i * step + PROBE_LEN];
        // The output has the maximum size: compression cannot fail; count a failure as
        // incompressible anyway.
        packed += lz4_flex::block::compress_into(sample, &mut out).unwrap_or(PROBE_LEN);
    }
    packed * 1000 <= PROBE_LEN * PROBES * PROBE_KEEP_PERMILLE
}

pub(crate) fn encode(
    sealer: &Sealer,
    kind: BlobKind,
    id: BlobId,
    data: &[u8],
) -> Result<EncodedBlob> {
    encode_into(sealer, kind, id, data, Vec::new())
}

/// [`encode`] into `buf` (its capacity is reused, so a caller cycling a few buffers never
/// maps fresh memory). The plaintext is built behind room for the seal header and sealed in
/// place: `data` is copied (or compressed) exactly once.
pub(crate) fn encode_into(
    sealer: &Sealer,
    kind: BlobKind,
    id: BlobId,
    data: &[u8],
    mut buf: Vec<u8>,
) -> Result<EncodedBlob> {
    let raw_len = checked_raw_len(data.len())?;
    let head = sealer.header_len();
    if !try_compress(data, head, &mut buf) {
        buf.clear();
        buf.reserve(head + 1 + data.len() + crate::crypto::SEAL_TAG_LEN);
        buf.resize(head, 0);
        buf.push(CODEC_RAW);
        buf.extend_from_slice(data);
    }
    seal(sealer, kind, id, raw_len, buf)
}

/// Bytes in front of a chunk in a buffer for [`encode_in_place`]: the seal header and the
/// codec byte.
pub(crate) fn chunk_prefix_len(sealer: &Sealer) -> usize {
    sealer.header_len() + 1
}

/// Sizes `buf` to hold a chunk of `len` bytes behind [`chunk_prefix_len`] bytes, with
/// capacity for the seal's tag, and returns where the chunk goes. Bytes already in `buf`
/// are kept (not zeroed): the caller overwrites the whole range.
pub(crate) fn chunk_buffer(
    sealer: &Sealer,
    buf: &mut Vec<u8>,
    len: usize,
) -> std::ops::Range<usize> {
    let prefix = chunk_prefix_len(sealer);
    buf.truncate(prefix + len);
    buf.reserve_exact((prefix + len + crate::crypto::SEAL_TAG_LEN).saturating_sub(buf.len()));
    buf.resize(prefix + len, 0);
    prefix..prefix + len
}

/// [`encode`] of the chunk at `chunk[chunk_prefix_len()..]` (see [`chunk_buffer`]) without
/// copying it: a chunk kept raw is sealed in place in `chunk`, and `spare` comes back; a
/// compressed one is built in `spare`, and `chunk` comes back. Same bytes as `encode`.
pub(crate) fn encode_in_place(
    sealer: &Sealer,
    kind: BlobKind,
    id: BlobId,
    mut chunk: Vec<u8>,
    mut spare: Vec<u8>,
) -> Result<(EncodedBlob, Vec<u8>)> {
    let head = sealer.header_len();
    let Some(data) = chunk.get(head + 1..) else {
        return Err(Error::Invalid(format!(
            "chunk buffer of {} bytes has no room for the {}-byte prefix",
            chunk.len(),
            head + 1
        )));
    };
    let raw_len = checked_raw_len(data.len())?;
    if try_compress(data, head, &mut spare) {
        return Ok((seal(sealer, kind, id, raw_len, spare)?, chunk));
    }
    chunk[head] = CODEC_RAW;
    Ok((seal(sealer, kind, id, raw_len, chunk)?, spare))
}

fn checked_raw_len(len: usize) -> Result<u32> {
    u32::try_from(len)
        .ok()
        .filter(|&n| n <= MAX_BLOB_RAW)
        .ok_or_else(|| Error::Invalid(format!("blob of {len} bytes exceeds {MAX_BLOB_RAW}")))
}

/// Compresses `data` into `out` behind `head` bytes and the lz4 codec byte, when the probes
/// say it is worth it and it shrinks; `out`'s old bytes are overwritten, not zeroed first
/// (growing zero-fills only past its old length, which a reused buffer mostly has).
fn try_compress(data: &[u8], head: usize, out: &mut Vec<u8>) -> bool {
    if !worth_compressing(data) {
        return false;
    }
    let max = lz4_flex::block::get_maximum_output_size(data.len());
    out.truncate(head + 1 + max);
    out.resize(head + 1 + max, 0);
    out[head] = CODEC_LZ4;
    match lz4_flex::block::compress_into(data, &mut out[head + 1..]) {
        Ok(n) if n < data.len() => {
            out.truncate(head + 1 + n);
            true
        }
        _ => false,
    }
}

/// Seals the plaintext `buf[head..]` in place and wraps it.
fn seal(
    sealer: &Sealer,
    kind: BlobKind,
    id: BlobId,
    raw_len: u32,
    mut buf: Vec<u8>,
) -> Result<EncodedBlob> {
    crate::crypto::seal_in_place(sealer, &aad(kind, &id), &mut buf)?;
    let crc32 = crc32fast::hash(&buf);
    Ok(EncodedBlob {
        id,
        kind,
        raw_len,
        stored: buf,
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
    let mut out = Vec::new();
    decode_into(
        crypto,
        where_,
        (kind, id, raw_len, crc32),
        &mut stored.to_vec(),
        &mut out,
    )?;
    Ok(out)
}

/// [`decode`] without allocating: opens `stored` in place (its contents are destroyed) and
/// leaves exactly the blob's bytes in `out` (whose capacity is reused).
/// `what` = kind, id, raw length and CRC32 as the index records them.
pub(crate) fn decode_into(
    crypto: &Crypto,
    where_: &str,
    what: (BlobKind, &BlobId, u32, u32),
    stored: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let (kind, id, raw_len, crc32) = what;
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
        .open_in_place(where_, &aad(kind, id), stored)
        .map_err(|e| corrupt(e.to_string()))?;
    let Some((&codec, body)) = plain.split_first() else {
        return Err(corrupt("empty plaintext (no codec byte)".into()));
    };
    let raw = raw_len as usize;
    match codec {
        CODEC_RAW => {
            if body.len() != raw {
                return Err(corrupt(format!(
                    "stored raw {} bytes, index says {raw}",
                    body.len()
                )));
            }
            out.clear();
            out.extend_from_slice(body);
        }
        CODEC_LZ4 => {
            // Decompress into exactly the recorded length: a hostile block cannot make us
            // use more than MAX_BLOB_RAW. Resizing a reused buffer only zeroes new bytes.
            out.resize(raw, 0);
            let n = lz4_flex::block::decompress_into(body, out)
                .map_err(|e| corrupt(format!("lz4: {e}")))?;
            if n != raw {
                return Err(corrupt(format!("decompressed {n} bytes, index says {raw}")));
            }
        }
        other => return Err(corrupt(format!("unknown codec {other}"))),
    }
    let again = BlobId(crypto.chunk_id(out));
    if &again != id {
        return Err(corrupt(format!("content hashes to {again}")));
    }
    Ok(())
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

    /// Deterministic noise: incompressible for lz4.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        cairn_testkit::random_bytes(seed, n)
    }

    /// Blobs of every kind the encoder treats differently: incompressible (stored raw), one
    /// repeated byte, short-period text, tiny, and empty.
    fn sample_blobs() -> [Vec<u8>; 5] {
        [
            noise(300_000, 9),
            vec![5u8; 70_000],
            b"abc".repeat(40_000),
            noise(100, 4),
            Vec::new(),
        ]
    }

    #[test]
    fn probe_skips_noise_and_keeps_text() {
        assert!(!worth_compressing(&noise(256 << 10, 1)));
        let text: Vec<u8> = b"cairn backs up virtual machines. ".repeat(8000);
        assert!(worth_compressing(&text));
        // Noise with a compressible tail the probes see: tried.
        let mut mixed = noise(128 << 10, 2);
        mixed.extend(std::iter::repeat_n(7u8, 128 << 10));
        assert!(worth_compressing(&mixed));
        assert!(
            worth_compressing(&noise(1000, 3)),
            "small blobs are always tried"
        );
    }

    #[test]
    fn reused_buffers_give_the_same_blobs() {
        let c = Crypto::none();
        let s = c.sealer().unwrap();
        let inputs = sample_blobs();
        let mut buf = vec![0xAB; 500_000];
        let mut out = vec![0xCD; 1_000_000];
        for d in &inputs {
            let id = BlobId(c.chunk_id(d));
            let fresh = encode(&s, BlobKind::Data, id, d).unwrap();
            let reused = encode_into(&s, BlobKind::Data, id, d, std::mem::take(&mut buf)).unwrap();
            assert_eq!(fresh, reused);
            let mut stored = reused.stored.clone();
            decode_into(
                &c,
                "p",
                (BlobKind::Data, &id, reused.raw_len, reused.crc32),
                &mut stored,
                &mut out,
            )
            .unwrap();
            assert_eq!(&out, d);
            buf = reused.stored;
        }
        // Noise is stored raw (codec byte 0) without a full compression pass.
        let d = noise(300_000, 9);
        let e = encode(&s, BlobKind::Data, BlobId(c.chunk_id(&d)), &d).unwrap();
        assert_eq!(e.stored[0], CODEC_RAW);
    }

    /// Puts `d` into a poisoned, reused buffer the way a backup reader does.
    fn chunk_in(s: &Sealer, mut buf: Vec<u8>, d: &[u8]) -> Vec<u8> {
        buf.fill(0xA5);
        let r = chunk_buffer(s, &mut buf, d.len());
        buf[r].copy_from_slice(d);
        buf
    }

    #[test]
    fn in_place_encoding_equals_encode() {
        let c = Crypto::none();
        let s = c.sealer().unwrap();
        let inputs = sample_blobs();
        // Buffers of every length, trading places as a backup's pool makes them.
        let (mut a, mut b) = (vec![0u8; 3], vec![0u8; 600_000]);
        for d in inputs.iter().chain(inputs.iter().rev()) {
            let id = BlobId(c.chunk_id(d));
            let fresh = encode(&s, BlobKind::Data, id, d).unwrap();
            let chunk = chunk_in(&s, std::mem::take(&mut a), d);
            let (e, spare) =
                encode_in_place(&s, BlobKind::Data, id, chunk, std::mem::take(&mut b)).unwrap();
            assert_eq!(fresh, e);
            (a, b) = (spare, e.stored);
        }
        // No room for the prefix: an error, not a panic.
        assert!(
            encode_in_place(&s, BlobKind::Data, BlobId([0; 32]), Vec::new(), Vec::new()).is_err()
        );
    }

    #[test]
    fn encrypted_in_place_round_trip() {
        let c = Crypto::new(cairn_crypto::RepoCrypto::new(
            &cairn_crypto::MasterKey::from_bytes([3; 32]),
        ));
        let s = c.sealer().unwrap();
        let (mut a, mut b) = (Vec::new(), vec![7u8; 9]);
        for d in [
            b"xyz".repeat(30_000),
            noise(200_000, 5),
            vec![1u8; 10],
            noise(262_144, 6),
        ] {
            let id = BlobId(c.chunk_id(&d));
            let chunk = chunk_in(&s, std::mem::take(&mut a), &d);
            let cap = chunk.capacity();
            let (e, spare) =
                encode_in_place(&s, BlobKind::Data, id, chunk, std::mem::take(&mut b)).unwrap();
            if e.stored[s.header_len()] == CODEC_RAW {
                // Sealed where it was read: the tag fitted, nothing was reallocated.
                assert_eq!(e.stored.capacity(), cap);
            }
            assert!(e.stored.len() as u64 <= max_stored(e.raw_len, c.overhead()));
            let back = decode(&c, "p", BlobKind::Data, &id, e.raw_len, e.crc32, &e.stored).unwrap();
            assert_eq!(back, d);
            (a, b) = (spare, e.stored);
        }
    }

    #[test]
    fn encrypted_round_trip_through_reused_buffers() {
        let c = Crypto::new(cairn_crypto::RepoCrypto::new(
            &cairn_crypto::MasterKey::from_bytes([3; 32]),
        ));
        let s = c.sealer().unwrap();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for d in [b"xyz".repeat(30_000), noise(200_000, 5), vec![1u8; 10]] {
            let id = BlobId(c.chunk_id(&d));
            let e = encode_into(&s, BlobKind::Data, id, &d, std::mem::take(&mut buf)).unwrap();
            assert!(e.stored.len() as u64 <= max_stored(e.raw_len, c.overhead()));
            let back = decode(&c, "p", BlobKind::Data, &id, e.raw_len, e.crc32, &e.stored).unwrap();
            assert_eq!(back, d);
            let mut st = e.stored.clone();
            decode_into(
                &c,
                "p",
                (BlobKind::Data, &id, e.raw_len, e.crc32),
                &mut st,
                &mut out,
            )
            .unwrap();
            assert_eq!(out, d);
            // Wrong kind in the associated data: refused.
            let mut st = e.stored.clone();
            assert!(decode_into(
                &c,
                "p",
                (BlobKind::Meta, &id, e.raw_len, e.crc32),
                &mut st,
                &mut out
            )
            .is_err());
            buf = e.stored;
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
