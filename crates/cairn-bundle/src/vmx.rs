//! VMware `key = "value"` files: the `.vmx` configuration and the `.vmsd` snapshot database.
//!
//! The reader keeps every line as written (comments, order, line endings), so a rewrite
//! changes only the values it is asked to change.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Largest `.vmx` / `.vmsd` accepted: 4 MiB. VMware writes a few KiB; a snapshot database
/// with hundreds of snapshots stays well under 1 MiB.
pub const MAX_KV_BYTES: usize = 4 << 20;
/// Most lines in a `.vmx` / `.vmsd`.
pub const MAX_KV_LINES: usize = 100_000;
/// Most snapshots read from a `.vmsd` (VMware allows 496 per VM).
pub const MAX_SNAPSHOTS: usize = 1024;
/// Most disks recorded per snapshot in a `.vmsd`.
pub const MAX_SNAPSHOT_DISKS: usize = 256;
/// Most disks taken from one configuration.
pub const MAX_BUNDLE_DISKS: usize = 256;

/// Text encoding of a key = "value" file, from its `.encoding` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvEncoding {
    /// `UTF-8` (and files without an `.encoding` line that are valid UTF-8).
    Utf8,
    /// `windows-1252`, `ISO-8859-1` and other single-byte Western encodings, read as
    /// Latin-1 (identical in ASCII, which is what paths and keys nearly always are).
    Latin1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Blank or comment line, kept verbatim.
    Other(String),
    Entry {
        key: String,
        value: String,
        /// The line as read; `None` once the value was changed (then it is re-encoded).
        raw: Option<String>,
    },
}

/// A parsed key = "value" file, every line kept in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvFile {
    encoding: KvEncoding,
    lines: Vec<(Line, &'static str)>,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_graphic() && c != '=' && c != '"' && c != '#'
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes VMware's `|XX` escapes.
fn unescape(file: &str, line: usize, s: &str, enc: KvEncoding) -> Result<String> {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'|' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex_val),
                b.get(i + 2).copied().and_then(hex_val),
            ) else {
                return Err(Error::Syntax {
                    file: file.into(),
                    line,
                    what: "'|' not followed by two hex digits".into(),
                });
            };
            let byte = h * 16 + l;
            match enc {
                KvEncoding::Utf8 => out.push(byte),
                KvEncoding::Latin1 => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(char::from(byte).encode_utf8(&mut buf).as_bytes());
                }
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::Syntax {
        file: file.into(),
        line,
        what: "escaped bytes are not UTF-8".into(),
    })
}

/// Encodes a value with VMware's escapes: `"`, `|`, `#` and control characters as `|XX`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        if c == '"' || c == '|' || c == '#' || c.is_ascii_control() {
            out.push_str(&format!("|{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_line(file: &str, n: usize, text: &str, enc: KvEncoding) -> Result<Line> {
    let t = text.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return Ok(Line::Other(text.to_string()));
    }
    let syntax = |what: &str| Error::Syntax {
        file: file.into(),
        line: n,
        what: what.into(),
    };
    let eq = t
        .find('=')
        .ok_or_else(|| syntax("expected key = \"value\""))?;
    let key = t[..eq].trim_end();
    if key.is_empty() || !key.chars().all(is_key_char) {
        return Err(syntax("bad key (empty, or a space, quote or '#' in it)"));
    }
    let rest = t[eq + 1..].trim_start();
    let value = if let Some(q) = rest.strip_prefix('"') {
        let close = q
            .find('"')
            .ok_or_else(|| syntax("unterminated quoted value"))?;
        let after = q[close + 1..].trim_start();
        if !after.is_empty() && !after.starts_with('#') {
            return Err(syntax("text after the closing quote"));
        }
        unescape(file, n, &q[..close], enc)?
    } else {
        // Old files have bare values: up to a comment.
        let v = rest.split('#').next().unwrap_or("").trim_end();
        if v.contains('"') {
            return Err(syntax("quote inside a bare value"));
        }
        unescape(file, n, v, enc)?
    };
    Ok(Line::Entry {
        key: key.to_string(),
        value,
        raw: Some(text.to_string()),
    })
}

