//! A read-only walker of POSIX (ustar / pax) and GNU tar archives over [`ReadAt`], enough
//! to read an OVA in place: each member is found by walking the 512-byte headers, and is
//! exposed as a bounds-checked [`Slice`] of the archive, so a disk parser reads the disk
//! straight out of the archive without unpacking it.
//!
//! Every header is untrusted: the checksum is verified, sizes (octal or GNU base-256) are
//! checked against the archive size, names against [`MAX_MEMBER_NAME`], the member count
//! against [`MAX_TAR_MEMBERS`], pax headers against [`MAX_PAX_HEADER_BYTES`]. Offsets only
//! grow, so the walk always ends. Member names leading outside the archive (`..`, an
//! absolute path) and duplicate names are refused: an OVA has no use for them.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_bundle::tar::TarArchive;
//!
//! // A one-member ustar archive: header, 5 data bytes padded to 512, two zero blocks.
//! let mut h = [0u8; 512];
//! h[..7].copy_from_slice(b"vm.ovf\0");
//! h[100..108].copy_from_slice(b"0000644\0");
//! h[124..136].copy_from_slice(b"00000000005\0");
//! h[156] = b'0';
//! h[257..263].copy_from_slice(b"ustar\0");
//! h[263..265].copy_from_slice(b"00");
//! h[148..156].copy_from_slice(b"        ");
//! let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
//! h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
//! let mut archive = h.to_vec();
//! archive.extend_from_slice(b"hello");
//! archive.resize(512 * 4, 0);
//!
//! let tar = TarArchive::open(Arc::new(archive), "demo.ova").unwrap();
//! let m = tar.find("vm.ovf").unwrap();
//! assert_eq!((m.offset, m.size), (512, 5));
//! assert_eq!(tar.read_member(m, 1024).unwrap(), b"hello");
//! ```

use std::sync::Arc;

use cairn_io::{ReadAt, Slice};

use crate::{Error, Result};

/// Size of a tar block; headers and member data start on block boundaries.
pub const BLOCK: u64 = 512;
/// Most members walked: an OVA holds an OVF, a manifest, a certificate and its disks
/// (at most `vmx::MAX_BUNDLE_DISKS`); 10,000 leaves room for odd archives, and bounds memory.
pub const MAX_TAR_MEMBERS: usize = 10_000;
/// Longest member name accepted, in bytes (GNU long names and pax `path` included): Linux's
/// `PATH_MAX`.
pub const MAX_MEMBER_NAME: usize = 4096;
/// Largest pax extended header read (records are `length key=value` lines, a few hundred
/// bytes in practice); larger ones are refused rather than buffered.
pub const MAX_PAX_HEADER_BYTES: u64 = 64 << 10;
/// Most pax records in one extended header: bounds the parse loop.
pub const MAX_PAX_RECORDS: usize = 1024;

/// What a member is, from its type flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberKind {
    /// A regular file (`0`, NUL, or `7` contiguous).
    File,
    /// A directory (`5`).
    Directory,
    /// Anything else (links, devices, FIFOs, GNU sparse `S`...): listed, not readable.
    Other(u8),
}

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TarMember {
    /// The name (GNU long name or pax `path` when present), without a leading `./`.
    pub name: String,
    /// The kind.
    pub kind: MemberKind,
    /// Offset of its (first) header in the archive.
    pub header_offset: u64,
    /// Offset of its data in the archive.
    pub offset: u64,
    /// Data size (pax `size` when present).
    pub size: u64,
}

/// A walked archive: its members and the reader they are slices of.
#[derive(Clone)]
pub struct TarArchive {
    file: String,
    reader: Arc<dyn ReadAt>,
    members: Vec<TarMember>,
}

impl std::fmt::Debug for TarArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarArchive")
            .field("file", &self.file)
            .field("size", &self.reader.size())
            .field("members", &self.members)
            .finish()
    }
}

fn err(file: &str, offset: u64, member: Option<&str>, what: impl Into<String>) -> Error {
    Error::Archive {
        file: file.to_string(),
        member: member.map(str::to_string),
        offset,
        what: what.into(),
    }
}

