//! GUIDs as VHDX stores them (Microsoft mixed-endian) and as Cairn prints them.

use std::fmt;

/// A GUID in RFC 4122 byte order (as printed: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Decodes the on-disk form: the first three fields little-endian, the rest as is.
    pub fn from_disk(b: &[u8]) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&b[..16]);
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        Guid(g)
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, optionally in braces, any case.
    pub fn parse(s: &str) -> Option<Guid> {
        let s = s.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s);
        let hex: Vec<u8> = s.bytes().filter(|&c| c != b'-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return None;
        }
        let mut g = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let txt = std::str::from_utf8(pair).ok()?;
            g[i] = u8::from_str_radix(txt, 16).ok()?;
        }
        Some(Guid(g))
    }

    /// Whether every byte is zero.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A constant from its printed fields.
    pub(crate) const fn new(a: u32, b: u16, c: u16, d: [u8; 8]) -> Guid {
        let a = a.to_be_bytes();
        let b = b.to_be_bytes();
        let c = c.to_be_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn disk_order() {
        // BAT region GUID 2DC27766-F623-4200-9D64-115E9BFD4A08 as stored on disk.
        let disk = [
            0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd,
            0x4a, 0x08,
        ];
        let g = Guid::from_disk(&disk);
        assert_eq!(g.to_string(), "2dc27766-f623-4200-9d64-115e9bfd4a08");
        assert_eq!(
            g,
            Guid::new(
                0x2DC2_7766,
                0xF623,
                0x4200,
                [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08]
            )
        );
        assert_eq!(
            Guid::parse("{2DC27766-F623-4200-9D64-115E9BFD4A08}"),
            Some(g)
        );
        assert_eq!(Guid::parse("2DC27766F6234200-9D64-115E9BFD4A08"), None);
    }

    proptest! {
        #[test]
        fn print_parse_round_trip(b in any::<[u8; 16]>()) {
            let g = Guid(b);
            prop_assert_eq!(Guid::parse(&g.to_string()), Some(g));
            prop_assert_eq!(Guid::parse(&format!("{{{}}}", g.to_string().to_uppercase())), Some(g));
        }
    }
}