impl KvFile {
    /// Parses `bytes` (named `file` in errors).
    pub fn parse(file: &str, bytes: &[u8]) -> Result<KvFile> {
        if bytes.len() > MAX_KV_BYTES {
            return Err(Error::Limit {
                file: file.into(),
                what: "file size",
                value: bytes.len() as u64,
                limit: MAX_KV_BYTES as u64,
            });
        }
        // The `.encoding` line is ASCII: find it before decoding.
        let enc = declared_encoding(bytes);
        let text: String = match enc {
            KvEncoding::Utf8 => match std::str::from_utf8(bytes) {
                Ok(s) => s.to_string(),
                Err(e) => {
                    let upto = &bytes[..e.valid_up_to()];
                    let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
                    return Err(Error::Syntax {
                        file: file.into(),
                        line,
                        what: format!("not UTF-8 at byte offset {}", e.valid_up_to()),
                    });
                }
            },
            KvEncoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = Vec::new();
        let mut rest = text;
        let mut n = 0usize;
        while !rest.is_empty() {
            n += 1;
            if n > MAX_KV_LINES {
                return Err(Error::Limit {
                    file: file.into(),
                    what: "line count",
                    value: n as u64,
                    limit: MAX_KV_LINES as u64,
                });
            }
            let (body, eol, next) = match rest.find('\n') {
                Some(i) if i > 0 && rest.as_bytes()[i - 1] == b'\r' => {
                    (&rest[..i - 1], "\r\n", &rest[i + 1..])
                }
                Some(i) => (&rest[..i], "\n", &rest[i + 1..]),
                None => (rest, "", ""),
            };
            lines.push((parse_line(file, n, body, enc)?, eol));
            rest = next;
        }
        Ok(KvFile {
            encoding: enc,
            lines,
        })
    }

    /// The file's encoding.
    pub fn encoding(&self) -> KvEncoding {
        self.encoding
    }

    /// Every entry, in file order: (1-based line, key, decoded value).
    pub fn entries(&self) -> impl Iterator<Item = (usize, &str, &str)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, (l, _))| match l {
                Line::Entry { key, value, .. } => Some((i + 1, key.as_str(), value.as_str())),
                Line::Other(_) => None,
            })
    }

    /// The value of `key` (ASCII case-insensitive; the last one wins, as VMware reads).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries()
            .filter(|(_, k, _)| k.eq_ignore_ascii_case(key))
            .last()
            .map(|(_, _, v)| v)
    }

    /// Sets `key` to `value`: every line with that key is changed in place; a new line is
    /// appended when there is none.
    pub fn set(&mut self, key: &str, value: &str) {
        if self.encoding == KvEncoding::Latin1 && self.get(".encoding").is_none() {
            // The file was guessed to be single-byte: say so, or a changed line could make
            // it valid UTF-8 and be read differently next time.
            self.lines.insert(
                0,
                (
                    Line::Entry {
                        key: ".encoding".into(),
                        value: "windows-1252".into(),
                        raw: None,
                    },
                    "\n",
                ),
            );
        }
        let mut found = false;
        for (l, _) in &mut self.lines {
            if let Line::Entry {
                key: k,
                value: v,
                raw,
            } = l
            {
                if k.eq_ignore_ascii_case(key) {
                    *v = value.to_string();
                    *raw = None;
                    found = true;
                }
            }
        }
        if !found {
            if let Some((_, eol)) = self.lines.last_mut() {
                if eol.is_empty() {
                    *eol = "\n";
                }
            }
            self.lines.push((
                Line::Entry {
                    key: key.to_string(),
                    value: value.to_string(),
                    raw: None,
                },
                "\n",
            ));
        }
    }

    /// The file's bytes: unchanged lines exactly as read, changed ones as `key = "value"`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut text = String::new();
        for (l, eol) in &self.lines {
            match l {
                Line::Other(s) => text.push_str(s),
                Line::Entry { raw: Some(raw), .. } => text.push_str(raw),
                Line::Entry {
                    key,
                    value,
                    raw: None,
                } => {
                    text.push_str(key);
                    text.push_str(" = \"");
                    text.push_str(&escape(value));
                    text.push('"');
                }
            }
            text.push_str(eol);
        }
        match self.encoding {
            KvEncoding::Utf8 => Ok(text.into_bytes()),
            KvEncoding::Latin1 => text
                .chars()
                .map(|c| {
                    u8::try_from(u32::from(c)).map_err(|_| {
                        Error::Unsupported(format!(
                            "character {c:?} cannot be written in this file's single-byte encoding"
                        ))
                    })
                })
                .collect(),
        }
    }
}

