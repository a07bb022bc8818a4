//! Name decoding: OEM (code page 850) short names, VFAT long-name checksums, exFAT up-case
//! tables and case folding for lookups.

/// Code page 850 (DOS Latin-1), bytes 0x80..=0xFF. mtools writes short names in CP850 by
/// default, and it is the usual OEM code page of Western European Windows installs; CP437
/// differs only in a few symbols of this half, so CP850 is the better guess for names.
const CP850_HIGH: [char; 128] = [
    '\u{00c7}', '\u{00fc}', '\u{00e9}', '\u{00e2}', '\u{00e4}', '\u{00e0}', '\u{00e5}', '\u{00e7}',
    '\u{00ea}', '\u{00eb}', '\u{00e8}', '\u{00ef}', '\u{00ee}', '\u{00ec}', '\u{00c4}', '\u{00c5}',
    '\u{00c9}', '\u{00e6}', '\u{00c6}', '\u{00f4}', '\u{00f6}', '\u{00f2}', '\u{00fb}', '\u{00f9}',
    '\u{00ff}', '\u{00d6}', '\u{00dc}', '\u{00f8}', '\u{00a3}', '\u{00d8}', '\u{00d7}', '\u{0192}',
    '\u{00e1}', '\u{00ed}', '\u{00f3}', '\u{00fa}', '\u{00f1}', '\u{00d1}', '\u{00aa}', '\u{00ba}',
    '\u{00bf}', '\u{00ae}', '\u{00ac}', '\u{00bd}', '\u{00bc}', '\u{00a1}', '\u{00ab}', '\u{00bb}',
    '\u{2591}', '\u{2592}', '\u{2593}', '\u{2502}', '\u{2524}', '\u{00c1}', '\u{00c2}', '\u{00c0}',
    '\u{00a9}', '\u{2563}', '\u{2551}', '\u{2557}', '\u{255d}', '\u{00a2}', '\u{00a5}', '\u{2510}',
    '\u{2514}', '\u{2534}', '\u{252c}', '\u{251c}', '\u{2500}', '\u{253c}', '\u{00e3}', '\u{00c3}',
    '\u{255a}', '\u{2554}', '\u{2569}', '\u{2566}', '\u{2560}', '\u{2550}', '\u{256c}', '\u{00a4}',
    '\u{00f0}', '\u{00d0}', '\u{00ca}', '\u{00cb}', '\u{00c8}', '\u{0131}', '\u{00cd}', '\u{00ce}',
    '\u{00cf}', '\u{2518}', '\u{250c}', '\u{2588}', '\u{2584}', '\u{00a6}', '\u{00cc}', '\u{2580}',
    '\u{00d3}', '\u{00df}', '\u{00d4}', '\u{00d2}', '\u{00f5}', '\u{00d5}', '\u{00b5}', '\u{00fe}',
    '\u{00de}', '\u{00da}', '\u{00db}', '\u{00d9}', '\u{00fd}', '\u{00dd}', '\u{00af}', '\u{00b4}',
    '\u{00ad}', '\u{00b1}', '\u{2017}', '\u{00be}', '\u{00b6}', '\u{00a7}', '\u{00f7}', '\u{00b8}',
    '\u{00b0}', '\u{00a8}', '\u{00b7}', '\u{00b9}', '\u{00b3}', '\u{00b2}', '\u{25a0}', '\u{00a0}',
];

/// Decodes OEM bytes: ASCII as is, 0x80..=0xFF through [`CP850_HIGH`], control bytes as
/// `\xNN` escapes, a backslash as `\\` (the escaping of [`cairn_vfs::escape_name_bytes`]).
pub(crate) fn decode_oem(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7E => s.push(char::from(b)),
            0x80..=0xFF => s.push(CP850_HIGH[usize::from(b - 0x80)]),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// NT case flag (byte 0x0C of a short entry): the base name is lower case.
const NT_LOWER_BASE: u8 = 0x08;
/// NT case flag: the extension is lower case.
const NT_LOWER_EXT: u8 = 0x10;

/// The display name of an 8.3 entry: base and extension trimmed of padding, joined by a
/// dot, 0x05 in the first byte read as 0xE5. Where the NT flags say "lower case", the part is
/// lower-cased with Unicode rules after OEM decoding, as Windows (and `mdir`) show it;
/// `mcopy` extraction lower-cases ASCII letters only.
pub(crate) fn short_name(name11: &[u8; 11], nt_flags: u8) -> String {
    let mut base: Vec<u8> = name11[..8].to_vec();
    if base[0] == 0x05 {
        base[0] = 0xE5;
    }
    while base.last() == Some(&b' ') {
        base.pop();
    }
    let mut ext: Vec<u8> = name11[8..].to_vec();
    while ext.last() == Some(&b' ') {
        ext.pop();
    }
    let mut s = decode_oem(&base);
    if nt_flags & NT_LOWER_BASE != 0 {
        s = s.to_lowercase();
    }
    if !ext.is_empty() {
        s.push('.');
        let e = decode_oem(&ext);
        s.push_str(&if nt_flags & NT_LOWER_EXT != 0 {
            e.to_lowercase()
        } else {
            e
        });
    }
    s
}

/// The VFAT checksum of an 8.3 name, stored in each long-name entry.
pub(crate) fn lfn_checksum(name11: &[u8; 11]) -> u8 {
    name11
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// An exFAT up-case table expanded to one entry per UTF-16 code unit.
#[derive(Clone)]
pub(crate) struct Upcase(Vec<u16>);

impl std::fmt::Debug for Upcase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upcase(..)")
    }
}

