//! The text descriptor: header keys, extent lines and the `ddb.*` disk database.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Access mode of an extent line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `RW`.
    ReadWrite,
    /// `RDONLY`.
    ReadOnly,
    /// `NOACCESS`: the range reads as zeros.
    NoAccess,
}

/// Type of an extent line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentType {
    /// Hosted sparse (KDMV) extent, including streamOptimized.
    Sparse,
    /// Raw bytes at an offset of a file.
    Flat,
    /// Reads as zeros, no file.
    Zero,
    /// ESXi raw extent (`-flat.vmdk`).
    Vmfs,
    /// ESXi COWD sparse extent.
    VmfsSparse,
    /// ESXi space-efficient sparse extent.
    SeSparse,
    /// ESXi raw device mapping (not readable from a file).
    VmfsRdm,
    /// ESXi raw device mapping, physical.
    VmfsRaw,
}

impl ExtentType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "SPARSE" => ExtentType::Sparse,
            "FLAT" => ExtentType::Flat,
            "ZERO" => ExtentType::Zero,
            "VMFS" => ExtentType::Vmfs,
            "VMFSSPARSE" => ExtentType::VmfsSparse,
            "SESPARSE" => ExtentType::SeSparse,
            "VMFSRDM" => ExtentType::VmfsRdm,
            "VMFSRAW" => ExtentType::VmfsRaw,
            _ => return None,
        })
    }

    /// The keyword as written in a descriptor.
    pub fn keyword(self) -> &'static str {
        match self {
            ExtentType::Sparse => "SPARSE",
            ExtentType::Flat => "FLAT",
            ExtentType::Zero => "ZERO",
            ExtentType::Vmfs => "VMFS",
            ExtentType::VmfsSparse => "VMFSSPARSE",
            ExtentType::SeSparse => "SESPARSE",
            ExtentType::VmfsRdm => "VMFSRDM",
            ExtentType::VmfsRaw => "VMFSRAW",
        }
    }
}

/// One extent line: `RW 4192256 SPARSE "x-s001.vmdk"` or `RW 8192 FLAT "x-flat.vmdk" 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentLine {
    /// Access mode.
    pub access: Access,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Extent type.
    pub kind: ExtentType,
    /// File name, relative to the descriptor's folder (absent for `ZERO`).
    pub file: Option<String>,
    /// Start of the data in the file, in sectors (FLAT/VMFS; 0 otherwise).
    pub offset_sectors: u64,
}

/// A parsed descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// `version` (1, 2 or 3).
    pub version: Option<u32>,
    /// `CID`, the content id.
    pub cid: Option<u32>,
    /// `parentCID`; `0xffffffff` means no parent.
    pub parent_cid: Option<u32>,
    /// `createType`.
    pub create_type: Option<String>,
    /// `parentFileNameHint`.
    pub parent_file_name_hint: Option<String>,
    /// Extent lines, in order.
    pub extents: Vec<ExtentLine>,
    /// Every `ddb.*` key (and any other `key = value` line not named above), unquoted.
    pub ddb: BTreeMap<String, String>,
}

/// `parentCID` value meaning "no parent".
pub const NO_PARENT_CID: u32 = 0xffff_ffff;