/// Reads the `.encoding = "..."` line (ASCII) without decoding the whole file.
fn declared_encoding(bytes: &[u8]) -> KvEncoding {
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
        let Ok(s) = std::str::from_utf8(line) else {
            continue;
        };
        let s = s.trim();
        if let Some(rest) = s.strip_prefix(".encoding") {
            let v = rest
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            let v = v.to_ascii_lowercase();
            return if v == "utf-8" || v == "utf8" {
                KvEncoding::Utf8
            } else {
                KvEncoding::Latin1
            };
        }
    }
    if std::str::from_utf8(bytes).is_ok() {
        KvEncoding::Utf8
    } else {
        KvEncoding::Latin1
    }
}

/// Parses VMware's UUID notation `56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc` (also
/// plain or hyphenated hex).
pub fn parse_vmware_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'-' | b'{' | b'}'))
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = hex_val(pair[0])? * 16 + hex_val(pair[1])?;
    }
    Some(out)
}

/// One virtual disk the `.vmx` attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmxDisk {
    /// Device node, lower case: `scsi0:0`, `sata0:1`, `nvme0:0`, `ide1:0`.
    pub config_ref: String,
    /// The `fileName` value as written (relative to the `.vmx` or absolute).
    pub file_name: String,
    /// 1-based line of the `fileName` entry.
    pub line: usize,
}

/// What Cairn reads from a `.vmx`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmxConfig {
    /// `displayName`.
    pub display_name: Option<String>,
    /// `uuid.bios` (the SMBIOS UUID the guest sees).
    pub uuid_bios: Option<[u8; 16]>,
    /// `vc.uuid` (vCenter's instance UUID).
    pub vc_uuid: Option<[u8; 16]>,
    /// `nvram` file name.
    pub nvram: Option<String>,
    /// `extendedConfigFile` (`.vmxf`) file name.
    pub extended_config: Option<String>,
    /// `checkpoint.vmState` (a `.vmss` of a suspended VM), when not empty.
    pub suspend_state: Option<String>,
    /// Attached disks, in file order.
    pub disks: Vec<VmxDisk>,
    /// Devices left out and why (CD-ROMs, absent devices).
    pub notes: Vec<String>,
}

/// Splits `scsi0:0.filename` into (`scsi0:0`, `filename`) when the prefix is a disk node.
fn disk_node(key: &str) -> Option<(String, &str)> {
    let lower = key.to_ascii_lowercase();
    let bus = ["scsi", "sata", "nvme", "ide"]
        .into_iter()
        .find(|b| lower.starts_with(b))?;
    let rest = &lower[bus.len()..];
    let (node, _) = rest.split_once('.')?;
    let (ctl, unit) = node.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ctl) || !digits(unit) {
        return None;
    }
    let field_start = bus.len() + node.len() + 1;
    Some((format!("{bus}{node}"), &key[field_start..]))
}