impl Upcase {
    /// The mapping used when a volume has no (valid) table: simple Unicode upper case of
    /// every BMP character that maps to one BMP character.
    pub(crate) fn builtin() -> Upcase {
        let mut t: Vec<u16> = (0..=u16::MAX).collect();
        for (i, slot) in t.iter_mut().enumerate() {
            let Some(c) = u32::try_from(i).ok().and_then(char::from_u32) else {
                continue;
            };
            let mut up = c.to_uppercase();
            if let (Some(u), None) = (up.next(), up.next()) {
                if let Ok(v) = u16::try_from(u32::from(u)) {
                    *slot = v;
                }
            }
        }
        Upcase(t)
    }

    /// Expands a stored table: a 0xFFFF unit followed by N means "the next N code units map
    /// to themselves" (the compressed form exFAT formatters write).
    pub(crate) fn from_table(raw: &[u8]) -> Upcase {
        let mut t: Vec<u16> = (0..=u16::MAX).collect();
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let mut idx = 0usize;
        let mut i = 0usize;
        while i < units.len() && idx < t.len() {
            if units[i] == 0xFFFF && i + 1 < units.len() {
                idx = idx.saturating_add(usize::from(units[i + 1]));
                i += 2;
            } else {
                t[idx] = units[i];
                idx += 1;
                i += 1;
            }
        }
        Upcase(t)
    }

    /// Upper-cases a UTF-16 string unit by unit.
    pub(crate) fn fold(&self, units: impl IntoIterator<Item = u16>) -> Vec<u16> {
        units.into_iter().map(|u| self.0[usize::from(u)]).collect()
    }
}

/// The exFAT up-case table checksum (TableChecksum of the up-case entry).
pub(crate) fn table_checksum(raw: &[u8]) -> u32 {
    raw.iter().fold(0u32, |sum, &b| {
        sum.rotate_right(1).wrapping_add(u32::from(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name(b"README  TXT", 0), "README.TXT");
        assert_eq!(short_name(b"LOWER   TXT", 0x18), "lower.txt");
        assert_eq!(short_name(b"MAKEFILE   ", 0x08), "makefile");
        assert_eq!(short_name(b"\x05BC        ", 0), "\u{d5}BC"); // 0xE5 is Õ in CP850
        assert_eq!(short_name(b"\x81BER    TXT", 0), "\u{fc}BER.TXT");
        assert_eq!(short_name(b"\x9aNICODE    ", 0x08), "\u{fc}nicode");
    }

    #[test]
    fn checksum_matches_known_value() {
        // Value computed by the algorithm in the Microsoft FAT specification, section 7.2.
        let mut sum = 0u8;
        for &b in b"FILENAMETXT" {
            sum = (if sum & 1 != 0 { 0x80u8 } else { 0 })
                .wrapping_add(sum >> 1)
                .wrapping_add(b);
        }
        assert_eq!(lfn_checksum(b"FILENAMETXT"), sum);
    }

    #[test]
    fn upcase_compressed_table() {
        // identity for 0x00..0x61, then 'a' -> 'A', 'b' -> 'B'
        let mut raw = Vec::new();
        for u in [0xFFFFu16, 0x61, 0x41, 0x42] {
            raw.extend_from_slice(&u.to_le_bytes());
        }
        let t = Upcase::from_table(&raw);
        assert_eq!(t.fold("abc".encode_utf16()), vec![0x41, 0x42, 0x63]);
        assert_eq!(
            Upcase::builtin().fold("ßé".encode_utf16()),
            vec![0xDF, 0xC9]
        );
    }
}
