//! Pack files: many blobs in one object (see `docs/formats/repository.md`).
//!
//! ```text
//! [frame header, 24 bytes, magic CAIRNPAK, CRC over header[0..20] + everything after it]
//! [blob 0][blob 1]...                  stored blobs, back to back, from offset 24
//! [directory]                          postcard PackDirectory, sealed when encrypted
//! [dir_len u32 LE][dir_crc32 u32 LE][magic "CAIRNPKT"]   16-byte trailer
//! ```
//! The directory repeats what the index says about the pack, so a lost index can be rebuilt
//! from the packs themselves.

use serde::{Deserialize, Serialize};

use crate::blob::{max_stored, EncodedBlob, MAX_BLOB_RAW};
use crate::crypto::{Crypto, Sealer};
use crate::frame::{self, cairn_le, FileKind, HEADER_LEN};
use crate::{BlobId, BlobKind, Error, NewObject, ObjectId, Result};

/// Largest pack accepted (offsets in index entries are u32): 1 GiB.
pub const MAX_PACK_BYTES: u64 = 1 << 30;
/// Most blobs one pack may list: a 1 GiB pack of 4 KiB chunks, with slack.
pub const MAX_PACK_BLOBS: usize = 1 << 19;
/// Trailer length.
pub const TRAILER_LEN: usize = 16;
/// Trailer magic.
pub const TRAILER_MAGIC: &[u8; 8] = b"CAIRNPKT";

/// Where one blob sits in a pack (an entry of a pack directory or of an index file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Content id.
    pub id: BlobId,
    /// [`BlobKind`] byte.
    pub kind: u8,
    /// Offset of the stored blob in the pack file.
    pub offset: u32,
    /// Stored length.
    pub length: u32,
    /// Length after decompression.
    pub raw_length: u32,
    /// CRC32 of the stored bytes.
    pub crc32: u32,
}