impl VmxConfig {
    /// Interprets a parsed `.vmx` (named `file` in errors).
    pub fn from_kv(file: &str, kv: &KvFile) -> Result<VmxConfig> {
        let mut c = VmxConfig {
            display_name: kv.get("displayName").map(str::to_string),
            nvram: kv
                .get("nvram")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            extended_config: kv
                .get("extendedConfigFile")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            suspend_state: kv
                .get("checkpoint.vmState")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            ..Default::default()
        };
        for (key, slot) in [("uuid.bios", &mut c.uuid_bios), ("vc.uuid", &mut c.vc_uuid)] {
            if let Some(v) = kv.get(key) {
                *slot = Some(parse_vmware_uuid(v).ok_or_else(|| {
                    Error::invalid(file, format!("{key} = {v:?} is not a 16-byte UUID"))
                })?);
            }
        }
        let mut by_node: BTreeMap<String, VmxDisk> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for (line, key, value) in kv.entries() {
            let Some((node, field)) = disk_node(key) else {
                continue;
            };
            if !field.eq_ignore_ascii_case("fileName") {
                continue;
            }
            if !by_node.contains_key(&node) {
                order.push(node.clone());
            }
            by_node.insert(
                node.clone(),
                VmxDisk {
                    config_ref: node,
                    file_name: value.to_string(),
                    line,
                },
            );
        }
        for node in order {
            let Some(d) = by_node.remove(&node) else {
                continue;
            };
            let present = kv
                .get(&format!("{node}.present"))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let device_type = kv
                .get(&format!("{node}.deviceType"))
                .unwrap_or("")
                .to_ascii_lowercase();
            if !present {
                c.notes
                    .push(format!("{node}: {} left out: not present", d.file_name));
            } else if device_type.contains("cdrom")
                || device_type.contains("floppy")
                || d.file_name.to_ascii_lowercase().ends_with(".iso")
            {
                c.notes
                    .push(format!("{node}: {} left out: a CD-ROM image", d.file_name));
            } else if device_type.contains("raw") || device_type.contains("rdm") {
                c.notes.push(format!(
                    "{node}: {} left out: a raw device mapping, not an image file",
                    d.file_name
                ));
            } else if d.file_name.is_empty() {
                c.notes.push(format!("{node}: left out: empty fileName"));
            } else {
                if c.disks.len() >= MAX_BUNDLE_DISKS {
                    return Err(Error::Limit {
                        file: file.into(),
                        what: "disk count",
                        value: c.disks.len() as u64 + 1,
                        limit: MAX_BUNDLE_DISKS as u64,
                    });
                }
                c.disks.push(d);
            }
        }
        Ok(c)
    }
}

/// One snapshot of a `.vmsd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmsdSnapshot {
    /// `snapshotN.uid`.
    pub uid: u32,
    /// `snapshotN.parent` (the uid of the snapshot this one was taken on top of).
    pub parent: Option<u32>,
    /// `snapshotN.displayName`.
    pub display_name: String,
    /// `snapshotN.filename` (the `.vmsn` state file).
    pub file_name: Option<String>,
    /// (device node, disk file) the snapshot froze: `snapshotN.diskM.node`/`.fileName`.
    pub disks: Vec<(String, String)>,
}

/// A `.vmsd` snapshot database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotDb {
    /// `snapshot.current`: the uid of the snapshot the VM runs on.
    pub current: Option<u32>,
    /// Snapshots in index order.
    pub snapshots: Vec<VmsdSnapshot>,
}

fn parse_u32(file: &str, line: usize, key: &str, v: &str) -> Result<u32> {
    v.trim().parse::<u32>().map_err(|_| Error::Syntax {
        file: file.into(),
        line,
        what: format!("{key} = {v:?} is not a number"),
    })
}