/// A NUL-terminated field as bytes (the whole field when it has no NUL).
fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A numeric header field: octal digits (leading spaces / NULs, ending at a space or NUL),
/// or GNU base-256 (high bit of the first byte set; negative values refused).
fn number(field: &[u8]) -> std::result::Result<u64, String> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            if first & 0x40 != 0 {
                return Err("negative base-256 number".into());
            }
            let mut v: u64 = u64::from(first & 0x3f);
            for &b in &field[1..] {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or("base-256 number above 2^64")?;
            }
            return Ok(v);
        }
    }
    let mut i = 0;
    while i < field.len() && (field[i] == b' ' || field[i] == 0) {
        i += 1;
    }
    if i == field.len() {
        // An all-blank field: old tars write that for zero.
        return Ok(0);
    }
    let mut v: u64 = 0;
    let mut digits = 0;
    while i < field.len() && (b'0'..=b'7').contains(&field[i]) {
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(field[i] - b'0')))
            .ok_or("octal number above 2^64")?;
        i += 1;
        digits += 1;
    }
    if digits == 0 || field[i..].iter().any(|&b| b != b' ' && b != 0) {
        return Err(format!(
            "not an octal number: {:?}",
            String::from_utf8_lossy(field)
        ));
    }
    Ok(v)
}

/// The name as the archive means it: `./` prefixes dropped; refused when it could lead
/// outside the archive or is not UTF-8.
fn clean_name(raw: &[u8]) -> std::result::Result<String, String> {
    if raw.len() > MAX_MEMBER_NAME {
        return Err(format!(
            "name of {} bytes, the limit is {MAX_MEMBER_NAME}",
            raw.len()
        ));
    }
    let s = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8".to_string())?;
    if s.contains('\0') {
        return Err("name holds a NUL byte".into());
    }
    if s.starts_with('/') || s.contains('\\') {
        return Err(format!("name {s:?} is absolute or uses backslashes"));
    }
    let parts: Vec<&str> = s
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!("name {s:?} leads outside the archive"));
    }
    if parts.is_empty() {
        return Err("empty name".into());
    }
    Ok(parts.join("/"))
}

/// Overrides from a pax extended header for the next member.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    size: Option<u64>,
}