impl BlobEntry {
    /// Checks the entry against the pack it claims to be in (`data_end`: where the blob
    /// region of the pack ends) and the seal overhead of the repository.
    pub(crate) fn validate(&self, name: &str, data_end: u64, overhead: usize) -> Result<BlobKind> {
        let bad = |why: String| Error::malformed(name, format!("blob {}: {why}", self.id));
        let kind = BlobKind::from_byte(self.kind)
            .ok_or_else(|| bad(format!("unknown kind {}", self.kind)))?;
        if self.raw_length > MAX_BLOB_RAW {
            return Err(bad(format!(
                "raw length {} exceeds {MAX_BLOB_RAW}",
                self.raw_length
            )));
        }
        if self.length == 0 || u64::from(self.length) > max_stored(self.raw_length, overhead) {
            return Err(bad(format!(
                "stored length {} impossible for raw length {}",
                self.length, self.raw_length
            )));
        }
        let end = u64::from(self.offset) + u64::from(self.length);
        if u64::from(self.offset) < HEADER_LEN as u64 || end > data_end {
            return Err(bad(format!(
                "range {}+{} outside the blob region [24, {data_end})",
                self.offset, self.length
            )));
        }
        Ok(kind)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct PackDirectory {
    entries: Vec<BlobEntry>,
}

fn dir_aad(pack: &ObjectId) -> Vec<u8> {
    let mut a = FileKind::Pack.magic().to_vec();
    a.extend_from_slice(&pack.0);
    a
}

/// Builds one pack in memory.
#[derive(Debug)]
pub(crate) struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackBuilder {
    pub(crate) fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.resize(HEADER_LEN, 0);
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    /// Bytes so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a blob; the caller keeps the pack under [`MAX_PACK_BYTES`].
    pub(crate) fn add(&mut self, b: &EncodedBlob) -> Result<()> {
        let offset =
            u32::try_from(self.buf.len()).map_err(|_| Error::Invalid("pack too large".into()))?;
        let length =
            u32::try_from(b.stored.len()).map_err(|_| Error::Invalid("blob too large".into()))?;
        self.buf.extend_from_slice(&b.stored);
        self.entries.push(BlobEntry {
            id: b.id,
            kind: b.kind.byte(),
            offset,
            length,
            raw_length: b.raw_len,
            crc32: b.crc32,
        });
        Ok(())
    }

    /// Appends directory and trailer, fills the header; returns the file and its entries.
    pub(crate) fn finish(
        mut self,
        sealer: &Sealer,
        sealed: bool,
        id: &ObjectId,
    ) -> Result<(Vec<u8>, Vec<BlobEntry>)> {
        let tail = pack_tail(&self.entries, sealer, sealed, id)?;
        self.buf.extend_from_slice(&tail);
        let mut payload = crc32fast::Hasher::new();
        payload.update(&self.buf[HEADER_LEN..]);
        let head = pack_header(sealed, (self.buf.len() - HEADER_LEN) as u64, &payload);
        self.buf[..HEADER_LEN].copy_from_slice(&head);
        Ok((self.buf, self.entries))
    }
}

/// Directory (sealed when `sealed`) and 16-byte trailer of a pack listing `entries`.
fn pack_tail(
    entries: &[BlobEntry],
    sealer: &Sealer,
    sealed: bool,
    id: &ObjectId,
) -> Result<Vec<u8>> {
    let dir = postcard::to_stdvec(&PackDirectory {
        entries: entries.to_vec(),
    })
    .map_err(|e| Error::Invalid(format!("postcard: {e}")))?;
    let mut tail = if sealed {
        crate::crypto::seal(sealer, &dir_aad(id), &dir)?
    } else {
        dir
    };
    let dir_len =
        u32::try_from(tail.len()).map_err(|_| Error::Invalid("pack directory too large".into()))?;
    let dir_crc = crc32fast::hash(&tail);
    tail.extend_from_slice(&dir_len.to_le_bytes());
    tail.extend_from_slice(&dir_crc.to_le_bytes());
    tail.extend_from_slice(TRAILER_MAGIC);
    Ok(tail)
}

/// The 24-byte frame header of a pack whose payload (everything after the header) has
/// `payload_len` bytes and CRC state `payload`.
fn pack_header(sealed: bool, payload_len: u64, payload: &crc32fast::Hasher) -> [u8; HEADER_LEN] {
    let mut head = [0u8; HEADER_LEN];
    head[..8].copy_from_slice(FileKind::Pack.magic());
    head[8..10].copy_from_slice(&frame::VERSION.to_le_bytes());
    head[10..12].copy_from_slice(&(if sealed { frame::FLAG_SEALED } else { 0 }).to_le_bytes());
    head[12..20].copy_from_slice(&payload_len.to_le_bytes());
    // CRC(header[0..20] || payload), from the payload's CRC without reading it again.
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..20]);
    crc.combine(payload);
    head[20..24].copy_from_slice(&crc.finalize().to_le_bytes());
    head
}

/// Writes one pack straight into a backend object: each blob's stored bytes are written once,
/// from the encoder's buffer, and the frame CRC is combined from the blobs' own CRC32s (no
/// second pass over the data). Only the directory stays in memory.
#[derive(Debug)]
pub(crate) struct PackStream {
    obj: NewObject,
    entries: Vec<BlobEntry>,
    /// CRC state of everything after the header.
    payload: crc32fast::Hasher,
}

impl PackStream {
    /// Starts a pack in `obj` (fresh, empty).
    pub(crate) fn new(mut obj: NewObject) -> Result<Self> {
        obj.write(&[0u8; HEADER_LEN])?;
        Ok(PackStream {
            obj,
            entries: Vec::new(),
            payload: crc32fast::Hasher::new(),
        })
    }

