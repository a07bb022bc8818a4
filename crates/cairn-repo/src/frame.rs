//! The frame every repository file shares (see `docs/formats/repository.md`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic, one per file type |
//! | 8 | 2 | format version, u16 LE (1) |
//! | 10 | 2 | flags, u16 LE (bit 0: payload sealed; other bits must be 0) |
//! | 12 | 8 | payload length, u64 LE (= file length - 24) |
//! | 20 | 4 | CRC32 (IEEE, crc32fast) of bytes 0..20 followed by the payload |
//! | 24 | n | payload |

use crate::{Error, Result};

/// Header length.
pub const HEADER_LEN: usize = 24;
/// Format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Flag bit: the payload is sealed (encrypted and authenticated).
pub const FLAG_SEALED: u16 = 1;

/// File types and their magics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `config`.
    Config,
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Manifest,
    /// `packs/xx/<id>`.
    Pack,
}

impl FileKind {
    /// The eight magic bytes.
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Config => b"CAIRNCFG",
            FileKind::Index => b"CAIRNIDX",
            FileKind::Manifest => b"CAIRNSNP",
            FileKind::Pack => b"CAIRNPAK",
        }
    }

    fn magic_str(self) -> &'static str {
        match self {
            FileKind::Config => "CAIRNCFG",
            FileKind::Index => "CAIRNIDX",
            FileKind::Manifest => "CAIRNSNP",
            FileKind::Pack => "CAIRNPAK",
        }
    }
}

pub(crate) fn crc(header20: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header20);
    h.update(payload);
    h.finalize()
}

/// Frames `payload`.
pub fn encode(kind: FileKind, sealed: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(if sealed { FLAG_SEALED } else { 0 }).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let c = crc(&out[..20], payload);
    out.extend_from_slice(&c.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flag bit 0.
    pub sealed: bool,
    /// Payload length.
    pub payload_len: u64,
    /// Stored CRC32.
    pub crc: u32,
}

/// Checks the fixed header fields of a file of `file_len` bytes (CRC not checked here).
pub fn parse_header(
    name: &str,
    kind: FileKind,
    head: &[u8],
    file_len: u64,
    max_payload: u64,
) -> Result<Header> {
    if head.len() < HEADER_LEN {
        return Err(Error::Truncated {
            name: name.to_string(),
            len: head.len() as u64,
            need: HEADER_LEN as u64,
        });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&head[..8]);
    if &magic != kind.magic() {
        return Err(Error::BadMagic {
            name: name.to_string(),
            offset: 0,
            found: magic,
            expected: kind.magic_str(),
        });
    }
    let version = cairn_le::u16(head, 8);
    if version != VERSION {
        return Err(Error::Unsupported {
            name: name.to_string(),
            offset: 8,
            field: "format version",
            found: u64::from(version),
        });
    }
    let flags = cairn_le::u16(head, 10);
    if flags & !FLAG_SEALED != 0 {
        return Err(Error::Unsupported {
            name: name.to_string(),
            offset: 10,
            field: "flags",
            found: u64::from(flags),
        });
    }
    let payload_len = cairn_le::u64(head, 12);
    let expect = file_len.saturating_sub(HEADER_LEN as u64);
    if payload_len != expect {
        return Err(Error::BadLength {
            name: name.to_string(),
            offset: 12,
            field: "payload length",
            found: payload_len,
            expected: format!("{expect} (file length - {HEADER_LEN})"),
        });
    }
    if payload_len > max_payload {
        return Err(Error::BadLength {
            name: name.to_string(),
            offset: 12,
            field: "payload length",
            found: payload_len,
            expected: format!("at most {max_payload}"),
        });
    }
    Ok(Header {
        sealed: flags & FLAG_SEALED != 0,
        payload_len,
        crc: cairn_le::u32(head, 20),
    })
}

/// Checks a whole framed file and returns (sealed flag, payload).
pub fn decode<'a>(
    name: &str,
    kind: FileKind,
    file: &'a [u8],
    max_payload: u64,
) -> Result<(bool, &'a [u8])> {
    let h = parse_header(name, kind, file, file.len() as u64, max_payload)?;
    let payload = &file[HEADER_LEN..];
    let computed = crc(&file[..20], payload);
    if computed != h.crc {
        return Err(Error::Checksum {
            name: name.to_string(),
            stored: h.crc,
            computed,
        });
    }
    Ok((h.sealed, payload))
}

/// Little-endian field readers over buffers whose length the caller checked.
pub(crate) mod cairn_le {
    pub(crate) fn u16(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([b[off], b[off + 1]])
    }
    pub(crate) fn u32(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }
    pub(crate) fn u64(b: &[u8], off: usize) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[off..off + 8]);
        u64::from_le_bytes(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_field_is_checked() {
        let good = encode(FileKind::Index, false, b"payload");
        assert_eq!(
            decode("i", FileKind::Index, &good, 100).unwrap(),
            (false, &b"payload"[..])
        );
        assert!(matches!(
            decode("i", FileKind::Manifest, &good, 100),
            Err(Error::BadMagic { offset: 0, .. })
        ));
        let mut v = good.clone();
        v[8] = 2;
        assert!(matches!(
            decode("i", FileKind::Index, &v, 100),
            Err(Error::Unsupported { offset: 8, .. })
        ));
        let mut v = good.clone();
        v[10] = 4;
        assert!(matches!(
            decode("i", FileKind::Index, &v, 100),
            Err(Error::Unsupported { offset: 10, .. })
        ));
        let mut v = good.clone();
        v[12] = 99;
        assert!(matches!(
            decode("i", FileKind::Index, &v, 100),
            Err(Error::BadLength { offset: 12, .. })
        ));
        assert!(matches!(
            decode("i", FileKind::Index, &good, 3),
            Err(Error::BadLength { offset: 12, .. })
        ));
        let mut v = good.clone();
        *v.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode("i", FileKind::Index, &v, 100),
            Err(Error::Checksum { .. })
        ));
        assert!(matches!(
            decode("i", FileKind::Index, &good[..10], 100),
            Err(Error::Truncated { .. })
        ));
        // Truncating the payload breaks the length check.
        assert!(decode("i", FileKind::Index, &good[..good.len() - 1], 100).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2000), sealed in any::<bool>()) {
            let f = encode(FileKind::Manifest, sealed, &payload);
            let (s, p) = decode("m", FileKind::Manifest, &f, 1 << 20).unwrap();
            prop_assert_eq!(s, sealed);
            prop_assert_eq!(p, &payload[..]);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode("x", FileKind::Config, &bytes, 1 << 20);
        }
    }
}
