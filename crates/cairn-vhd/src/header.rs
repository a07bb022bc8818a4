//! The 1024-byte dynamic disk header ("cxsparse"), big-endian, and its parent locators.

use cairn_io::le::{bytes16, u32_be, u64_be};

use crate::footer::checksum;
use crate::Error;

/// Size of the dynamic header.
pub const HEADER_LEN: usize = 1024;
/// Cookie at offset 0 of the dynamic header.
pub const HEADER_COOKIE: &[u8; 8] = b"cxsparse";
/// Offset of the checksum field in the header.
const CHECKSUM_AT: usize = 36;
/// Offset of the 512-byte parent unicode name (UTF-16 BE).
const PARENT_NAME_AT: usize = 64;
/// Length of the parent unicode name field.
pub const PARENT_NAME_LEN: usize = 512;
/// Offset of the first of 8 parent locator entries, 24 bytes each.
const LOCATORS_AT: usize = 576;
/// Number of parent locator entries.
pub const LOCATOR_COUNT: usize = 8;

/// Platform code of a parent locator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlatformCode {
    /// `W2ru`: relative Windows path, UTF-16 LE.
    W2ru,
    /// `W2ku`: absolute Windows path, UTF-16 LE.
    W2ku,
    /// `MacX`: file:// URL, UTF-8.
    MacX,
    /// `Wi2r`: deprecated relative Windows path, ASCII.
    Wi2r,
    /// `Wi2k`: deprecated absolute Windows path, ASCII.
    Wi2k,
    /// `Mac `: a Mac OS alias blob; not decodable to a path.
    Mac,
}

impl PlatformCode {
    /// The four on-disk bytes.
    pub fn bytes(self) -> [u8; 4] {
        match self {
            PlatformCode::W2ru => *b"W2ru",
            PlatformCode::W2ku => *b"W2ku",
            PlatformCode::MacX => *b"MacX",
            PlatformCode::Wi2r => *b"Wi2r",
            PlatformCode::Wi2k => *b"Wi2k",
            PlatformCode::Mac => *b"Mac ",
        }
    }

    fn from_bytes(b: [u8; 4]) -> Option<Self> {
        [
            PlatformCode::W2ru,
            PlatformCode::W2ku,
            PlatformCode::MacX,
            PlatformCode::Wi2r,
            PlatformCode::Wi2k,
            PlatformCode::Mac,
        ]
        .into_iter()
        .find(|c| c.bytes() == b)
    }

    /// Hint priority: relative paths first, then absolute, URL, deprecated forms.
    pub(crate) fn priority(self) -> u8 {
        match self {
            PlatformCode::W2ru => 0,
            PlatformCode::W2ku => 1,
            PlatformCode::MacX => 2,
            PlatformCode::Wi2r => 3,
            PlatformCode::Wi2k => 4,
            PlatformCode::Mac => 5,
        }
    }
}

/// One parent locator entry (24 bytes) of the dynamic header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocatorEntry {
    /// Platform code (known ones only; unknown or zero entries are skipped).
    pub code: PlatformCode,
    /// Platform data space. The specification says sectors; Windows writes bytes. Not used
    /// for reading.
    pub data_space: u32,
    /// Length of the locator data in bytes.
    pub data_len: u32,
    /// File offset of the locator data.
    pub data_offset: u64,
}

/// A decoded, checksum-verified dynamic header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DynamicHeader {
    /// Offset of the BAT.
    pub table_offset: u64,
    /// Header version (0x0001_0000).
    pub header_version: u32,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Unique id of the parent (differencing disks).
    pub parent_unique_id: [u8; 16],
    /// Parent modification time, seconds since 2000-01-01 UTC.
    pub parent_timestamp: u32,
    /// Parent file name, decoded from UTF-16 BE (empty when none).
    pub parent_name: String,
    /// Parent locator entries with a known platform code, in slot order, with their slot.
    pub locators: Vec<(usize, LocatorEntry)>,
}

/// Decodes UTF-16 code units up to the first NUL, replacing invalid ones.
pub(crate) fn utf16_to_string(units: impl Iterator<Item = u16>) -> String {
    let units: Vec<u16> = units.take_while(|&u| u != 0).collect();
    String::from_utf16_lossy(&units)
}