    /// Bytes so far.
    pub(crate) fn len(&self) -> u64 {
        self.obj.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a blob; the caller keeps the pack under [`MAX_PACK_BYTES`].
    pub(crate) fn add(&mut self, b: &EncodedBlob) -> Result<()> {
        let offset =
            u32::try_from(self.obj.len()).map_err(|_| Error::Invalid("pack too large".into()))?;
        let length =
            u32::try_from(b.stored.len()).map_err(|_| Error::Invalid("blob too large".into()))?;
        if self.entries.len() >= MAX_PACK_BLOBS {
            return Err(Error::Invalid(format!("pack of {MAX_PACK_BLOBS} blobs")));
        }
        self.obj.write(&b.stored)?;
        self.payload
            .combine(&crc32fast::Hasher::new_with_initial_len(
                b.crc32,
                u64::from(length),
            ));
        self.entries.push(BlobEntry {
            id: b.id,
            kind: b.kind.byte(),
            offset,
            length,
            raw_length: b.raw_len,
            crc32: b.crc32,
        });
        Ok(())
    }

    /// Appends directory and trailer and writes the header; returns the object (to commit)
    /// and its entries.
    pub(crate) fn finish(
        mut self,
        sealer: &Sealer,
        sealed: bool,
        id: &ObjectId,
    ) -> Result<(NewObject, Vec<BlobEntry>)> {
        let tail = pack_tail(&self.entries, sealer, sealed, id)?;
        self.obj.write(&tail)?;
        self.payload.update(&tail);
        let payload_len = self.obj.len() - HEADER_LEN as u64;
        let head = pack_header(sealed, payload_len, &self.payload);
        self.obj.write_at(0, &head)?;
        // Written out here, on the packer's thread: a pack waiting for the committer keeps
        // no staging buffers.
        self.obj.close()?;
        Ok((self.obj, self.entries))
    }
}

/// Parses and checks a whole pack file: header, CRC, trailer, directory, every entry's
/// bounds. Returns the directory entries.
pub(crate) fn parse_pack(
    name: &str,
    id: &ObjectId,
    file: &[u8],
    crypto: &Crypto,
) -> Result<Vec<BlobEntry>> {
    if file.len() as u64 > MAX_PACK_BYTES {
        return Err(Error::BadLength {
            name: name.to_string(),
            offset: 0,
            field: "pack size",
            found: file.len() as u64,
            expected: format!("at most {MAX_PACK_BYTES}"),
        });
    }
    let (sealed, _) = frame::decode(name, FileKind::Pack, file, MAX_PACK_BYTES)?;
    parse_trailer(name, id, file, sealed, crypto)
}

/// Reads the directory through the trailer (header CRC is the caller's business).
pub(crate) fn parse_trailer(
    name: &str,
    id: &ObjectId,
    file: &[u8],
    sealed: bool,
    crypto: &Crypto,
) -> Result<Vec<BlobEntry>> {
    let min = HEADER_LEN + TRAILER_LEN;
    if file.len() < min {
        return Err(Error::Truncated {
            name: name.to_string(),
            len: file.len() as u64,
            need: min as u64,
        });
    }
    let t = file.len() - TRAILER_LEN;
    if &file[t + 8..] != TRAILER_MAGIC {
        let mut found = [0u8; 8];
        found.copy_from_slice(&file[t + 8..]);
        return Err(Error::BadMagic {
            name: name.to_string(),
            offset: (t + 8) as u64,
            found,
            expected: "CAIRNPKT",
        });
    }
    let dir_len = cairn_le::u32(file, t) as usize;
    let dir_crc = cairn_le::u32(file, t + 4);
    if dir_len > t - HEADER_LEN {
        return Err(Error::BadLength {
            name: name.to_string(),
            offset: t as u64,
            field: "directory length",
            found: dir_len as u64,
            expected: format!("at most {}", t - HEADER_LEN),
        });
    }
    let dir_start = t - dir_len;
    let dir = &file[dir_start..t];
    let computed = crc32fast::hash(dir);
    if computed != dir_crc {
        return Err(Error::Checksum {
            name: format!("{name} directory"),
            stored: dir_crc,
            computed,
        });
    }
    let plain;
    let dir = if sealed {
        plain = crypto.open(name, &dir_aad(id), dir)?;
        &plain[..]
    } else {
        dir
    };
    let d: PackDirectory =
        postcard::from_bytes(dir).map_err(|e| Error::malformed(name, format!("directory: {e}")))?;
    if d.entries.len() > MAX_PACK_BLOBS {
        return Err(Error::malformed(
            name,
            format!("{} blobs, at most {MAX_PACK_BLOBS}", d.entries.len()),
        ));
    }
    for e in &d.entries {
        e.validate(name, dir_start as u64, crypto.overhead())?;
    }
    Ok(d.entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob;
    use proptest::prelude::*;

    fn build(blobs: &[Vec<u8>]) -> (ObjectId, Vec<u8>, Vec<BlobEntry>) {
        let c = Crypto::none();
        let s = c.sealer().unwrap();
        let mut p = PackBuilder::new(0);
        for b in blobs {
            let e = blob::encode(&s, BlobKind::Data, BlobId(c.chunk_id(b)), b).unwrap();
            p.add(&e).unwrap();
        }
        let id = ObjectId([9; 32]);
        let (file, entries) = p.finish(&s, false, &id).unwrap();
        (id, file, entries)
    }

    proptest! {
        #[test]
        fn round_trip(blobs in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..3000), 0..8)) {
            let (id, file, entries) = build(&blobs);
            let c = Crypto::none();
            let parsed = parse_pack("p", &id, &file, &c).unwrap();
            prop_assert_eq!(&parsed, &entries);
            for (e, b) in entries.iter().zip(&blobs) {
                let stored = &file[e.offset as usize..][..e.length as usize];
                let back = blob::decode(&c, "p", BlobKind::Data, &e.id, e.raw_length, e.crc32, stored).unwrap();
                prop_assert_eq!(&back, b);
            }
        }

        #[test]
        fn truncation_is_an_error(cut in 0usize..200) {
            let (id, file, _) = build(&[vec![1u8; 100], vec![2u8; 50]]);
            let c = Crypto::none();
            let cut = cut.min(file.len() - 1);
            prop_assert!(parse_pack("p", &id, &file[..cut], &c).is_err());
        }
    }

