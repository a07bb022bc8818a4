//! The volume: $MFT access, node assembly ($ATTRIBUTE_LIST), directories, streams,
//! metadata and the `cairn_vfs::FileSystem` implementation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use cairn_io::le::{u16_le, u32_le, u64_le};
use cairn_io::{Limits, RangeKind, ReadAt};
use cairn_vfs::{
    escape_name_bytes, escape_name_utf16, AllocationMap, DirEntry, FileExtent, FileKind,
    FileSystem, Metadata, NodeId, StreamInfo, Timestamp, UnixMeta, VolumeInfo, Xattr,
};

use crate::boot::{BootParams, BOOT_SECTOR_SIZE};
use crate::error::{Error, Result};
use crate::index::IndexWalk;
use crate::record::{
    attr_type, AttrValue, Attribute, FileRecord, NonResident, ParseCtx, ATTR_COMPRESSED,
    ATTR_ENCRYPTED, FLAG_DIRECTORY, FLAG_IN_USE,
};
use crate::runs::DataRun;
use crate::stream::{Layout, StreamOrigin, StreamReader};

/// Record numbers of the metadata files this reader opens.
const MFT_RECORD: u64 = 0;
const VOLUME_RECORD: u64 = 3;
const BITMAP_RECORD: u64 = 6;
const ROOT_RECORD: u64 = 5;
const SECURE_RECORD: u64 = 9;
const UPCASE_RECORD: u64 = 10;

/// Records $MFTMirr mirrors ($MFT, $MFTMirr, $LogFile, $Volume).
const MIRROR_RECORDS: u64 = 4;

/// Low 48 bits of a file reference: the record number.
const RECORD_MASK: u64 = 0x0000_FFFF_FFFF_FFFF;
/// Largest $ATTRIBUTE_LIST read: 1 MiB holds ~30 000 entries, far past real files.
const MAX_ATTR_LIST_BYTES: u64 = 1 << 20;
/// Most extension records one file may use (a 1 MiB attribute list names at most this many).
const MAX_EXTENSION_RECORDS: usize = 32 * 1024;
/// Most runs in one attribute fragment (a 64 KiB record holds at most ~21 000 two-byte runs).
const MAX_RUNS_PER_FRAGMENT: usize = 32 * 1024;
/// Largest security descriptor read (Windows caps ACLs at 64 KiB; owner+group+SACL+DACL fit).
const MAX_SECURITY_DESCRIPTOR_BYTES: u64 = 256 << 10;
/// Largest reparse point buffer (Windows' MAXIMUM_REPARSE_DATA_BUFFER_SIZE is 16 KiB).
const MAX_REPARSE_BYTES: usize = 16 << 10;
/// Largest $EA value (the EA list of one file is at most 64 KiB).
const MAX_EA_BYTES: u64 = 64 << 10;
/// $UpCase holds one 16-bit entry per UTF-16 code unit.
const UPCASE_BYTES: u64 = 2 * 65536;
/// $Bitmap is read in pieces of this size.
const BITMAP_CHUNK: usize = 64 << 10;

/// Reparse tags decoded as links.
pub(crate) const TAG_MOUNT_POINT: u32 = 0xA000_0003;
pub(crate) const TAG_SYMLINK: u32 = 0xA000_000C;
/// IO_REPARSE_TAG_WOF: Windows Overlay Filter (compressed system files).
pub(crate) const TAG_WOF: u32 = 0x8000_0017;
pub(crate) const TAG_WSL_SYMLINK: u32 = 0xA000_001D;

/// FILE_ATTRIBUTE_* bits.
const FILE_ATTRIBUTE_DIRECTORY: u32 = 0x10;
const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
/// $FILE_NAME flag of directories (FILE_ATTR_DUP_FILE_NAME_INDEX_PRESENT).
const FILE_NAME_IS_DIRECTORY: u32 = 0x1000_0000;
/// $FILE_NAME namespace of DOS 8.3 short names.
const NAMESPACE_DOS: u8 = 2;

/// Options for [`NtfsFs::open`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NtfsOptions {
    /// Caps for disk-derived numbers (run counts, walk budgets, directory sizes, depths).
    pub limits: Limits,
}

impl NtfsOptions {
    /// Options with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        NtfsOptions { limits }
    }
}

/// A decoded reparse point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReparsePoint {
    /// The reparse tag (0xA000000C symlink, 0xA0000003 junction, 0xA000001D WSL symlink, ...).
    pub tag: u32,
    /// Link target for the three link tags (print name, else substitute name), escaped.
    pub target: Option<String>,
    /// The raw REPARSE_DATA_BUFFER.
    pub raw: Vec<u8>,
}

/// A base record with its extension records' attributes merged.
#[derive(Debug)]
struct Node {
    id: NodeId,
    record: u64,
    flags: u16,
    attrs: Vec<Attribute>,
}

impl Node {
    fn find(&self, type_code: u32, name: &[u16]) -> Option<&Attribute> {
        self.attrs
            .iter()
            .find(|a| a.type_code == type_code && a.name == name)
    }
}

/// One raw $I30 entry.
#[derive(Debug, Clone)]
struct RawEntry {
    reference: u64,
    name: Vec<u16>,
    namespace: u8,
    flags: u32,
    reparse_tag: u32,
}

/// Volume usage counted from $Bitmap.
#[derive(Debug, Clone)]
struct Usage {
    used_clusters: u64,
}

/// $SII contents: security id -> ($SDS offset, entry length), or why it is unreadable.
type SiiMap = std::result::Result<HashMap<u32, (u64, u32)>, String>;

/// A read-only NTFS volume.
pub struct NtfsFs {
    vol: Arc<dyn ReadAt>,
    boot: BootParams,
    limits: Limits,
    ctx: ParseCtx,
    mft: StreamReader,
    mft_runs: Arc<Vec<DataRun>>,
    mft_records: u64,
    upcase: Vec<u16>,
    root_id: NodeId,
    label: Option<String>,
    version: Option<(u8, u8)>,
    warnings: Vec<String>,
    sii: OnceLock<SiiMap>,
    usage: OnceLock<std::result::Result<Usage, String>>,
}