/// Parses pax records `"<len> <key>=<value>\n"`; keeps `path` and `size`.
fn parse_pax(data: &[u8]) -> std::result::Result<Pax, String> {
    let mut pax = Pax::default();
    let mut rest = data;
    let mut records = 0usize;
    while !rest.is_empty() {
        // Some writers pad the header data with NULs.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        records += 1;
        if records > MAX_PAX_RECORDS {
            return Err(format!("more than {MAX_PAX_RECORDS} pax records"));
        }
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("pax record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("pax record length is not a number")?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(format!("pax record length {len} does not frame a record"));
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&b| b == b'=')
            .ok_or("pax record without '='")?;
        let (key, value) = (&rec[..eq], &rec[eq + 1..]);
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"size" => {
                let v = std::str::from_utf8(value)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or("pax size is not a decimal number")?;
                pax.size = Some(v);
            }
            // Times, owners, charsets...: not needed to find a member's data.
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(pax)
}

impl TarArchive {
    /// Walks every header of `reader`, an archive named `file` in errors. The walk stops at
    /// the first all-zero block (end of archive) or at the end of the reader; a header cut
    /// short, a bad checksum, a member whose data passes the end, a name that leads
    /// outside, a duplicate name or too many members is an [`Error::Archive`] naming the
    /// member and the offset.
    pub fn open(reader: Arc<dyn ReadAt>, file: &str) -> Result<TarArchive> {
        let size = reader.size();
        let mut members: Vec<TarMember> = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut pos: u64 = 0;
        // Pending long name (GNU `L`) / pax overrides, and the offset of the header that
        // set them (it is the member's first header).
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax = Pax::default();
        let mut first_header: Option<u64> = None;
        loop {
            if pos == size {
                if first_header.is_some() {
                    return Err(err(
                        file,
                        pos,
                        None,
                        "archive ends after an extended header, before its member",
                    ));
                }
                break;
            }
            let end = pos.checked_add(BLOCK).filter(|&e| e <= size);
            if end.is_none() {
                return Err(err(
                    file,
                    pos,
                    None,
                    format!(
                        "truncated header: {} bytes left, a header is 512",
                        size - pos
                    ),
                ));
            }
            let mut h = [0u8; 512];
            reader
                .read_exact_at(&mut h, pos)
                .map_err(|e| err(file, pos, None, format!("read: {e}")))?;
            if h.iter().all(|&b| b == 0) {
                if first_header.is_some() {
                    return Err(err(
                        file,
                        pos,
                        None,
                        "end of archive right after an extended header",
                    ));
                }
                break;
            }
            let raw_name = cstr(&h[0..100]);
            let label = String::from_utf8_lossy(raw_name).into_owned();
            let bad = |what: String| err(file, pos, Some(&label), what);
            let stored = number(&h[148..156]).map_err(|w| bad(format!("checksum field: {w}")))?;
            let unsigned: u64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
                .sum();
            // Some old tars summed signed bytes; accept either, as GNU tar does.
            let signed: i64 = h
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    i64::from(if (148..156).contains(&i) {
                        b' ' as i8
                    } else {
                        b as i8
                    })
                })
                .sum();
            if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
                return Err(bad(format!(
                    "header checksum is {stored:o}, the header sums to {unsigned:o}"
                )));
            }
            let mut data_size =
                number(&h[124..136]).map_err(|w| bad(format!("size field: {w}")))?;
            let typeflag = h[156];
            let data_off = pos + BLOCK;
            let data_end = data_off
                .checked_add(data_size)
                .filter(|&e| e <= size)
                .ok_or_else(|| {
                    bad(format!(
                        "data of {data_size} bytes at {data_off} passes the archive's end ({size})"
                    ))
                })?;
            // Padded to the next block; the last member's padding may be missing.
            let next = data_end
                .checked_add(BLOCK - 1)
                .map(|e| (e / BLOCK * BLOCK).min(size))
                .ok_or_else(|| bad("offset overflow".into()))?;
            match typeflag {
                b'L' | b'x' => {
                    let limit = if typeflag == b'L' {
                        MAX_MEMBER_NAME as u64 + 1
                    } else {
                        MAX_PAX_HEADER_BYTES
                    };
                    if data_size > limit {
                        return Err(bad(format!(
                            "extended header of {data_size} bytes, the limit is {limit}"
                        )));
                    }
                    let len = usize::try_from(data_size).map_err(|_| bad("size".into()))?;
                    let data = reader
                        .read_vec_at(data_off, len)
                        .map_err(|e| bad(format!("read: {e}")))?;
                    if typeflag == b'L' {
                        long_name = Some(cstr(&data).to_vec());
                    } else {
                        let p = parse_pax(&data).map_err(|w| bad(format!("pax header: {w}")))?;
                        pax.path = p.path.or(pax.path);
                        pax.size = p.size.or(pax.size);
                    }
                    first_header.get_or_insert(pos);
                    pos = next;
                    continue;
                }
                // Global pax headers and GNU long link names: nothing we need.
                b'g' | b'K' => {
                    pos = next;
                    continue;
                }
                _ => {}
            }
            if members.len() >= MAX_TAR_MEMBERS {
                return Err(bad(format!("more than {MAX_TAR_MEMBERS} members")));
            }
            let mut full: Vec<u8> = raw_name.to_vec();
            let magic = &h[257..263];
            if magic == b"ustar\0" {
                // POSIX ustar: a prefix joined with '/'.
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    full = [prefix, b"/", raw_name].concat();
                }
            }
            if let Some(n) = long_name.take() {
                full = n;
            }
            if let Some(p) = pax.path.take() {
                full = p;
            }
            let header_offset = first_header.take().unwrap_or(pos);
            let data_off_member = data_off;
            if let Some(s) = pax.size.take() {
                // The pax size replaces the header's (which may be 0 or capped); the data
                // still starts after this header.
                data_size = s;
                data_off_member
                    .checked_add(s)
                    .filter(|&e| e <= size)
                    .ok_or_else(|| {
                        bad(format!(
                            "pax size {s} at {data_off} passes the archive's end ({size})"
                        ))
                    })?;
            }
            let name = clean_name(&full).map_err(&bad)?;
            let label = name.clone();
            let kind = match typeflag {
                b'0' | 0 | b'7' => MemberKind::File,
                b'5' => MemberKind::Directory,
                t => MemberKind::Other(t),
            };
            if kind != MemberKind::Directory && !names.insert(name.clone()) {
                return Err(err(
                    file,
                    pos,
                    Some(&label),
                    "a second member of this name (which one is meant?)",
                ));
            }
            members.push(TarMember {
                name,
                kind,
                header_offset,
                offset: data_off_member,
                size: data_size,
            });
            let data_end = data_off_member + data_size;
            pos = data_end
                .checked_add(BLOCK - 1)
                .map(|e| (e / BLOCK * BLOCK).min(size))
                .ok_or_else(|| err(file, pos, Some(&label), "offset overflow"))?;
        }
        Ok(TarArchive {
            file: file.to_string(),
            reader,
            members,
        })
    }

    /// The archive's name, as given.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Every member, in archive order.
    pub fn members(&self) -> &[TarMember] {
        &self.members
    }

    /// The member called `name` (a leading `./` ignored).
    pub fn find(&self, name: &str) -> Option<&TarMember> {
        let name = clean_name(name.as_bytes()).ok()?;
        self.members.iter().find(|m| m.name == name)
    }

    /// The member's data as a view of the archive: what a disk parser reads.
    pub fn member_reader(&self, m: &TarMember) -> Result<Arc<dyn ReadAt>> {
        let s = Slice::new(self.reader.clone(), m.offset, m.size).map_err(|e| {
            err(
                &self.file,
                m.offset,
                Some(&m.name),
                format!("member data: {e}"),
            )
        })?;
        Ok(Arc::new(s))
    }

    /// The member's data in memory, refused above `limit` bytes.
    pub fn read_member(&self, m: &TarMember, limit: u64) -> Result<Vec<u8>> {
        if m.size > limit {
            return Err(Error::Limit {
                file: format!("{}:{}", self.file, m.name),
                what: "member size",
                value: m.size,
                limit,
            });
        }
        let len = usize::try_from(m.size).map_err(|_| {
            err(
                &self.file,
                m.offset,
                Some(&m.name),
                "member does not fit in memory",
            )
        })?;
        self.reader
            .read_vec_at(m.offset, len)
            .map_err(|e| err(&self.file, m.offset, Some(&m.name), format!("read: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(b"00000000005\0"), Ok(5));
        assert_eq!(number(b"     17 "), Ok(15));
        assert_eq!(number(b"\0\0\0\0"), Ok(0));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]), Ok(256));
        assert!(number(&[0xff, 0, 0]).is_err());
        assert!(number(b"0009\0").is_err());
        assert!(number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(number(b"7777777777777777777777777").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(clean_name(b"./a//b/./c.vmdk").unwrap(), "a/b/c.vmdk");
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"a\\b",
            b"",
            b"./",
            b"\xff",
        ] {
            assert!(clean_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pax_records() {
        let p = parse_pax(b"19 path=a/b/c.vmdk\n11 size=99\n15 mtime=1.000\n\0\0").unwrap();
        assert_eq!(p.path.as_deref(), Some(&b"a/b/c.vmdk"[..]));
        assert_eq!(p.size, Some(99));
        for bad in [
            &b"99 path=x\n"[..],
            b"5 path=x\n",
            b"x path\n",
            b"11 size=-1\n",
        ] {
            assert!(parse_pax(bad).is_err(), "{bad:?}");
        }
    }
}