impl SnapshotDb {
    /// Parses a `.vmsd` (an empty file is an empty database).
    pub fn parse(file: &str, bytes: &[u8]) -> Result<SnapshotDb> {
        let kv = KvFile::parse(file, bytes)?;
        let mut db = SnapshotDb::default();
        let mut snaps: BTreeMap<u32, VmsdSnapshot> = BTreeMap::new();
        let mut disk_parts: BTreeMap<(u32, u32), (Option<String>, Option<String>)> =
            BTreeMap::new();
        for (line, key, value) in kv.entries() {
            let lower = key.to_ascii_lowercase();
            if lower == "snapshot.current" {
                db.current = Some(parse_u32(file, line, key, value)?);
                continue;
            }
            let Some(rest) = lower.strip_prefix("snapshot") else {
                continue;
            };
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 6 {
                continue;
            }
            let index = parse_u32(file, line, key, &rest[..digits])?;
            let Some(field) = rest[digits..].strip_prefix('.') else {
                continue;
            };
            if !snaps.contains_key(&index) && snaps.len() >= MAX_SNAPSHOTS {
                return Err(Error::Limit {
                    file: file.into(),
                    what: "snapshot count",
                    value: snaps.len() as u64 + 1,
                    limit: MAX_SNAPSHOTS as u64,
                });
            }
            let s = snaps.entry(index).or_insert_with(|| VmsdSnapshot {
                uid: u32::MAX,
                parent: None,
                display_name: String::new(),
                file_name: None,
                disks: Vec::new(),
            });
            match field {
                "uid" => s.uid = parse_u32(file, line, key, value)?,
                "parent" => s.parent = Some(parse_u32(file, line, key, value)?),
                "displayname" => s.display_name = value.to_string(),
                "filename" => s.file_name = Some(value.to_string()),
                _ => {
                    let Some(d) = field.strip_prefix("disk") else {
                        continue;
                    };
                    let dd = d.bytes().take_while(u8::is_ascii_digit).count();
                    if dd == 0 || dd > 6 {
                        continue;
                    }
                    let m = parse_u32(file, line, key, &d[..dd])?;
                    let sub = &d[dd..];
                    if sub != ".node" && sub != ".filename" {
                        continue;
                    }
                    if !disk_parts.contains_key(&(index, m))
                        && disk_parts.len() >= MAX_SNAPSHOTS * MAX_SNAPSHOT_DISKS
                    {
                        return Err(Error::Limit {
                            file: file.into(),
                            what: "snapshot disk count",
                            value: disk_parts.len() as u64 + 1,
                            limit: (MAX_SNAPSHOTS * MAX_SNAPSHOT_DISKS) as u64,
                        });
                    }
                    let e = disk_parts.entry((index, m)).or_default();
                    if sub == ".node" {
                        e.0 = Some(value.to_string());
                    } else {
                        e.1 = Some(value.to_string());
                    }
                }
            }
        }
        for ((index, m), (node, name)) in disk_parts {
            let (Some(node), Some(name)) = (node, name) else {
                return Err(Error::invalid(
                    file,
                    format!("snapshot{index}.disk{m}: needs both node and fileName"),
                ));
            };
            if let Some(s) = snaps.get_mut(&index) {
                if s.disks.len() >= MAX_SNAPSHOT_DISKS {
                    return Err(Error::Limit {
                        file: file.into(),
                        what: "disks of one snapshot",
                        value: s.disks.len() as u64 + 1,
                        limit: MAX_SNAPSHOT_DISKS as u64,
                    });
                }
                s.disks.push((node.to_ascii_lowercase(), name));
            }
        }
        let mut uids = std::collections::HashSet::new();
        for (index, s) in &snaps {
            if s.uid == u32::MAX {
                return Err(Error::invalid(file, format!("snapshot{index}: no uid")));
            }
            if !uids.insert(s.uid) {
                return Err(Error::invalid(
                    file,
                    format!("snapshot{index}: uid {} used twice", s.uid),
                ));
            }
        }
        db.snapshots = snaps.into_values().collect();
        // Every parent must exist, and following parents must end (no cycle): each walk is
        // at most as long as the number of snapshots.
        for s in &db.snapshots {
            let mut cur = s.parent;
            let mut steps = 0usize;
            while let Some(p) = cur {
                steps += 1;
                if steps > db.snapshots.len() {
                    return Err(Error::invalid(
                        file,
                        format!("snapshot uid {}: parent links form a cycle", s.uid),
                    ));
                }
                cur = db
                    .snapshots
                    .iter()
                    .find(|x| x.uid == p)
                    .ok_or_else(|| {
                        Error::invalid(
                            file,
                            format!("snapshot uid {}: parent uid {p} does not exist", s.uid),
                        )
                    })?
                    .parent;
            }
        }
        if let Some(c) = db.current {
            if !db.snapshots.iter().any(|s| s.uid == c) {
                return Err(Error::invalid(
                    file,
                    format!("snapshot.current = {c}: no such snapshot"),
                ));
            }
        }
        Ok(db)
    }