    proptest! {
        #[test]
        fn stream_writes_what_the_builder_writes(
            blobs in proptest::collection::vec(proptest::collection::vec(0u8..3, 1..3000), 0..8),
            sealed in any::<bool>(),
        ) {
            use crate::Backend;
            let c = if sealed {
                Crypto::new(cairn_crypto::RepoCrypto::new(&cairn_crypto::MasterKey::from_bytes([4; 32])))
            } else {
                Crypto::none()
            };
            let s = c.sealer().unwrap();
            let mut built = PackBuilder::new(0);
            let b = crate::MemoryBackend::new();
            let mut st = PackStream::new(b.create("packs/x").unwrap()).unwrap();
            for d in &blobs {
                let e = blob::encode(&s, BlobKind::Data, BlobId(c.chunk_id(d)), d).unwrap();
                built.add(&e).unwrap();
                st.add(&e).unwrap();
                prop_assert_eq!(st.len(), built.len() as u64);
            }
            let id = ObjectId([3; 32]);
            // Both seal their directory with the same sealer: compare the parsed forms, and
            // the streamed file must parse (header CRC included).
            let (file, entries) = built.finish(&s, sealed, &id).unwrap();
            let (obj, entries2) = st.finish(&s, sealed, &id).unwrap();
            prop_assert_eq!(&entries, &entries2);
            b.commit(obj).unwrap();
            let streamed = b.get("packs/x").unwrap();
            prop_assert_eq!(streamed.len(), file.len());
            prop_assert_eq!(&streamed[..HEADER_LEN - 4], &file[..HEADER_LEN - 4]);
            let parsed = parse_pack("p", &id, &streamed, &c).unwrap();
            prop_assert_eq!(&parsed, &entries);
            if !sealed {
                prop_assert_eq!(&streamed, &file);
            }
        }
    }

    #[test]
    fn flipped_bits_are_caught() {
        let (id, file, _) = build(&[vec![1u8; 100]]);
        let c = Crypto::none();
        for i in 0..file.len() {
            let mut v = file.clone();
            v[i] ^= 0x10;
            assert!(
                parse_pack("p", &id, &v, &c).is_err(),
                "flip at {i} unnoticed"
            );
        }
    }
}