impl DynamicHeader {
    /// Decodes and verifies a header read at file offset `offset`.
    pub fn decode(buf: &[u8; HEADER_LEN], offset: u64) -> Result<DynamicHeader, Error> {
        let mut cookie = [0u8; 8];
        cookie.copy_from_slice(&buf[0..8]);
        if &cookie != HEADER_COOKIE {
            return Err(Error::BadHeaderCookie {
                offset,
                found: cookie,
            });
        }
        let stored = u32_be(buf, CHECKSUM_AT);
        let computed = checksum(buf, CHECKSUM_AT);
        if stored != computed {
            return Err(Error::HeaderChecksum {
                offset,
                expected: computed,
                actual: stored,
            });
        }
        let name = &buf[PARENT_NAME_AT..PARENT_NAME_AT + PARENT_NAME_LEN];
        let parent_name = utf16_to_string(
            name.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        );
        let mut locators = Vec::new();
        for slot in 0..LOCATOR_COUNT {
            let e = &buf[LOCATORS_AT + slot * 24..LOCATORS_AT + slot * 24 + 24];
            let mut code = [0u8; 4];
            code.copy_from_slice(&e[0..4]);
            if let Some(code) = PlatformCode::from_bytes(code) {
                locators.push((
                    slot,
                    LocatorEntry {
                        code,
                        data_space: u32_be(e, 4),
                        data_len: u32_be(e, 8),
                        data_offset: u64_be(e, 16),
                    },
                ));
            }
        }
        Ok(DynamicHeader {
            table_offset: u64_be(buf, 16),
            header_version: u32_be(buf, 24),
            max_table_entries: u32_be(buf, 28),
            block_size: u32_be(buf, 32),
            parent_unique_id: bytes16(buf, 40),
            parent_timestamp: u32_be(buf, 56),
            parent_name,
            locators,
        })
    }

    /// Encodes the header with a freshly computed checksum. The parent name is truncated to
    /// the 256 UTF-16 units the field holds.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(HEADER_COOKIE);
        b[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        b[16..24].copy_from_slice(&self.table_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.header_version.to_be_bytes());
        b[28..32].copy_from_slice(&self.max_table_entries.to_be_bytes());
        b[32..36].copy_from_slice(&self.block_size.to_be_bytes());
        b[40..56].copy_from_slice(&self.parent_unique_id);
        b[56..60].copy_from_slice(&self.parent_timestamp.to_be_bytes());
        for (i, u) in self
            .parent_name
            .encode_utf16()
            .take(PARENT_NAME_LEN / 2)
            .enumerate()
        {
            b[PARENT_NAME_AT + 2 * i..PARENT_NAME_AT + 2 * i + 2].copy_from_slice(&u.to_be_bytes());
        }
        for &(slot, ref l) in self.locators.iter().filter(|(s, _)| *s < LOCATOR_COUNT) {
            let at = LOCATORS_AT + slot * 24;
            b[at..at + 4].copy_from_slice(&l.code.bytes());
            b[at + 4..at + 8].copy_from_slice(&l.data_space.to_be_bytes());
            b[at + 8..at + 12].copy_from_slice(&l.data_len.to_be_bytes());
            b[at + 16..at + 24].copy_from_slice(&l.data_offset.to_be_bytes());
        }
        let sum = checksum(&b, CHECKSUM_AT);
        b[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

/// Decodes locator data to a path string, per platform code.
pub(crate) fn decode_locator(code: PlatformCode, data: &[u8]) -> Option<String> {
    let s = match code {
        PlatformCode::W2ru | PlatformCode::W2ku => utf16_to_string(
            data.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        ),
        PlatformCode::Wi2r | PlatformCode::Wi2k => {
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            // Deprecated ASCII form; bytes above 0x7f are kept as Latin-1.
            data[..end].iter().map(|&b| char::from(b)).collect()
        }
        PlatformCode::MacX => {
            let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
            let url = String::from_utf8_lossy(&data[..end]).into_owned();
            let path = url
                .strip_prefix("file://localhost")
                .or_else(|| url.strip_prefix("file://"))
                .unwrap_or(&url);
            percent_decode(path)
        }
        PlatformCode::Mac => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Decodes %XX escapes of a URL path; malformed escapes are kept as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_decoding() {
        let w: Vec<u8> = ".\\p.vhd\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(
            decode_locator(PlatformCode::W2ru, &w).as_deref(),
            Some(".\\p.vhd")
        );
        assert_eq!(
            decode_locator(PlatformCode::MacX, b"file://localhost/a%20b/p.vhd\0").as_deref(),
            Some("/a b/p.vhd")
        );
        assert_eq!(
            decode_locator(PlatformCode::Wi2k, b"C:\\p.vhd\0\0").as_deref(),
            Some("C:\\p.vhd")
        );
        assert_eq!(decode_locator(PlatformCode::MacX, b"%4"), Some("%4".into()));
    }
}