impl std::fmt::Debug for NtfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtfsFs")
            .field("boot", &self.boot)
            .field("mft_records", &self.mft_records)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn utf16(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

const I30: [u16; 4] = [b'$' as u16, b'I' as u16, b'3' as u16, b'0' as u16];

fn name16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

impl NtfsFs {
    /// Opens the NTFS volume that `vol` holds (a partition, starting at its boot sector).
    pub fn open(vol: Arc<dyn ReadAt>, opts: &NtfsOptions) -> Result<NtfsFs> {
        let mut bs = [0u8; BOOT_SECTOR_SIZE];
        vol.read_exact_at(&mut bs, 0)?;
        let boot = BootParams::parse(&bs, vol.size())?;
        let limits = opts.limits.clone();
        let max_runs = usize::try_from(limits.max_walk_steps)
            .unwrap_or(usize::MAX)
            .min(MAX_RUNS_PER_FRAGMENT);
        let ctx = ParseCtx {
            total_clusters: boot.total_clusters,
            max_runs,
        };
        // Record 0 sits at the boot sector's $MFT cluster; its $DATA maps the rest of $MFT.
        let rs = usize::try_from(boot.file_record_size).unwrap_or(usize::MAX);
        let raw = vol.read_vec_at(boot.mft_lcn * boot.cluster_size, rs)?;
        let rec0 = FileRecord::parse(raw, MFT_RECORD, ctx)?;
        let data0 = rec0
            .attrs
            .iter()
            .filter(|a| a.type_code == attr_type::DATA && a.name.is_empty())
            .find_map(|a| match &a.value {
                AttrValue::NonResident(nr) if nr.start_vcn == 0 => Some(nr.clone()),
                _ => None,
            })
            .ok_or_else(|| Error::BadRecord {
                record: MFT_RECORD,
                reason: "$MFT has no non-resident unnamed $DATA starting at vcn 0".into(),
            })?;
        let mut fs = NtfsFs {
            mft: Self::mft_reader(&vol, &boot, &data0)?,
            mft_runs: Arc::new(data0.runs.clone()),
            mft_records: data0.data_size / boot.file_record_size,
            vol,
            boot,
            limits,
            ctx,
            upcase: Vec::new(),
            root_id: ROOT_RECORD,
            label: None,
            version: None,
            warnings: Vec::new(),
            sii: OnceLock::new(),
            usage: OnceLock::new(),
        };
        if rec0
            .attrs
            .iter()
            .any(|a| a.type_code == attr_type::ATTRIBUTE_LIST)
        {
            // A fragmented $MFT: its further runs live in extension records, which the first
            // fragment maps.
            let node = fs.load_node(MFT_RECORD)?;
            if let Some(Attribute {
                value: AttrValue::NonResident(nr),
                ..
            }) = node.find(attr_type::DATA, &[])
            {
                fs.mft = Self::mft_reader(&fs.vol, &fs.boot, nr)?;
                fs.mft_runs = Arc::new(nr.runs.clone());
                fs.mft_records = nr.data_size / fs.boot.file_record_size;
            }
        }
        let root = fs.load_record(ROOT_RECORD)?;
        if root.flags & FLAG_IN_USE == 0 || root.flags & FLAG_DIRECTORY == 0 {
            return Err(Error::BadRecord {
                record: ROOT_RECORD,
                reason: format!(
                    "root directory record has flags {:#x} (expected in use, directory)",
                    root.flags
                ),
            });
        }
        fs.root_id = ROOT_RECORD | (u64::from(root.sequence) << 48);
        fs.load_upcase();
        fs.load_volume_info();
        fs.check_mirror();
        Ok(fs)
    }

    fn mft_reader(
        vol: &Arc<dyn ReadAt>,
        boot: &BootParams,
        nr: &NonResident,
    ) -> Result<StreamReader> {
        StreamReader::new(
            Arc::clone(vol),
            boot.cluster_size,
            Layout::NonResident {
                runs: Arc::new(nr.runs.clone()),
                data_size: nr.data_size,
                initialized_size: nr.initialized_size,
                compression_unit: None,
            },
            StreamOrigin {
                record: MFT_RECORD,
                attr_type: attr_type::DATA,
            },
        )
    }

    fn load_upcase(&mut self) {
        let table = (|| -> Result<Vec<u16>> {
            let node = self.load_node(UPCASE_RECORD)?;
            let attr = node
                .find(attr_type::DATA, &[])
                .ok_or_else(|| Error::BadRecord {
                    record: UPCASE_RECORD,
                    reason: "$UpCase has no $DATA".into(),
                })?;
            let r = self.reader_for(&node, attr)?;
            if r.size() != UPCASE_BYTES {
                return Err(Error::BadRecord {
                    record: UPCASE_RECORD,
                    reason: format!("$UpCase is {} bytes, expected {UPCASE_BYTES}", r.size()),
                });
            }
            let mut b = vec![0u8; usize::try_from(UPCASE_BYTES).unwrap_or(0)];
            r.read_stream(&mut b, 0)?;
            Ok(utf16(&b))
        })();
        self.upcase = match table {
            Ok(t) => t,
            Err(e) => {
                self.warnings.push(format!(
                    "$UpCase unreadable ({e}); using built-in case folding"
                ));
                (0..=u16::MAX)
                    .map(|c| {
                        char::from_u32(u32::from(c))
                            .and_then(|ch| {
                                let mut up = ch.to_uppercase();
                                match (up.next(), up.next()) {
                                    (Some(u), None) => u16::try_from(u32::from(u)).ok(),
                                    _ => None,
                                }
                            })
                            .unwrap_or(c)
                    })
                    .collect()
            }
        };
    }

    /// $MFTMirr holds copies of the first records ($MFT, $MFTMirr, $LogFile, $Volume);
    /// a difference means an interrupted write or damage.
    fn check_mirror(&mut self) {
        let rs = self.boot.file_record_size;
        let n = MIRROR_RECORDS.min(self.mft_records);
        let Ok(len) = usize::try_from(rs * n) else {
            return;
        };
        let mut main = vec![0u8; len];
        let mirror = self.boot.mftmirr_lcn.checked_mul(self.boot.cluster_size);
        let result = (|| -> Result<bool> {
            self.mft.read_stream(&mut main, 0)?;
            let copy = self.vol.read_vec_at(mirror.unwrap_or(u64::MAX), len)?;
            Ok(copy == main)
        })();
        match result {
            Ok(true) => {}
            Ok(false) => self.warnings.push(format!(
                "$MFTMirr differs from the first {n} records of $MFT"
            )),
            Err(e) => self.warnings.push(format!("$MFTMirr unreadable: {e}")),
        }
    }

    fn load_volume_info(&mut self) {
        let node = match self.load_node(VOLUME_RECORD) {
            Ok(n) => n,
            Err(e) => {
                self.warnings.push(format!("$Volume unreadable: {e}"));
                return;
            }
        };
        if let Some(Attribute {
            value: AttrValue::Resident { value, .. },
            ..
        }) = node.find(attr_type::VOLUME_NAME, &[])
        {
            if !value.is_empty() {
                self.label = Some(escape_name_utf16(&utf16(value)));
            }
        }
        if let Some(Attribute {
            value: AttrValue::Resident { value, .. },
            ..
        }) = node.find(attr_type::VOLUME_INFORMATION, &[])
        {
            if value.len() >= 12 {
                let (major, minor, flags) = (value[8], value[9], u16_le(value, 10));
                self.version = Some((major, minor));
                if flags & 0x0001 != 0 {
                    self.warnings
                        .push("volume is marked dirty (chkdsk pending)".into());
                }
                if major != 3 {
                    self.warnings
                        .push(format!("NTFS version {major}.{minor} (expected 3.x)"));
                }
            }
        }
    }

    /// Reads and parses one file record (fixups applied).
    fn load_record(&self, number: u64) -> Result<FileRecord> {
        if number >= self.mft_records {
            return Err(Error::RecordOutOfRange {
                record: number,
                records: self.mft_records,
            });
        }
        let rs = self.boot.file_record_size;
        let mut buf = vec![0u8; usize::try_from(rs).unwrap_or(0)];
        self.mft.read_stream(&mut buf, number * rs)?;
        FileRecord::parse(buf, number, self.ctx)
    }

    /// Loads a node: its base record, the extension records its attribute list names, and
    /// non-resident fragments joined.
    fn load_node(&self, id: NodeId) -> Result<Node> {
        let number = id & RECORD_MASK;
        let seq = u16::try_from(id >> 48).unwrap_or(0);
        let rec = self.load_record(number)?;
        if rec.flags & FLAG_IN_USE == 0 || (seq != 0 && rec.sequence != seq) {
            return Err(Error::StaleReference {
                node: id,
                record: number,
                expected: seq,
                found: if rec.flags & FLAG_IN_USE == 0 {
                    0
                } else {
                    rec.sequence
                },
            });
        }
        if rec.base_ref & RECORD_MASK != 0 {
            return Err(Error::BadRecord {
                record: number,
                reason: format!(
                    "is an extension record of record {}, not a file",
                    rec.base_ref & RECORD_MASK
                ),
            });
        }
        let mut attrs = rec.attrs;
        if let Some(list) = attrs
            .iter()
            .find(|a| a.type_code == attr_type::ATTRIBUTE_LIST)
            .cloned()
        {
            let bytes =
                self.attr_bytes(number, &list, MAX_ATTR_LIST_BYTES, "$ATTRIBUTE_LIST bytes")?;
            let mut seen: HashSet<u64> = HashSet::new();
            seen.insert(number);
            let mut pos = 0usize;
            while pos + 0x1A <= bytes.len() {
                let len = usize::from(u16_le(&bytes, pos + 4));
                if len < 0x1A || pos + len > bytes.len() {
                    return Err(Error::BadAttribute {
                        record: number,
                        offset: pos,
                        reason: format!("$ATTRIBUTE_LIST entry at {pos} has length {len}"),
                    });
                }
                let reference = u64_le(&bytes, pos + 0x10);
                let ext = reference & RECORD_MASK;
                pos += len;
                if !seen.insert(ext) {
                    continue;
                }
                if seen.len() > MAX_EXTENSION_RECORDS {
                    return Err(Error::LimitExceeded {
                        what: "extension records of one file",
                        value: u64::try_from(seen.len()).unwrap_or(u64::MAX),
                        limit: u64::try_from(MAX_EXTENSION_RECORDS).unwrap_or(u64::MAX),
                    });
                }
                let erec = self.load_record(ext)?;
                if erec.flags & FLAG_IN_USE == 0 || erec.base_ref & RECORD_MASK != number {
                    return Err(Error::BadRecord {
                        record: ext,
                        reason: format!(
                            "listed as an extension of record {number}, but its base reference is {} (flags {:#x})",
                            erec.base_ref & RECORD_MASK,
                            erec.flags
                        ),
                    });
                }
                attrs.extend(
                    erec.attrs
                        .into_iter()
                        .filter(|a| a.type_code != attr_type::ATTRIBUTE_LIST),
                );
            }
        }
        let attrs = merge_fragments(number, attrs)?;
        Ok(Node {
            id: number | (u64::from(rec.sequence) << 48),
            record: number,
            flags: rec.flags,
            attrs,
        })
    }

    /// The whole value of an attribute, at most `limit` bytes.
    fn attr_bytes(
        &self,
        record: u64,
        a: &Attribute,
        limit: u64,
        what: &'static str,
    ) -> Result<Vec<u8>> {
        match &a.value {
            AttrValue::Resident { value, .. } => Ok(value.clone()),
            AttrValue::NonResident(nr) => {
                if nr.data_size > limit {
                    return Err(Error::LimitExceeded {
                        what,
                        value: nr.data_size,
                        limit,
                    });
                }
                let r = StreamReader::new(
                    Arc::clone(&self.vol),
                    self.boot.cluster_size,
                    Layout::NonResident {
                        runs: Arc::new(nr.runs.clone()),
                        data_size: nr.data_size,
                        initialized_size: nr.initialized_size,
                        compression_unit: None,
                    },
                    StreamOrigin {
                        record,
                        attr_type: a.type_code,
                    },
                )?;
                let mut b = vec![0u8; usize::try_from(nr.data_size).unwrap_or(0)];
                r.read_stream(&mut b, 0)?;
                Ok(b)
            }
        }
    }

    /// Volume offset of byte `within` of record `number`, when $MFT maps it.
    fn record_volume_offset(&self, number: u64, within: u64) -> Option<u64> {
        let cs = self.boot.cluster_size;
        let pos = number
            .checked_mul(self.boot.file_record_size)?
            .checked_add(within)?;
        let vcn = pos / cs;
        let i = self.mft_runs.partition_point(|r| r.vcn + r.len <= vcn);
        let r = self.mft_runs.get(i).filter(|r| r.vcn <= vcn)?;
        Some((r.lcn? + (vcn - r.vcn)) * cs + pos % cs)
    }

    fn reader_for(&self, node: &Node, a: &Attribute) -> Result<StreamReader> {
        let layout = match &a.value {
            AttrValue::Resident {
                value,
                value_offset,
            } => Layout::Resident {
                data: Arc::new(value.clone()),
                volume_offset: self.record_volume_offset(a.record, *value_offset as u64),
            },
            AttrValue::NonResident(nr) => {
                if a.flags & ATTR_ENCRYPTED != 0 {
                    return Err(Error::Unsupported {
                        node: node.id,
                        what: "EFS-encrypted stream",
                    });
                }
                let compression_unit = if a.flags & ATTR_COMPRESSED != 0 && nr.compression_unit != 0
                {
                    if nr.compression_unit > 16 {
                        return Err(Error::LimitExceeded {
                            what: "compression unit exponent",
                            value: u64::from(nr.compression_unit),
                            limit: 16,
                        });
                    }
                    Some(1u64 << nr.compression_unit)
                } else {
                    None
                };
                Layout::NonResident {
                    runs: Arc::new(nr.runs.clone()),
                    data_size: nr.data_size,
                    initialized_size: nr.initialized_size,
                    compression_unit,
                }
            }
        };
        StreamReader::new(
            Arc::clone(&self.vol),
            self.boot.cluster_size,
            layout,
            StreamOrigin {
                record: node.record,
                attr_type: a.type_code,
            },
        )
    }

    fn stream_reader(&self, node: &Node, stream: Option<&str>) -> Result<StreamReader> {
        let want = stream.unwrap_or("");
        let found = node
            .attrs
            .iter()
            .find(|a| a.type_code == attr_type::DATA && escape_name_utf16(&a.name) == want);
        if found.is_none() && stream.is_none() && node.flags & FLAG_DIRECTORY == 0 {
            // A file without main data (a metadata file holding only named streams or
            // indexes, $Secure, $Extend/$Quota): its main data is empty.
            return StreamReader::new(
                Arc::clone(&self.vol),
                self.boot.cluster_size,
                Layout::Resident {
                    data: Arc::new(Vec::new()),
                    volume_offset: None,
                },
                StreamOrigin {
                    record: node.record,
                    attr_type: attr_type::DATA,
                },
            );
        }
        let attr = node
            .attrs
            .iter()
            .find(|a| a.type_code == attr_type::DATA && escape_name_utf16(&a.name) == want)
            .ok_or_else(|| Error::NoSuchStream {
                node: node.id,
                stream: want.to_string(),
            })?;
        self.reader_for(node, attr)
    }

    /// The raw $I30 entries of a directory, in index order.
    /// With `keep_dos`, DOS short names of files that also have a long name are kept (for
    /// lookups by 8.3 name).
    fn raw_entries(&self, node: &Node, keep_dos: bool) -> Result<Vec<RawEntry>> {
        if node.flags & FLAG_DIRECTORY == 0 {
            return Err(Error::NotADirectory(node.id));
        }
        let root = match node.find(attr_type::INDEX_ROOT, &I30) {
            Some(Attribute {
                value: AttrValue::Resident { value, .. },
                ..
            }) => value,
            _ => {
                return Err(Error::BadIndex {
                    record: node.record,
                    vcn: None,
                    reason: "directory has no resident $INDEX_ROOT:$I30".into(),
                })
            }
        };
        let alloc = match node.find(attr_type::INDEX_ALLOCATION, &I30) {
            Some(a) => Some(self.reader_for(node, a)?),
            None => None,
        };
        let walk = IndexWalk {
            record: node.record,
            root,
            alloc: alloc.as_ref(),
            cluster_size: self.boot.cluster_size,
            max_depth: self.limits.max_tree_depth,
            max_steps: self
                .limits
                .max_walk_steps
                .min(self.limits.max_dir_entries.saturating_mul(2)),
        };
        let mut out = Vec::new();
        let max_entries = self.limits.max_dir_entries;
        let record = node.record;
        walk.for_each(&mut |e| {
            let key_len = usize::from(u16_le(e, 10));
            let key = &e[0x10..0x10 + key_len];
            if key.len() < 0x42 {
                return Err(Error::BadIndex {
                    record,
                    vcn: None,
                    reason: format!(
                        "$I30 key of {} bytes is shorter than a $FILE_NAME",
                        key.len()
                    ),
                });
            }
            let n = usize::from(key[0x40]);
            if 0x42 + 2 * n > key.len() {
                return Err(Error::BadIndex {
                    record,
                    vcn: None,
                    reason: format!("$I30 name of {n} units runs past its key"),
                });
            }
            if out.len() as u64 >= max_entries {
                return Err(Error::LimitExceeded {
                    what: "directory entries",
                    value: out.len() as u64 + 1,
                    limit: max_entries,
                });
            }
            out.push(RawEntry {
                reference: u64_le(e, 0),
                name: utf16(&key[0x42..0x42 + 2 * n]),
                namespace: key[0x41],
                flags: u32_le(key, 0x38),
                reparse_tag: u32_le(key, 0x3C),
            });
            Ok(())
        })?;
        // List a file once: drop DOS-only short names of files that also have a long name in
        // this directory, and the directory's own entry (`.` in the root).
        let long: HashSet<u64> = out
            .iter()
            .filter(|e| e.namespace != NAMESPACE_DOS)
            .map(|e| e.reference & RECORD_MASK)
            .collect();
        out.retain(|e| {
            e.reference & RECORD_MASK != node.record
                && (keep_dos
                    || e.namespace != NAMESPACE_DOS
                    || !long.contains(&(e.reference & RECORD_MASK)))
        });
        Ok(out)
    }

    fn reparse_of(&self, node: &Node) -> Result<Option<ReparsePoint>> {
        let Some(a) = node.find(attr_type::REPARSE_POINT, &[]) else {
            return Ok(None);
        };
        let raw = self.attr_bytes(
            node.record,
            a,
            MAX_REPARSE_BYTES as u64,
            "reparse point bytes",
        )?;
        decode_reparse(node.record, raw).map(Some)
    }

    fn kind_of(&self, node: &Node) -> Result<(FileKind, Option<ReparsePoint>)> {
        let rp = self.reparse_of(node)?;
        let kind = match &rp {
            Some(r) if matches!(r.tag, TAG_SYMLINK | TAG_MOUNT_POINT | TAG_WSL_SYMLINK) => {
                FileKind::Symlink
            }
            // WOF-compressed files keep their data in a stream this reader does not decode:
            // listing them as files would restore wrong bytes.
            Some(r) if r.tag == TAG_WOF => FileKind::Other,
            // WSL special files: AF_UNIX socket, FIFO, character and block devices.
            Some(r) if matches!(r.tag, 0x8000_0023..=0x8000_0026) => FileKind::Other,
            // Any other reparse point (OneDrive/cloud placeholders, dedup, ...) is still the
            // folder or file it is: list it and read its local data, as TSK does.
            Some(_) if node.flags & FLAG_DIRECTORY != 0 => FileKind::Dir,
            Some(_) => FileKind::File,
            None if node.flags & FLAG_DIRECTORY != 0 => FileKind::Dir,
            None => FileKind::File,
        };
        Ok((kind, rp))
    }

    fn upcase_eq(&self, a: &[u16], b: &[u16]) -> bool {
        let up = |c: u16| self.upcase.get(usize::from(c)).copied().unwrap_or(c);
        a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| up(x) == up(y))
    }

    /// Resolves an absolute path (`/dir/file`, `/` separated) from the root, comparing names
    /// case-insensitively through the volume's $UpCase table (an exact-case match wins; DOS
    /// 8.3 short names match too). Links are not followed.
    pub fn lookup(&self, path: &str) -> Result<NodeId> {
        let mut cur = self.root_id;
        let mut depth = 0u32;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            depth += 1;
            if depth > self.limits.max_dir_depth {
                return Err(Error::LimitExceeded {
                    what: "path depth",
                    value: u64::from(depth),
                    limit: u64::from(self.limits.max_dir_depth),
                });
            }
            let node = self.load_node(cur)?;
            let entries = self.raw_entries(&node, true)?;
            let want = name16(comp);
            let found = entries
                .iter()
                .find(|e| escape_name_utf16(&e.name) == comp)
                .or_else(|| entries.iter().find(|e| self.upcase_eq(&e.name, &want)));
            match found {
                Some(e) => cur = e.reference,
                None => {
                    return Err(Error::NotFound {
                        path: path.to_string(),
                        component: comp.to_string(),
                    })
                }
            }
        }
        Ok(cur)
    }

    /// A path of `node` from the root, following its first long $FILE_NAME's parents.
    pub fn path_of(&self, node: NodeId) -> Result<String> {
        let mut parts: Vec<String> = Vec::new();
        let mut cur = node;
        let mut seen = HashSet::new();
        while cur & RECORD_MASK != ROOT_RECORD {
            if !seen.insert(cur & RECORD_MASK) {
                return Err(Error::Loop(format!(
                    "parent chain of node {node:#x} revisits record {}",
                    cur & RECORD_MASK
                )));
            }
            if parts.len() as u64 >= u64::from(self.limits.max_dir_depth) {
                return Err(Error::LimitExceeded {
                    what: "parent chain depth",
                    value: parts.len() as u64,
                    limit: u64::from(self.limits.max_dir_depth),
                });
            }
            let n = self.load_node(cur)?;
            let names = file_names(&n);
            let best = names
                .iter()
                .find(|f| f.namespace != NAMESPACE_DOS)
                .or(names.first())
                .ok_or_else(|| Error::BadRecord {
                    record: n.record,
                    reason: "no $FILE_NAME".into(),
                })?;
            parts.push(escape_name_utf16(&best.name));
            cur = best.parent;
        }
        parts.reverse();
        Ok(format!("/{}", parts.join("/")))
    }

    /// NTFS version (major, minor) from $Volume, e.g. (3, 1).
    pub fn version(&self) -> Option<(u8, u8)> {
        self.version
    }

    /// The reparse point of a node, if it has one (tag, decoded link target, raw buffer).
    pub fn reparse_point(&self, node: NodeId) -> Result<Option<ReparsePoint>> {
        let n = self.load_node(node)?;
        self.reparse_of(&n)
    }

    fn sii_map(&self) -> &SiiMap {
        self.sii.get_or_init(|| {
            let sii = name16("$SII");
            let node = self.load_node(SECURE_RECORD).map_err(|e| e.to_string())?;
            let root = match node.find(attr_type::INDEX_ROOT, &sii) {
                Some(Attribute {
                    value: AttrValue::Resident { value, .. },
                    ..
                }) => value,
                _ => return Err("$Secure has no $INDEX_ROOT:$SII".to_string()),
            };
            let alloc = match node.find(attr_type::INDEX_ALLOCATION, &sii) {
                Some(a) => Some(self.reader_for(&node, a).map_err(|e| e.to_string())?),
                None => None,
            };
            let walk = IndexWalk {
                record: SECURE_RECORD,
                root,
                alloc: alloc.as_ref(),
                cluster_size: self.boot.cluster_size,
                max_depth: self.limits.max_tree_depth,
                max_steps: self
                    .limits
                    .max_walk_steps
                    .min(self.limits.max_dir_entries.saturating_mul(2)),
            };
            let mut map = HashMap::new();
            walk.for_each(&mut |e| {
                let doff = usize::from(u16_le(e, 0));
                let dlen = usize::from(u16_le(e, 2));
                if e.len() < 0x14 || doff + dlen > e.len() || dlen < 20 {
                    return Err(Error::BadIndex {
                        record: SECURE_RECORD,
                        vcn: None,
                        reason: format!("$SII entry data {dlen} bytes at {doff} outside the entry"),
                    });
                }
                let id = u32_le(e, 0x10);
                let d = &e[doff..doff + dlen];
                map.insert(id, (u64_le(d, 8), u32_le(d, 16)));
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            Ok(map)
        })
    }

    fn secure_descriptor(&self, id: u32) -> Result<Option<Vec<u8>>> {
        let Ok(map) = self.sii_map() else {
            return Ok(None);
        };
        let Some(&(offset, len)) = map.get(&id) else {
            return Ok(None);
        };
        let len = u64::from(len);
        if !(20..=MAX_SECURITY_DESCRIPTOR_BYTES).contains(&len) {
            return Err(Error::LimitExceeded {
                what: "security descriptor bytes",
                value: len,
                limit: MAX_SECURITY_DESCRIPTOR_BYTES,
            });
        }
        let node = self.load_node(SECURE_RECORD)?;
        let r = self.stream_reader(&node, Some("$SDS"))?;
        if offset.checked_add(len).is_none_or(|e| e > r.size()) {
            return Err(Error::BadSecurityDescriptor(format!(
                "$SDS entry of id {id} ({len} bytes at {offset}) past the end of $SDS"
            )));
        }
        let mut b = vec![0u8; usize::try_from(len).unwrap_or(0)];
        r.read_stream(&mut b, offset)?;
        if u32_le(&b, 4) != id {
            return Err(Error::BadSecurityDescriptor(format!(
                "$SDS entry at {offset} has id {}, $SII says {id}",
                u32_le(&b, 4)
            )));
        }
        Ok(Some(b[20..].to_vec()))
    }

    fn usage(&self) -> &std::result::Result<Usage, String> {
        self.usage.get_or_init(|| {
            let mut used = 0u64;
            self.walk_bitmap(&mut |_, n| {
                used += n;
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            Ok(Usage {
                used_clusters: used,
            })
        })
    }

    /// Calls `f(first_cluster, count)` for each run of allocated clusters in $Bitmap.
    fn walk_bitmap(&self, f: &mut dyn FnMut(u64, u64) -> Result<()>) -> Result<()> {
        let node = self.load_node(BITMAP_RECORD)?;
        let r = self.stream_reader(&node, None)?;
        let total = self.boot.total_clusters;
        let need = total.div_ceil(8);
        if r.size() < need {
            return Err(Error::BadRecord {
                record: BITMAP_RECORD,
                reason: format!(
                    "$Bitmap is {} bytes, {total} clusters need {need}",
                    r.size()
                ),
            });
        }
        if need > self.limits.max_table_bytes {
            return Err(Error::LimitExceeded {
                what: "$Bitmap bytes",
                value: need,
                limit: self.limits.max_table_bytes,
            });
        }
        let mut buf = vec![0u8; BITMAP_CHUNK];
        let mut run_start: Option<u64> = None;
        let mut off = 0u64;
        while off < need {
            let n = usize::try_from((need - off).min(BITMAP_CHUNK as u64)).unwrap_or(BITMAP_CHUNK);
            r.read_stream(&mut buf[..n], off)?;
            for (i, &byte) in buf[..n].iter().enumerate() {
                let base = (off + i as u64) * 8;
                if byte == 0 && run_start.is_none() || byte == 0xFF && run_start.is_some() {
                    continue;
                }
                for bit in 0..8u64 {
                    let c = base + bit;
                    if c >= total {
                        break;
                    }
                    let set = byte & (1 << bit) != 0;
                    match (set, run_start) {
                        (true, None) => run_start = Some(c),
                        (false, Some(s)) => {
                            f(s, c - s)?;
                            run_start = None;
                        }
                        _ => {}
                    }
                }
            }
            off += n as u64;
        }
        if let Some(s) = run_start {
            f(s, total - s)?;
        }
        Ok(())
    }

    fn metadata_of(&self, node: &Node) -> Result<Metadata> {
        let (kind, rp) = self.kind_of(node)?;
        let mut m = Metadata::new(node.id, kind, 0);
        let mut security_id = 0u32;
        if let Some(Attribute {
            value: AttrValue::Resident { value: si, .. },
            ..
        }) = node.find(attr_type::STANDARD_INFORMATION, &[])
        {
            if si.len() >= 0x24 {
                // A FILETIME of 0 means "never set" (ntfs-3g leaves $MFT's times at 0),
                // not 1601-01-01.
                let time = |at: usize| {
                    let ticks = u64_le(si, at);
                    (ticks != 0).then(|| Timestamp::from_filetime(ticks))
                };
                m.btime = time(0);
                m.mtime = time(8);
                m.ctime = time(0x10);
                m.atime = time(0x18);
                let mut attrs = u32_le(si, 0x20);
                if node.flags & FLAG_DIRECTORY != 0 {
                    attrs |= FILE_ATTRIBUTE_DIRECTORY;
                }
                m.windows_attributes = Some(attrs);
            }
            if si.len() >= 0x38 {
                security_id = u32_le(si, 0x34);
            }
        }
        let names = file_names(node);
        let long = names
            .iter()
            .filter(|n| n.namespace != NAMESPACE_DOS)
            .count();
        m.nlink = u32::try_from(if long > 0 { long } else { names.len() })
            .unwrap_or(u32::MAX)
            .max(1);
        let mut allocated = 0u64;
        for a in node.attrs.iter().filter(|a| a.type_code == attr_type::DATA) {
            let (size, alloc) = match &a.value {
                AttrValue::Resident { value, .. } => (value.len() as u64, 0),
                AttrValue::NonResident(nr) => (
                    nr.data_size,
                    nr.runs
                        .iter()
                        .filter(|r| r.lcn.is_some())
                        .map(|r| r.len)
                        .sum::<u64>()
                        * self.boot.cluster_size,
                ),
            };
            if a.name.is_empty() {
                m.size = size;
                allocated = alloc;
            } else {
                m.streams.push(StreamInfo {
                    name: escape_name_utf16(&a.name),
                    size,
                });
            }
        }
        m.allocated = Some(allocated);
        if kind == FileKind::Dir {
            m.size = 0;
        }
        if let Some(rp) = rp {
            if let Some(t) = &rp.target {
                m.size = unescaped_len(t);
                m.symlink_target = Some(t.clone());
            }
            m.xattrs.push(Xattr {
                name: "system.ntfs_reparse_data".into(),
                value: rp.raw,
            });
        }
        if let Some(a) = node.find(attr_type::EA, &[]) {
            let eas = self.attr_bytes(node.record, a, MAX_EA_BYTES, "$EA bytes")?;
            m.unix = wsl_unix_meta(&eas);
        }
        m.security_descriptor = if let Some(a) = node.find(attr_type::SECURITY_DESCRIPTOR, &[]) {
            Some(self.attr_bytes(
                node.record,
                a,
                MAX_SECURITY_DESCRIPTOR_BYTES,
                "security descriptor bytes",
            )?)
        } else if security_id != 0 {
            self.secure_descriptor(security_id)?
        } else {
            None
        };
        Ok(m)
    }
}

/// WSL's Unix metadata: extended attributes `$LXMOD` (st_mode), `$LXUID`, `$LXGID` (u32
/// each), in a FILE_FULL_EA_INFORMATION list. `None` without `$LXMOD`.
fn wsl_unix_meta(eas: &[u8]) -> Option<UnixMeta> {
    let (mut mode, mut uid, mut gid) = (None, 0u32, 0u32);
    let mut pos = 0usize;
    while pos + 8 <= eas.len() {
        let next = usize::try_from(u32_le(eas, pos)).unwrap_or(usize::MAX);
        let name_len = usize::from(eas[pos + 5]);
        let value_len = usize::from(u16_le(eas, pos + 6));
        let name_end = pos + 8 + name_len;
        let value_start = name_end + 1;
        if value_start + value_len > eas.len() {
            break;
        }
        let value = &eas[value_start..value_start + value_len];
        if value.len() == 4 {
            let v = u32_le(value, 0);
            match &eas[pos + 8..name_end] {
                b"$LXMOD" => mode = Some(v),
                b"$LXUID" => uid = v,
                b"$LXGID" => gid = v,
                _ => {}
            }
        }
        if next == 0 {
            break;
        }
        pos = pos.saturating_add(next);
    }
    mode.map(|mode| UnixMeta { mode, uid, gid })
}

/// Byte length of an escaped name once `\\` escapes are undone (`\u{..}`/`\x..` count as
/// their escaped text: such names have no exact UTF-8 form).
fn unescaped_len(s: &str) -> u64 {
    (s.len() - s.matches("\\\\").count()) as u64
}

struct FileName {
    parent: u64,
    namespace: u8,
    name: Vec<u16>,
}

fn file_names(node: &Node) -> Vec<FileName> {
    node.attrs
        .iter()
        .filter(|a| a.type_code == attr_type::FILE_NAME)
        .filter_map(|a| match &a.value {
            AttrValue::Resident { value, .. } if value.len() >= 0x42 => {
                let n = usize::from(value[0x40]);
                (0x42 + 2 * n <= value.len()).then(|| FileName {
                    parent: u64_le(value, 0),
                    namespace: value[0x41],
                    name: utf16(&value[0x42..0x42 + 2 * n]),
                })
            }
            _ => None,
        })
        .collect()
}

/// Joins the fragments of each non-resident attribute (same type and name, spread over
/// extension records) into one run list, in VCN order.
fn merge_fragments(record: u64, attrs: Vec<Attribute>) -> Result<Vec<Attribute>> {
    let mut out: Vec<Attribute> = Vec::new();
    let mut frags: Vec<Attribute> = Vec::new();
    for a in attrs {
        match a.value {
            AttrValue::NonResident(_) => frags.push(a),
            AttrValue::Resident { .. } => out.push(a),
        }
    }
    frags.sort_by(|a, b| {
        let va = match &a.value {
            AttrValue::NonResident(n) => n.start_vcn,
            AttrValue::Resident { .. } => 0,
        };
        let vb = match &b.value {
            AttrValue::NonResident(n) => n.start_vcn,
            AttrValue::Resident { .. } => 0,
        };
        (a.type_code, &a.name, va).cmp(&(b.type_code, &b.name, vb))
    });
    let mut merged: Vec<Attribute> = Vec::new();
    for f in frags {
        let AttrValue::NonResident(nr) = &f.value else {
            continue;
        };
        if let Some(last) = merged.last_mut() {
            if last.type_code == f.type_code && last.name == f.name {
                let AttrValue::NonResident(acc) = &mut last.value else {
                    continue;
                };
                if nr.start_vcn != acc.last_vcn.wrapping_add(1) {
                    return Err(Error::BadRunList {
                        record,
                        attr_type: f.type_code,
                        reason: format!(
                            "fragment starts at vcn {}, previous one ends at vcn {}",
                            nr.start_vcn, acc.last_vcn
                        ),
                    });
                }
                acc.runs.extend_from_slice(&nr.runs);
                acc.last_vcn = nr.last_vcn;
                continue;
            }
        }
        if nr.start_vcn != 0 {
            return Err(Error::BadRunList {
                record,
                attr_type: f.type_code,
                reason: format!("first fragment starts at vcn {}, expected 0", nr.start_vcn),
            });
        }
        merged.push(f);
    }
    out.extend(merged);
    Ok(out)
}

/// Decodes a REPARSE_DATA_BUFFER.
fn decode_reparse(record: u64, raw: Vec<u8>) -> Result<ReparsePoint> {
    let bad = |reason: String| Error::BadReparsePoint { record, reason };
    if raw.len() < 8 {
        return Err(bad(format!("{} bytes, header needs 8", raw.len())));
    }
    let tag = u32_le(&raw, 0);
    let dlen = usize::from(u16_le(&raw, 4));
    if 8 + dlen > raw.len() {
        return Err(bad(format!(
            "data length {dlen} runs past the {} byte buffer",
            raw.len()
        )));
    }
    let d = &raw[8..8 + dlen];
    let name_at = |buf_start: usize, off_field: usize| -> Result<Vec<u16>> {
        if d.len() < off_field + 4 {
            return Err(bad("path offsets run past the data".into()));
        }
        let off = usize::from(u16_le(d, off_field));
        let len = usize::from(u16_le(d, off_field + 2));
        let s = buf_start + off;
        if s + len > d.len() {
            return Err(bad(format!(
                "path of {len} bytes at {off} runs past the data"
            )));
        }
        Ok(utf16(&d[s..s + len]))
    };
    let target = match tag {
        TAG_SYMLINK | TAG_MOUNT_POINT => {
            let buf_start = if tag == TAG_SYMLINK { 12 } else { 8 };
            let print = name_at(buf_start, 4)?;
            let subst = name_at(buf_start, 0)?;
            let mut t = if print.is_empty() { subst } else { print };
            while t.last() == Some(&0) {
                t.pop();
            }
            Some(escape_name_utf16(&t))
        }
        TAG_WSL_SYMLINK => {
            if d.len() < 4 {
                return Err(bad("WSL symlink without version field".into()));
            }
            Some(escape_name_bytes(&d[4..]))
        }
        _ => None,
    };
    Ok(ReparsePoint { tag, target, raw })
}

impl FileSystem for NtfsFs {
    type Error = Error;

    fn info(&self) -> VolumeInfo {
        let cs = self.boot.cluster_size;
        let total_bytes = self.boot.volume_bytes();
        let mut warnings = self.warnings.clone();
        let (used, free) = match self.usage() {
            Ok(u) => (
                u.used_clusters * cs,
                (self.boot.total_clusters - u.used_clusters.min(self.boot.total_clusters)) * cs,
            ),
            Err(e) => {
                warnings.push(format!("$Bitmap unreadable: {e}"));
                (total_bytes, 0)
            }
        };
        if let Err(e) = self.sii_map() {
            warnings.push(format!("$Secure unreadable: {e}"));
        }
        VolumeInfo {
            fs_type: "ntfs",
            label: self.label.clone(),
            uuid: Some(format!("{:016X}", self.boot.serial)),
            block_size: u32::try_from(cs).unwrap_or(u32::MAX),
            total_bytes,
            used_bytes: used,
            free_bytes: free,
            warnings,
        }
    }

    fn root(&self) -> NodeId {
        self.root_id
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let node = self.load_node(dir)?;
        let raw = self.raw_entries(&node, false)?;
        let mut out = Vec::with_capacity(raw.len());
        for e in raw {
            let kind = match self.load_node(e.reference).and_then(|n| self.kind_of(&n)) {
                Ok((k, _)) => k,
                // The index's copy of the flags when the record itself cannot be read.
                Err(_) => {
                    if e.flags & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
                        if matches!(
                            e.reparse_tag,
                            TAG_SYMLINK | TAG_MOUNT_POINT | TAG_WSL_SYMLINK
                        ) {
                            FileKind::Symlink
                        } else {
                            FileKind::Other
                        }
                    } else if e.flags & FILE_NAME_IS_DIRECTORY != 0 {
                        FileKind::Dir
                    } else {
                        FileKind::File
                    }
                }
            };
            out.push(DirEntry {
                name: escape_name_utf16(&e.name),
                id: e.reference,
                kind,
            });
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        let n = self.load_node(node)?;
        self.metadata_of(&n)
    }

    fn open(&self, node: NodeId, stream: Option<&str>) -> Result<Arc<dyn ReadAt>> {
        let n = self.load_node(node)?;
        Ok(Arc::new(self.stream_reader(&n, stream)?))
    }

    fn extents(&self, node: NodeId, stream: Option<&str>) -> Result<Vec<FileExtent>> {
        let n = self.load_node(node)?;
        Ok(self.stream_reader(&n, stream)?.extents())
    }

    fn used_map(&self) -> Result<AllocationMap> {
        let cs = self.boot.cluster_size;
        let mut map = AllocationMap::new(self.boot.volume_bytes());
        // A checkerboard bitmap would make one run per cluster: cap the map's memory.
        let max_runs = self.limits.max_table_bytes / std::mem::size_of::<cairn_io::Run>() as u64;
        let mut runs = 0u64;
        self.walk_bitmap(&mut |c, n| {
            runs += 2; // a used run and the free gap before it
            if runs > max_runs {
                return Err(Error::LimitExceeded {
                    what: "used-map runs",
                    value: runs,
                    limit: max_runs,
                });
            }
            map.push(c * cs, n * cs, RangeKind::Data)?;
            Ok(())
        })?;
        Ok(map.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ea(name: &[u8], value: &[u8], last: bool) -> Vec<u8> {
        let mut e = vec![0u8; 8];
        e[5] = u8::try_from(name.len()).unwrap();
        e[6..8].copy_from_slice(&u16::try_from(value.len()).unwrap().to_le_bytes());
        e.extend_from_slice(name);
        e.push(0);
        e.extend_from_slice(value);
        while !e.len().is_multiple_of(4) {
            e.push(0);
        }
        if !last {
            let n = u32::try_from(e.len()).unwrap();
            e[0..4].copy_from_slice(&n.to_le_bytes());
        }
        e
    }

    #[test]
    fn wsl_eas() {
        let mut list = ea(b"$LXUID", &1000u32.to_le_bytes(), false);
        list.extend(ea(b"$LXGID", &100u32.to_le_bytes(), false));
        list.extend(ea(b"$LXMOD", &0o100_644u32.to_le_bytes(), true));
        assert_eq!(
            wsl_unix_meta(&list),
            Some(UnixMeta {
                mode: 0o100_644,
                uid: 1000,
                gid: 100
            })
        );
        assert_eq!(wsl_unix_meta(&ea(b"$LXUID", &[1, 0, 0, 0], true)), None);
    }

    #[test]
    fn reparse_buffers() {
        // WSL symlink: version 2, then the UTF-8 target.
        let mut raw = TAG_WSL_SYMLINK.to_le_bytes().to_vec();
        raw.extend_from_slice(&13u16.to_le_bytes());
        raw.extend_from_slice(&[0, 0, 2, 0, 0, 0]);
        raw.extend_from_slice(b"a\\b/c.txt");
        let rp = decode_reparse(7, raw).unwrap();
        assert_eq!(rp.target.as_deref(), Some("a\\\\b/c.txt"));
        let short = decode_reparse(7, TAG_SYMLINK.to_le_bytes().to_vec());
        assert!(matches!(
            short,
            Err(Error::BadReparsePoint { record: 7, .. })
        ));
        let mut raw = TAG_SYMLINK.to_le_bytes().to_vec();
        raw.extend_from_slice(&12u16.to_le_bytes());
        raw.extend_from_slice(&[0, 0]);
        raw.extend_from_slice(&[0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            decode_reparse(7, raw),
            Err(Error::BadReparsePoint { .. })
        ));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300), tag in prop_oneof![Just(TAG_SYMLINK), Just(TAG_MOUNT_POINT), Just(TAG_WSL_SYMLINK), any::<u32>()]) {
            let _ = wsl_unix_meta(&b);
            let mut raw = tag.to_le_bytes().to_vec();
            raw.extend_from_slice(&b);
            let _ = decode_reparse(1, raw);
        }
    }
}