    /// The current snapshot and its ancestors, current first.
    pub fn current_chain(&self) -> Vec<&VmsdSnapshot> {
        let mut out = Vec::new();
        let mut cur = self.current;
        while let Some(uid) = cur {
            if out.len() > self.snapshots.len() {
                break;
            }
            let Some(s) = self.snapshots.iter().find(|s| s.uid == uid) else {
                break;
            };
            out.push(s);
            cur = s.parent;
        }
        out
    }
}

/// Rewrites the `fileName` of each disk node in `map` (node -> new file name) in a `.vmx`.
pub fn rewrite_vmx(file: &str, original: &[u8], map: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut kv = KvFile::parse(file, original)?;
    let cfg = VmxConfig::from_kv(file, &kv)?;
    for (node, new_name) in map {
        let d = cfg
            .disks
            .iter()
            .find(|d| d.config_ref.eq_ignore_ascii_case(node))
            .ok_or_else(|| Error::invalid(file, format!("no disk {node} to rewrite")))?;
        kv.set(&format!("{}.fileName", d.config_ref), new_name);
    }
    kv.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKSTATION: &str = ".encoding = \"UTF-8\"\nconfig.version = \"8\"\nvirtualHW.version = \"19\"\ndisplayName = \"Ubuntu 64-bit\"\nscsi0.present = \"TRUE\"\nscsi0:0.fileName = \"Ubuntu 64-bit.vmdk\"\nscsi0:0.present = \"TRUE\"\nsata0:1.deviceType = \"cdrom-image\"\nsata0:1.fileName = \"/iso/ubuntu.iso\"\nsata0:1.present = \"TRUE\"\nuuid.bios = \"56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc\"\n";

    #[test]
    fn workstation_vmx() {
        let kv = KvFile::parse("a.vmx", WORKSTATION.as_bytes()).unwrap();
        let c = VmxConfig::from_kv("a.vmx", &kv).unwrap();
        assert_eq!(c.display_name.as_deref(), Some("Ubuntu 64-bit"));
        assert_eq!(c.disks.len(), 1);
        assert_eq!(c.disks[0].config_ref, "scsi0:0");
        assert_eq!(c.disks[0].line, 6);
        assert_eq!(c.uuid_bios.unwrap()[0], 0x56);
        assert_eq!(c.notes.len(), 1);
        assert_eq!(kv.to_bytes().unwrap(), WORKSTATION.as_bytes());
    }

    #[test]
    fn errors_name_the_line() {
        let e = KvFile::parse("a.vmx", b"a = \"1\"\nbroken line\n").unwrap_err();
        assert!(matches!(e, Error::Syntax { line: 2, .. }), "{e}");
        let e = KvFile::parse("a.vmx", b"a = \"unterminated\n").unwrap_err();
        assert!(matches!(e, Error::Syntax { line: 1, .. }), "{e}");
        let e = KvFile::parse("a.vmx", b"a = \"x|zz\"\n").unwrap_err();
        assert!(matches!(e, Error::Syntax { line: 1, .. }), "{e}");
        let e = KvFile::parse("a.vmx", b".encoding = \"UTF-8\"\na = \"\xff\"\n").unwrap_err();
        assert!(matches!(e, Error::Syntax { line: 2, .. }), "{e}");
        let kv = KvFile::parse("a.vmx", b"uuid.bios = \"12 34\"\n").unwrap();
        assert!(matches!(
            VmxConfig::from_kv("a.vmx", &kv),
            Err(Error::Invalid { .. })
        ));
        let big = vec![b'#'; MAX_KV_BYTES + 1];
        assert!(matches!(
            KvFile::parse("a.vmx", &big),
            Err(Error::Limit { .. })
        ));
    }

    #[test]
    fn escapes_and_latin1() {
        let kv = KvFile::parse(
            "a.vmx",
            b".encoding = \"windows-1252\"\nname = \"a|22b\xe9\"\n",
        )
        .unwrap();
        assert_eq!(kv.encoding(), KvEncoding::Latin1);
        assert_eq!(kv.get("NAME"), Some("a\"b\u{e9}"));
        let mut kv2 = kv.clone();
        kv2.set("name", "x\"y\u{e9}");
        let bytes = kv2.to_bytes().unwrap();
        assert!(bytes.ends_with(b"name = \"x|22y\xe9\"\n"));
        kv2.set("name", "\u{4e2d}");
        assert!(matches!(kv2.to_bytes(), Err(Error::Unsupported(_))));
    }

    #[test]
    fn undeclared_single_byte_files_get_declared_on_rewrite() {
        let mut kv = KvFile::parse("a.vmx", b"scsi0:0.fileName = \"\xc3|A9\"\n").unwrap();
        assert_eq!(kv.encoding(), KvEncoding::Latin1);
        let before = kv.get("scsi0:0.fileName").unwrap().to_string();
        kv.set("scsi0:0.fileName", &format!("{before}x"));
        let out = kv.to_bytes().unwrap();
        assert!(out.starts_with(b".encoding = \"windows-1252\"\n"));
        let back = KvFile::parse("a.vmx", &out).unwrap();
        assert_eq!(back.get("scsi0:0.fileName").unwrap(), format!("{before}x"));
    }

    #[test]
    fn snapshot_database() {
        let vmsd = b".encoding = \"UTF-8\"\nsnapshot.lastUID = \"2\"\nsnapshot.current = \"2\"\nsnapshot0.uid = \"1\"\nsnapshot0.filename = \"vm-Snapshot1.vmsn\"\nsnapshot0.displayName = \"base\"\nsnapshot0.numDisks = \"1\"\nsnapshot0.disk0.fileName = \"vm.vmdk\"\nsnapshot0.disk0.node = \"scsi0:0\"\nsnapshot1.uid = \"2\"\nsnapshot1.parent = \"1\"\nsnapshot1.displayName = \"second\"\nsnapshot1.disk0.fileName = \"vm-000001.vmdk\"\nsnapshot1.disk0.node = \"scsi0:0\"\nsnapshot.numSnapshots = \"2\"\n";
        let db = SnapshotDb::parse("vm.vmsd", vmsd).unwrap();
        assert_eq!(db.snapshots.len(), 2);
        let chain: Vec<u32> = db.current_chain().iter().map(|s| s.uid).collect();
        assert_eq!(chain, vec![2, 1]);
        assert_eq!(db.snapshots[1].disks[0].1, "vm-000001.vmdk");
        let cyc = b"snapshot0.uid = \"1\"\nsnapshot0.parent = \"2\"\nsnapshot1.uid = \"2\"\nsnapshot1.parent = \"1\"\n";
        assert!(matches!(
            SnapshotDb::parse("c.vmsd", cyc),
            Err(Error::Invalid { .. })
        ));
        let dangling = b"snapshot0.uid = \"1\"\nsnapshot0.parent = \"7\"\n";
        assert!(matches!(
            SnapshotDb::parse("c.vmsd", dangling),
            Err(Error::Invalid { .. })
        ));
        assert!(SnapshotDb::parse("e.vmsd", b"")
            .unwrap()
            .snapshots
            .is_empty());
    }

    #[test]
    fn rewrite_changes_only_file_names() {
        let mut map = BTreeMap::new();
        map.insert("scsi0:0".to_string(), "restored \"0\".vmdk".to_string());
        let out = rewrite_vmx("a.vmx", WORKSTATION.as_bytes(), &map).unwrap();
        let kv = KvFile::parse("a.vmx", &out).unwrap();
        let c = VmxConfig::from_kv("a.vmx", &kv).unwrap();
        assert_eq!(c.disks[0].file_name, "restored \"0\".vmdk");
        let before: Vec<&str> = WORKSTATION.lines().collect();
        let text = String::from_utf8(out).unwrap();
        let after: Vec<&str> = text.lines().collect();
        assert_eq!(before.len(), after.len());
        let differing = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 1);
        map.insert("scsi9:9".into(), "x".into());
        assert!(rewrite_vmx("a.vmx", WORKSTATION.as_bytes(), &map).is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = String> {
            "[a-zA-Z][a-zA-Z0-9_.:]{0,20}"
        }

        proptest! {
            #[test]
            fn kv_round_trip(
                entries in proptest::collection::vec((key(), "[^\r\n]{0,30}"), 0..20),
                crlf in any::<bool>(),
            ) {
                let mut kv = KvFile::parse("p.vmx", b".encoding = \"UTF-8\"\n").unwrap();
                for (k, v) in &entries {
                    kv.set(k, v);
                }
                let bytes = kv.to_bytes().unwrap();
                let bytes = if crlf {
                    String::from_utf8(bytes).unwrap().replace('\n', "\r\n").into_bytes()
                } else {
                    bytes
                };
                let back = KvFile::parse("p.vmx", &bytes).unwrap();
                for (k, _) in &entries {
                    prop_assert_eq!(back.get(k), kv.get(k));
                }
                // Unchanged files are written back byte for byte.
                prop_assert_eq!(back.to_bytes().unwrap(), bytes);
            }

            #[test]
            fn vmx_rewrite_round_trip(
                names in proptest::collection::vec("[^\r\n\u{0}]{1,40}", 1..6),
                new_names in proptest::collection::vec("[^\r\n\u{0}]{1,40}", 6),
            ) {
                let mut text = String::from(".encoding = \"UTF-8\"\ndisplayName = \"p\"\n");
                for (i, n) in names.iter().enumerate() {
                    text.push_str(&format!("scsi0:{i}.present = \"TRUE\"\nscsi0:{i}.fileName = \"{}\"\n", escape(n)));
                }
                let kv = KvFile::parse("p.vmx", text.as_bytes()).unwrap();
                let cfg = VmxConfig::from_kv("p.vmx", &kv).unwrap();
                let kept: Vec<&VmxDisk> = cfg.disks.iter().collect();
                let mut map = BTreeMap::new();
                for (d, new) in kept.iter().zip(&new_names) {
                    map.insert(d.config_ref.clone(), new.clone());
                }
                let out = rewrite_vmx("p.vmx", text.as_bytes(), &map).unwrap();
                let again = VmxConfig::from_kv("p.vmx", &KvFile::parse("p.vmx", &out).unwrap()).unwrap();
                prop_assert_eq!(again.disks.len(), cfg.disks.len());
                for d in &again.disks {
                    prop_assert_eq!(Some(&d.file_name), map.get(&d.config_ref));
                }
            }

            #[test]
            fn kv_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(kv) = KvFile::parse("f.vmx", &data) {
                    let _ = VmxConfig::from_kv("f.vmx", &kv);
                }
                let _ = SnapshotDb::parse("f.vmsd", &data);
            }
        }
    }
}