fn unquote(v: &str) -> &str {
    let v = v.trim();
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

fn bad(line: usize, reason: impl Into<String>) -> Error {
    Error::BadDescriptor {
        line,
        reason: reason.into(),
    }
}

/// Checks an extent file name: a plain name or relative path, no NUL, not absolute, no `..`.
pub fn check_extent_path(p: &str) -> Result<()> {
    let refuse = |reason| {
        Err(Error::BadExtentPath {
            path: p.to_string(),
            reason,
        })
    };
    if p.is_empty() {
        return refuse("empty");
    }
    if p.contains('\0') {
        return refuse("contains NUL");
    }
    if p.starts_with('/') || p.starts_with('\\') {
        return refuse("absolute path");
    }
    let b = p.as_bytes();
    if b.len() >= 2 && b[1] == b':' {
        return refuse("drive-letter path");
    }
    if p.split(['/', '\\']).any(|c| c == "..") {
        return refuse("climbs out of the descriptor's folder");
    }
    Ok(())
}

fn parse_hex_cid(line: usize, key: &str, v: &str) -> Result<u32> {
    u32::from_str_radix(v, 16).map_err(|_| bad(line, format!("{key} {v:?} is not 8 hex digits")))
}

impl Descriptor {
    /// Parses descriptor text. `max_extents` bounds the number of extent lines; the caller
    /// has already bounded the text's length. Text stops at the first NUL (an embedded
    /// descriptor is NUL-padded).
    pub fn parse(text: &[u8], max_extents: u32) -> Result<Descriptor> {
        let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
        let text = std::str::from_utf8(&text[..end])
            .map_err(|e| bad(0, format!("not UTF-8 at byte {}", e.valid_up_to())))?;
        let mut d = Descriptor::default();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_ascii_whitespace().next().unwrap_or("");
            if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
                if d.extents.len() >= usize::try_from(max_extents).unwrap_or(usize::MAX) {
                    return Err(Error::TooManyExtents { max: max_extents });
                }
                d.extents.push(parse_extent(n, line)?);
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(bad(n, "neither key = value nor an extent line"));
            };
            let k = k.trim();
            let v = unquote(v);
            match k {
                "version" => {
                    d.version = Some(v.parse().map_err(|_| bad(n, "version not a number"))?)
                }
                "CID" => d.cid = Some(parse_hex_cid(n, k, v)?),
                "parentCID" => d.parent_cid = Some(parse_hex_cid(n, k, v)?),
                "createType" => d.create_type = Some(v.to_string()),
                "parentFileNameHint" => d.parent_file_name_hint = Some(v.to_string()),
                _ => {
                    d.ddb.insert(k.to_string(), v.to_string());
                }
            }
        }
        Ok(d)
    }

    /// Whether this descriptor names a parent (`parentCID` other than `ffffffff`).
    pub fn has_parent(&self) -> bool {
        self.parent_cid.is_some_and(|c| c != NO_PARENT_CID)
    }

    /// `ddb.uuid.image` decoded to 16 bytes, as printed (RFC 4122 order). VMware writes it
    /// as 16 space-separated hex bytes, qemu and others as a hyphenated UUID; both work.
    pub fn image_uuid(&self) -> Option<[u8; 16]> {
        parse_uuid(self.ddb.get("ddb.uuid.image")?)
    }

    /// Renders the descriptor as text (header, extents, disk database).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::from("# Disk DescriptorFile\n");
        let _ = writeln!(s, "version={}", self.version.unwrap_or(1));
        let _ = writeln!(s, "CID={:08x}", self.cid.unwrap_or(0));
        let _ = writeln!(
            s,
            "parentCID={:08x}",
            self.parent_cid.unwrap_or(NO_PARENT_CID)
        );
        if let Some(t) = &self.create_type {
            let _ = writeln!(s, "createType=\"{t}\"");
        }
        if let Some(h) = &self.parent_file_name_hint {
            let _ = writeln!(s, "parentFileNameHint=\"{h}\"");
        }
        s.push_str("\n# Extent description\n");
        for e in &self.extents {
            let acc = match e.access {
                Access::ReadWrite => "RW",
                Access::ReadOnly => "RDONLY",
                Access::NoAccess => "NOACCESS",
            };
            let _ = write!(s, "{acc} {} {}", e.sectors, e.kind.keyword());
            if let Some(f) = &e.file {
                let _ = write!(s, " \"{f}\"");
                if matches!(e.kind, ExtentType::Flat | ExtentType::Vmfs) && e.offset_sectors != 0 {
                    let _ = write!(s, " {}", e.offset_sectors);
                }
            }
            s.push('\n');
        }
        s.push_str("\n# The Disk Data Base\n#DDB\n\n");
        for (k, v) in &self.ddb {
            let _ = writeln!(s, "{k} = \"{v}\"");
        }
        s
    }
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let rest_ok = s
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == '-' || c == ' ');
    if hex.len() != 32 || !rest_ok {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn parse_extent(n: usize, line: &str) -> Result<ExtentLine> {
    // access sectors type ["file name" [offset]]; the name is quoted and may hold spaces.
    let (head, quoted, tail) = match line.find('"') {
        Some(q) => {
            let rest = &line[q + 1..];
            let close = rest
                .find('"')
                .ok_or_else(|| bad(n, "unterminated extent file name"))?;
            (&line[..q], Some(&rest[..close]), &rest[close + 1..])
        }
        None => (line, None, ""),
    };
    let mut f = head.split_ascii_whitespace();
    let access = match f.next() {
        Some("RW") => Access::ReadWrite,
        Some("RDONLY") => Access::ReadOnly,
        Some("NOACCESS") => Access::NoAccess,
        _ => return Err(bad(n, "bad access mode")),
    };
    let sectors: u64 = f
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(n, "extent size is not a number"))?;
    let kind_s = f.next().ok_or_else(|| bad(n, "missing extent type"))?;
    let kind = ExtentType::parse(kind_s)
        .ok_or_else(|| bad(n, format!("unknown extent type {kind_s:?}")))?;
    if f.next().is_some() {
        return Err(bad(n, "unquoted extent file name"));
    }
    let offset_sectors = match tail.trim() {
        "" => 0,
        t => t
            .parse()
            .map_err(|_| bad(n, format!("bad extent offset {t:?}")))?,
    };
    if let Some(p) = quoted {
        check_extent_path(p)?;
    } else if kind != ExtentType::Zero {
        return Err(bad(n, "extent needs a file name"));
    }
    Ok(ExtentLine {
        access,
        sectors,
        kind,
        file: quoted.map(str::to_string),
        offset_sectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: &str = r#"# Disk DescriptorFile
version=1
CID=75100c99
parentCID=ffffffff
createType="twoGbMaxExtentFlat"

# Extent description
RW 4192256 FLAT "x-f001.vmdk" 0
RW 8192 FLAT "my disk-f002.vmdk" 16
RW 100 ZERO

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "8"
ddb.uuid.image = "60 00 C2 9d 6f 83 41 72-dd 5c 4c 0f 54 0c 25 7a"
ddb.adapterType = "ide"
"#;

    #[test]
    fn parses_qemu_style() {
        let d = Descriptor::parse(QEMU.as_bytes(), 16).unwrap();
        assert_eq!(d.cid, Some(0x7510_0c99));
        assert!(!d.has_parent());
        assert_eq!(d.create_type.as_deref(), Some("twoGbMaxExtentFlat"));
        assert_eq!(d.extents.len(), 3);
        assert_eq!(d.extents[1].file.as_deref(), Some("my disk-f002.vmdk"));
        assert_eq!(d.extents[1].offset_sectors, 16);
        assert_eq!(d.extents[2].kind, ExtentType::Zero);
        assert_eq!(d.ddb["ddb.adapterType"], "ide");
        assert_eq!(d.image_uuid().unwrap()[0], 0x60);
        let again = Descriptor::parse(d.render().as_bytes(), 16).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn refuses_bad_paths() {
        for p in [
            "/etc/passwd",
            "..\\x.vmdk",
            "a/../../b",
            "C:\\x.vmdk",
            "\\\\srv\\x",
        ] {
            let t = format!("RW 1 FLAT \"{p}\" 0\n");
            assert!(
                matches!(
                    Descriptor::parse(t.as_bytes(), 4),
                    Err(Error::BadExtentPath { .. })
                ),
                "{p}"
            );
        }
        assert!(matches!(
            check_extent_path("a\0b"),
            Err(Error::BadExtentPath { .. })
        ));
        assert!(check_extent_path("sub/x.vmdk").is_ok());
    }

    #[test]
    fn too_many_extents() {
        let mut t = String::new();
        for _ in 0..100_000 {
            t.push_str("RW 1 ZERO\n");
        }
        assert!(matches!(
            Descriptor::parse(t.as_bytes(), 4096),
            Err(Error::TooManyExtents { max: 4096 })
        ));
    }

    #[test]
    fn malformed_lines() {
        for t in [
            "RW x SPARSE \"a\"",
            "RW 1 BOGUS \"a\"",
            "RW 1 SPARSE",
            "CID=zz",
            "junk",
        ] {
            assert!(
                matches!(
                    Descriptor::parse(t.as_bytes(), 4),
                    Err(Error::BadDescriptor { line: 1, .. })
                ),
                "{t}"
            );
        }
    }
}
