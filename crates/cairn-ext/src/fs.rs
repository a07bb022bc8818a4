//! The opened volume: inode access, directories, xattrs, the `FileSystem` impl.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use cairn_io::le::{u32_be, u32_le};
use cairn_io::{AllocationMap, Limits, ReadAt};
use cairn_vfs::{
    escape_name_bytes, DirEntry, FileExtent, FileKind, FileSystem, Metadata, NodeId, UnixMeta,
    VolumeInfo, Xattr,
};

use crate::dir::{self, BlockCtx, RawEntry};
use crate::file::MappedFile;
use crate::inode::{Inode, FL_ENCRYPT, FL_INDEX, FL_INLINE_DATA, GOOD_OLD_INODE_SIZE, I_BLOCK_LEN};
use crate::map::{build_map, FileMap};
use crate::sb::{self, GroupDesc, Superblock};
use crate::xattr::{self, RawXattr, XattrValue};
use crate::{Error, Result};

/// The root directory's inode number.
pub const ROOT_INO: NodeId = 2;
/// Most runtime warnings (lenient checksum mismatches) kept for [`FileSystem::info`].
const MAX_RUNTIME_WARNINGS: usize = 100;
/// Journal superblock magic (big-endian, like all of JBD2).
const JBD2_MAGIC: u32 = 0xC03B_3998;
/// Largest symlink target read (one 64 KiB block, the format's largest).
const MAX_SYMLINK_LEN: u64 = 65536;
/// Blocks read at once while listing a directory.
const DIR_READ_BLOCKS: u64 = 64;

/// How a volume is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtOptions {
    /// Verify metadata_csum checksums and fail with [`Error::Checksum`] on a mismatch
    /// (default). `false` reads anyway and lists mismatches in `VolumeInfo::warnings`; it
    /// also turns an unreadable journal superblock from an error into a warning.
    pub verify_checksums: bool,
    /// Caps on untrusted numbers (directory entries, table bytes, symlink follows...).
    pub limits: Limits,
    /// Most runs (discontiguous pieces) one file's block map may have.
    pub max_map_runs: usize,
}

impl Default for ExtOptions {
    fn default() -> Self {
        ExtOptions {
            verify_checksums: true,
            limits: Limits::DEFAULT,
            // 4 Mi runs (~100 MiB of map): far beyond any real file's fragmentation.
            max_map_runs: 1 << 22,
        }
    }
}

impl ExtOptions {
    /// Options that read past checksum mismatches (reporting them as warnings).
    pub fn lenient() -> Self {
        ExtOptions {
            verify_checksums: false,
            ..Self::default()
        }
    }
}

pub(crate) struct Inner {
    pub src: Arc<dyn ReadAt>,
    pub sb: Superblock,
    pub groups: Vec<GroupDesc>,
    pub opts: ExtOptions,
    pub csum_seed: u32,
    open_warnings: Vec<String>,
    runtime_warnings: Mutex<Vec<String>>,
}

impl Inner {
    /// Compares a checksum: an error when verifying, a warning when lenient.
    pub(crate) fn check_csum(
        &self,
        what: &'static str,
        location: u64,
        stored: u32,
        computed: u32,
    ) -> Result<()> {
        if stored == computed {
            return Ok(());
        }
        let e = Error::Checksum {
            what,
            location,
            stored,
            computed,
        };
        if self.opts.verify_checksums {
            return Err(e);
        }
        if let Ok(mut w) = self.runtime_warnings.lock() {
            if w.len() < MAX_RUNTIME_WARNINGS {
                w.push(e.to_string());
            }
        }
        Ok(())
    }

    fn check_block(&self, ino: u64, block: u64) -> Result<()> {
        if block >= self.sb.blocks_count || block < u64::from(self.sb.first_data_block) {
            return Err(Error::BlockOutOfRange {
                ino,
                block,
                blocks_count: self.sb.blocks_count,
            });
        }
        Ok(())
    }

    /// Byte offset of inode `ino` on the volume.
    fn inode_offset(&self, ino: u64) -> Result<u64> {
        if ino == 0 || ino > u64::from(self.sb.inodes_count) {
            return Err(Error::InodeOutOfRange {
                ino,
                max: self.sb.inodes_count,
            });
        }
        let ipg = u64::from(self.sb.inodes_per_group);
        let group = usize::try_from((ino - 1) / ipg).unwrap_or(usize::MAX);
        let gd = self.groups.get(group).ok_or(Error::InodeOutOfRange {
            ino,
            max: self.sb.inodes_count,
        })?;
        Ok(gd.inode_table * self.sb.bs() + ((ino - 1) % ipg) * u64::from(self.sb.inode_size))
    }

    pub(crate) fn read_inode(&self, ino: u64) -> Result<Inode> {
        let off = self.inode_offset(ino)?;
        let raw = self.src.read_vec_at(off, self.sb.inode_size as usize)?;
        let huge = self.sb.has_ro_compat(sb::RO_COMPAT_HUGE_FILE);
        let inode = Inode::parse(ino, raw, huge, self.sb.block_size);
        if inode.raw.len() > GOOD_OLD_INODE_SIZE
            && (GOOD_OLD_INODE_SIZE + inode.extra_isize > inode.raw.len()
                || !inode.extra_isize.is_multiple_of(4))
        {
            return Err(Error::BadInode {
                ino,
                reason: format!(
                    "i_extra_isize {} does not fit the {}-byte inode",
                    inode.extra_isize,
                    inode.raw.len()
                ),
            });
        }
        if self.sb.metadata_csum() {
            let (stored, computed) = inode.checksum(self.csum_seed);
            self.check_csum("inode", ino, stored, computed)?;
        }
        Ok(inode)
    }

    /// All xattrs of an inode (in-inode area, then the external block), values resolved.
    fn xattrs(&self, inode: &Inode) -> Result<Vec<RawXattr>> {
        let mut out = Vec::new();
        let raw = &inode.raw;
        let start = GOOD_OLD_INODE_SIZE + inode.extra_isize;
        if raw.len() > GOOD_OLD_INODE_SIZE
            && start + 4 <= raw.len()
            && u32_le(raw, start) == xattr::XATTR_MAGIC
        {
            // Value offsets count from the first entry, right after the magic.
            xattr::parse_entries(inode.ino, &raw[start + 4..], 0, 0, &mut out)?;
        }
        if inode.file_acl != 0 {
            let block = inode.file_acl;
            self.check_block(inode.ino, block)?;
            let b = self
                .src
                .read_vec_at(block * self.sb.bs(), self.sb.block_size as usize)?;
            let magic = u32_le(&b, 0);
            let nblocks = u32_le(&b, 8);
            if magic != xattr::XATTR_MAGIC || nblocks != 1 {
                return Err(Error::BadXattr {
                    ino: inode.ino,
                    reason: format!(
                        "block {block}: magic {magic:#x} (expected 0xea020000), h_blocks {nblocks} (expected 1)"
                    ),
                });
            }
            if self.sb.metadata_csum() {
                let stored = u32_le(&b, 0x10);
                let mut c = crate::csum::crc32c_raw(self.csum_seed, &block.to_le_bytes());
                c = crate::csum::crc32c_raw(c, &b[..0x10]);
                c = crate::csum::crc32c_raw(c, &[0; 4]);
                c = crate::csum::crc32c_raw(c, &b[0x14..]);
                self.check_csum("xattr block", block, stored, c)?;
            }
            xattr::parse_entries(inode.ino, &b, xattr::BLOCK_HEADER, 0, &mut out)?;
        }
        Ok(out)
    }

    /// The value of an xattr, reading an EA inode when the value lives in one.
    fn xattr_value(&self, owner: u64, v: &XattrValue) -> Result<Vec<u8>> {
        match v {
            XattrValue::Inline(b) => Ok(b.clone()),
            XattrValue::InInode { ino, size } => {
                let ea = self.read_inode(u64::from(*ino))?;
                // EA inodes hold their value in blocks; refusing inline ones also stops a
                // hostile system.data value from pointing back at its owner forever.
                if ea.kind() != FileKind::File || ea.has_flag(FL_INLINE_DATA) {
                    return Err(Error::BadXattr {
                        ino: owner,
                        reason: format!("EA inode {ino} is not a plain regular file"),
                    });
                }
                if ea.size != u64::from(*size) {
                    return Err(Error::BadXattr {
                        ino: owner,
                        reason: format!(
                            "EA inode {ino} holds {} bytes, the entry says {size}",
                            ea.size
                        ),
                    });
                }
                let data = self.data_reader(&ea)?;
                let mut buf = vec![0u8; *size as usize];
                data.read_exact_at(&mut buf, 0)?;
                Ok(buf)
            }
        }
    }

    /// Inline data of an inode: `i_block` then the `system.data` xattr, cut to `i_size`.
    fn inline_data(&self, inode: &Inode) -> Result<Vec<u8>> {
        let mut data = inode.i_block().to_vec();
        for x in self.xattrs(inode)? {
            if x.name == b"system.data" {
                data.extend_from_slice(&self.xattr_value(inode.ino, &x.value)?);
                break;
            }
        }
        let size = usize::try_from(inode.size).unwrap_or(usize::MAX);
        if size > data.len() {
            return Err(Error::BadInode {
                ino: inode.ino,
                reason: format!(
                    "inline data holds {} bytes, i_size is {}",
                    data.len(),
                    inode.size
                ),
            });
        }
        data.truncate(size);
        Ok(data)
    }

    fn is_fast_symlink(&self, inode: &Inode) -> bool {
        if inode.kind() != FileKind::Symlink || inode.has_flag(FL_INLINE_DATA) {
            return false;
        }
        let ea_blocks = if inode.file_acl != 0 {
            self.sb.bs() / 512
        } else {
            0
        };
        inode.blocks_512.saturating_sub(ea_blocks) == 0
    }

    /// The node's bytes as a reader. Inline data and fast symlinks come from the inode.
    pub(crate) fn data_reader(&self, inode: &Inode) -> Result<Arc<dyn ReadAt>> {
        if inode.kind() == FileKind::Other {
            return Ok(Arc::new(Vec::<u8>::new()));
        }
        if inode.has_flag(FL_ENCRYPT) {
            return Err(Error::Encrypted { ino: inode.ino });
        }
        if inode.has_flag(FL_INLINE_DATA) {
            return Ok(Arc::new(self.inline_data(inode)?));
        }
        if self.is_fast_symlink(inode) {
            if inode.size > I_BLOCK_LEN as u64 {
                return Err(Error::BadInode {
                    ino: inode.ino,
                    reason: format!(
                        "fast symlink of {} bytes (i_block holds {I_BLOCK_LEN})",
                        inode.size
                    ),
                });
            }
            // Checked above: at most 60 bytes.
            let n = usize::try_from(inode.size).unwrap_or(I_BLOCK_LEN);
            return Ok(Arc::new(inode.i_block()[..n].to_vec()));
        }
        let map = build_map(self, inode)?;
        Ok(Arc::new(MappedFile {
            src: self.src.clone(),
            block_size: self.sb.bs(),
            size: inode.size,
            runs: map.runs,
        }))
    }

    fn symlink_target(&self, inode: &Inode) -> Result<Vec<u8>> {
        if inode.size > MAX_SYMLINK_LEN {
            return Err(Error::BadInode {
                ino: inode.ino,
                reason: format!("symlink target of {} bytes", inode.size),
            });
        }
        let r = self.data_reader(inode)?;
        // Checked above against MAX_SYMLINK_LEN.
        let mut buf = vec![0u8; usize::try_from(inode.size).unwrap_or(0)];
        r.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    fn block_ctx(&self, dir: u64, lblk: u64) -> BlockCtx {
        BlockCtx {
            dir,
            lblk,
            filetype: self.sb.has_incompat(sb::INCOMPAT_FILETYPE),
            block_size: self.sb.block_size,
            inodes_count: self.sb.inodes_count,
        }
    }

    fn dir_entries(&self, inode: &Inode) -> Result<Vec<RawEntry>> {
        if inode.kind() != FileKind::Dir {
            return Err(Error::NotADirectory { ino: inode.ino });
        }
        let max = self.opts.limits.max_dir_entries;
        let mut out = Vec::new();
        if inode.has_flag(FL_INLINE_DATA) {
            let data = self.inline_data(inode)?;
            // The first 4 bytes are the parent's inode number (the implicit `..`).
            if data.len() > 4 {
                let first = data.len().min(I_BLOCK_LEN);
                dir::parse_block(&data[4..first], self.block_ctx(inode.ino, 0), &mut out, max)?;
                if data.len() > I_BLOCK_LEN {
                    dir::parse_block(
                        &data[I_BLOCK_LEN..],
                        self.block_ctx(inode.ino, 1),
                        &mut out,
                        max,
                    )?;
                }
            }
            return Ok(out);
        }
        let map = build_map(self, inode)?;
        let bs = self.sb.bs();
        let bsz = self.sb.block_size as usize;
        let indexed = inode.has_flag(FL_INDEX);
        let seed = Inode::csum_seed(self.csum_seed, inode.ino, inode.generation);
        let mut buf = Vec::new();
        for run in &map.runs {
            if run.uninit {
                continue;
            }
            let mut done = 0u64;
            while done < run.len {
                let n = (run.len - done).min(DIR_READ_BLOCKS);
                buf.resize(usize::try_from(n * bs).unwrap_or(0), 0);
                self.src.read_exact_at(&mut buf, (run.pblk + done) * bs)?;
                for (i, block) in buf.chunks_exact(bsz).enumerate() {
                    let lblk = run.lblk + done + i as u64;
                    self.dir_block(inode, block, lblk, indexed, seed, &mut out, max)?;
                }
                done += n;
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn dir_block(
        &self,
        inode: &Inode,
        block: &[u8],
        lblk: u64,
        indexed: bool,
        seed: u32,
        out: &mut Vec<RawEntry>,
        max: u64,
    ) -> Result<()> {
        // htree interior blocks read as linear blocks hold only `.`/`..` (dx_root, block 0:
        // `..`'s rec_len spans the index) or one empty record (dx_node): they have no leaf
        // checksum tail, and parsing them yields no entries.
        let dx = indexed && (lblk == 0 || dir::is_dx_node(block, self.sb.block_size));
        let mut body = block;
        if self.sb.metadata_csum() && dx {
            match dir::dx_checksum(block, lblk == 0, seed) {
                Some((stored, computed)) => {
                    self.check_csum("htree block", lblk, stored, computed)?;
                }
                None => self.check_csum("htree block (no checksum tail)", lblk, 1, 0)?,
            }
        } else if self.sb.metadata_csum() {
            match dir::leaf_tail(block) {
                Some(stored) => {
                    let end = block.len() - dir::DIRENT_TAIL;
                    let computed = crate::csum::crc32c_raw(seed, &block[..end]);
                    self.check_csum("directory block", lblk, stored, computed)?;
                    body = &block[..end];
                }
                None => {
                    self.check_csum("directory block (no checksum tail)", lblk, 1, 0)?;
                }
            }
        }
        dir::parse_block(body, self.block_ctx(inode.ino, lblk), out, max)
    }

    fn entry_kind(&self, e: &RawEntry) -> Result<FileKind> {
        if self.sb.has_incompat(sb::INCOMPAT_FILETYPE) {
            let k = match e.file_type {
                1 => Some(FileKind::File),
                2 => Some(FileKind::Dir),
                7 => Some(FileKind::Symlink),
                3..=6 => Some(FileKind::Other),
                _ => None,
            };
            if let Some(k) = k {
                return Ok(k);
            }
        }
        Ok(self.read_inode(u64::from(e.ino))?.kind())
    }
}

/// A read-only ext2/ext3/ext4 volume.
#[derive(Clone)]
pub struct ExtFs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExtFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtFs")
            .field("blocks", &self.inner.sb.blocks_count)
            .field("block_size", &self.inner.sb.block_size)
            .field("groups", &self.inner.sb.group_count)
            .finish()
    }
}

impl ExtFs {
    /// Opens the ext2/3/4 file system on `src` (a volume: a partition or a whole image).
    ///
    /// Checks the superblock, refuses INCOMPAT features it cannot read, reads and checks
    /// every group descriptor, and reads the journal superblock to report a journal that
    /// needs recovery.
    pub fn open(src: Arc<dyn ReadAt>, opts: &ExtOptions) -> Result<ExtFs> {
        let mut raw = [0u8; sb::SB_SIZE];
        src.read_exact_at(&mut raw, sb::SB_OFFSET)?;
        let sb = Superblock::parse(&raw, src.size(), &opts.limits)?;
        let mut warnings = Vec::new();
        if let Some((stored, computed)) = sb.checksum {
            if stored != computed {
                let e = Error::Checksum {
                    what: "superblock",
                    location: sb::SB_OFFSET,
                    stored,
                    computed,
                };
                if opts.verify_checksums {
                    return Err(e);
                }
                warnings.push(e.to_string());
            }
        }
        let groups = sb::read_group_descs(&*src, &sb, opts.verify_checksums, &mut warnings)?;
        if sb.state & 1 == 0 {
            warnings.push("file system was not cleanly unmounted (s_state)".into());
        }
        if sb.state & 2 != 0 {
            warnings.push("file system has errors recorded (s_state)".into());
        }
        if sb.has_incompat(sb::INCOMPAT_RECOVER) {
            warnings.push("journal needs recovery".into());
        }
        let inner = Inner {
            src,
            csum_seed: sb.csum_seed(),
            sb,
            groups,
            opts: opts.clone(),
            open_warnings: Vec::new(),
            runtime_warnings: Mutex::new(Vec::new()),
        };
        let mut inner = inner;
        inner.open_warnings = warnings;
        if inner.sb.compat & sb::COMPAT_HAS_JOURNAL != 0 {
            match journal_warnings(&inner) {
                Ok(w) => inner.open_warnings.extend(w),
                // The data is readable without the journal: lenient mode says so and goes on.
                Err(e) if !inner.opts.verify_checksums => {
                    inner.open_warnings.push(format!("journal unreadable: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ExtFs {
            inner: Arc::new(inner),
        })
    }

    /// Resolves an absolute or root-relative path (`/a/b`, `a/b`; `.` and `..` are
    /// honoured) without following symlinks.
    pub fn lookup(&self, path: &str) -> Result<NodeId> {
        self.lookup_with(path, false)
    }

    /// Resolves a path; with `follow_symlinks`, symlinks met on the way (including the
    /// last component) are followed, at most `Limits::max_symlink_follows` times.
    pub fn lookup_with(&self, path: &str, follow_symlinks: bool) -> Result<NodeId> {
        let mut follows = 0u32;
        let mut stack: Vec<NodeId> = vec![ROOT_INO];
        let mut pending: Vec<String> = components(path);
        pending.reverse();
        let not_found = || Error::NotFound {
            path: path.to_string(),
        };
        while let Some(comp) = pending.pop() {
            let cur = *stack.last().unwrap_or(&ROOT_INO);
            match comp.as_str() {
                "." => continue,
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let entries = self.read_dir(cur)?;
            let e = entries
                .into_iter()
                .find(|e| e.name == comp)
                .ok_or_else(not_found)?;
            if e.kind == FileKind::Symlink && follow_symlinks {
                follows += 1;
                if follows > self.inner.opts.limits.max_symlink_follows {
                    return Err(Error::LimitExceeded {
                        what: "symlinks followed in one path",
                        value: follows.into(),
                        limit: self.inner.opts.limits.max_symlink_follows.into(),
                    });
                }
                let inode = self.inner.read_inode(e.id)?;
                let target = escape_name_bytes(&self.inner.symlink_target(&inode)?);
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
                continue;
            }
            if !pending.is_empty() && e.kind != FileKind::Dir {
                return Err(Error::NotADirectory { ino: e.id });
            }
            if stack.len() as u64 > u64::from(self.inner.opts.limits.max_dir_depth) {
                return Err(Error::LimitExceeded {
                    what: "path depth",
                    value: stack.len() as u64,
                    limit: self.inner.opts.limits.max_dir_depth.into(),
                });
            }
            stack.push(e.id);
        }
        Ok(*stack.last().unwrap_or(&ROOT_INO))
    }

    /// Every node below the root as (path, entry), depth first, in on-disk order. Each
    /// directory is listed once: meeting a directory inode again (a corrupt tree with a
    /// loop) is [`Error::DirectoryLoop`]; at most `max_nodes` entries are returned before
    /// [`Error::LimitExceeded`].
    pub fn walk(&self, max_nodes: u64) -> Result<Vec<(String, DirEntry)>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        seen.insert(ROOT_INO);
        let mut todo = vec![(String::new(), ROOT_INO, 0u32)];
        while let Some((path, dir, depth)) = todo.pop() {
            if depth >= self.inner.opts.limits.max_dir_depth {
                return Err(Error::LimitExceeded {
                    what: "directory depth",
                    value: depth.into(),
                    limit: self.inner.opts.limits.max_dir_depth.into(),
                });
            }
            let mut subdirs = Vec::new();
            for e in self.read_dir(dir)? {
                if out.len() as u64 >= max_nodes {
                    return Err(Error::LimitExceeded {
                        what: "nodes walked",
                        value: max_nodes + 1,
                        limit: max_nodes,
                    });
                }
                let p = format!("{path}/{}", e.name);
                if e.kind == FileKind::Dir {
                    if !seen.insert(e.id) {
                        return Err(Error::DirectoryLoop { ino: e.id, path: p });
                    }
                    subdirs.push((p.clone(), e.id, depth + 1));
                }
                out.push((p, e));
            }
            todo.extend(subdirs.into_iter().rev());
        }
        Ok(out)
    }

    /// The target of a symlink, as stored (raw bytes).
    pub fn read_link(&self, node: NodeId) -> Result<Vec<u8>> {
        let inode = self.inner.read_inode(node)?;
        if inode.kind() != FileKind::Symlink {
            return Err(Error::BadInode {
                ino: node,
                reason: "not a symlink".into(),
            });
        }
        self.inner.symlink_target(&inode)
    }

    /// The block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.inner.sb.block_size
    }
}

fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads the internal journal's superblock and says what a careful reader must know.
fn journal_warnings(fs: &Inner) -> Result<Vec<String>> {
    let mut w = Vec::new();
    let jino = fs.sb.journal_inum;
    if jino == 0 {
        if fs.sb.journal_dev != 0 {
            w.push("external journal device: not read".into());
        } else {
            w.push("has_journal set but no journal inode".into());
        }
        return Ok(w);
    }
    let inode = fs.read_inode(u64::from(jino))?;
    let data = fs.data_reader(&inode)?;
    let mut jsb = [0u8; 1024];
    if data.size() < jsb.len() as u64 {
        return Err(Error::BadJournal(format!(
            "journal inode {jino} holds only {} bytes",
            data.size()
        )));
    }
    data.read_exact_at(&mut jsb, 0)?;
    let magic = u32_be(&jsb, 0);
    let blocktype = u32_be(&jsb, 4);
    if magic != JBD2_MAGIC || !(3..=4).contains(&blocktype) {
        return Err(Error::BadJournal(format!(
            "journal superblock magic {magic:#x} type {blocktype} (expected 0xc03b3998, type 3 or 4)"
        )));
    }
    let start = u32_be(&jsb, 0x1C);
    if start != 0 && !fs.sb.has_incompat(sb::INCOMPAT_RECOVER) {
        w.push(format!(
            "journal is not empty (s_start = {start}) though recovery is not flagged"
        ));
    }
    Ok(w)
}

impl FileSystem for ExtFs {
    type Error = Error;

    fn info(&self) -> VolumeInfo {
        let sb = &self.inner.sb;
        let ext4_incompat = sb::INCOMPAT_EXTENTS
            | sb::INCOMPAT_64BIT
            | sb::INCOMPAT_FLEX_BG
            | sb::INCOMPAT_INLINE_DATA
            | sb::INCOMPAT_META_BG;
        let ext4_ro =
            sb::RO_COMPAT_HUGE_FILE | sb::RO_COMPAT_GDT_CSUM | sb::RO_COMPAT_METADATA_CSUM;
        let fs_type = if sb.incompat & ext4_incompat != 0 || sb.ro_compat & ext4_ro != 0 {
            "ext4"
        } else if sb.compat & sb::COMPAT_HAS_JOURNAL != 0 {
            "ext3"
        } else {
            "ext2"
        };
        let total = sb.blocks_count * sb.bs();
        let free = sb.free_blocks.min(sb.blocks_count) * sb.bs();
        let mut warnings = self.inner.open_warnings.clone();
        if let Ok(w) = self.inner.runtime_warnings.lock() {
            warnings.extend(w.iter().cloned());
        }
        VolumeInfo {
            fs_type,
            label: sb.label_string(),
            uuid: Some(sb.uuid_string()),
            block_size: sb.block_size,
            total_bytes: total,
            used_bytes: total - free,
            free_bytes: free,
            warnings,
        }
    }

    fn root(&self) -> NodeId {
        ROOT_INO
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let inode = self.inner.read_inode(dir)?;
        let raw = self.inner.dir_entries(&inode)?;
        raw.iter()
            .map(|e| {
                Ok(DirEntry {
                    name: escape_name_bytes(&e.name),
                    id: u64::from(e.ino),
                    kind: self.inner.entry_kind(e)?,
                })
            })
            .collect()
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        let fs = &self.inner;
        let inode = fs.read_inode(node)?;
        let kind = inode.kind();
        let mut m = Metadata::new(node, kind, inode.size);
        m.allocated = Some(inode.blocks_512.saturating_mul(512));
        m.mtime = Some(inode.mtime());
        m.atime = Some(inode.atime());
        m.ctime = Some(inode.ctime());
        m.btime = inode.crtime();
        m.unix = Some(UnixMeta {
            mode: u32::from(inode.mode),
            uid: inode.uid,
            gid: inode.gid,
        });
        m.nlink = u32::from(inode.links);
        let inline = inode.has_flag(FL_INLINE_DATA);
        for x in fs.xattrs(&inode)? {
            if inline && x.name == b"system.data" {
                // Part of the file's data, not an attribute.
                continue;
            }
            m.xattrs.push(Xattr {
                name: escape_name_bytes(&x.name),
                value: fs.xattr_value(node, &x.value)?,
            });
        }
        if kind == FileKind::Symlink && !inode.has_flag(FL_ENCRYPT) {
            m.symlink_target = Some(escape_name_bytes(&fs.symlink_target(&inode)?));
        }
        Ok(m)
    }

    fn open(&self, node: NodeId, stream: Option<&str>) -> Result<Arc<dyn ReadAt>> {
        if let Some(s) = stream {
            return Err(Error::NoSuchStream(s.to_string()));
        }
        let inode = self.inner.read_inode(node)?;
        self.inner.data_reader(&inode)
    }

    fn extents(&self, node: NodeId, stream: Option<&str>) -> Result<Vec<FileExtent>> {
        if let Some(s) = stream {
            return Err(Error::NoSuchStream(s.to_string()));
        }
        let fs = &self.inner;
        let inode = fs.read_inode(node)?;
        let size = inode.size;
        if inode.kind() == FileKind::Other || size == 0 {
            return Ok(Vec::new());
        }
        if inode.has_flag(FL_INLINE_DATA) || fs.is_fast_symlink(&inode) {
            return Ok(vec![FileExtent {
                file_offset: 0,
                len: size,
                volume_offset: Some(fs.inode_offset(node)? + 0x28),
                encoded: true,
            }]);
        }
        let map: FileMap = build_map(fs, &inode)?;
        let bs = fs.sb.bs();
        let mut out: Vec<FileExtent> = Vec::new();
        let mut push = |file_offset: u64, end: u64, volume_offset: Option<u64>| {
            let end = end.min(size);
            if end <= file_offset {
                return;
            }
            if let Some(last) = out.last_mut() {
                if last.volume_offset.is_none() && volume_offset.is_none() {
                    last.len = end - last.file_offset;
                    return;
                }
            }
            out.push(FileExtent {
                file_offset,
                len: end - file_offset,
                volume_offset,
                encoded: false,
            });
        };
        let mut cur = 0u64;
        for r in &map.runs {
            let start = r.lblk * bs;
            if start > cur {
                push(cur, start, None);
            }
            let vol = (!r.uninit).then_some(r.pblk * bs);
            push(start, r.end() * bs, vol);
            cur = r.end() * bs;
        }
        if cur < size {
            push(cur, size, None);
        }
        Ok(out)
    }

    fn used_map(&self) -> Result<AllocationMap> {
        crate::bitmap::used_map(&self.inner)
    }
}

impl Inner {
    pub(crate) fn group_uninit(&self, group: u32) -> bool {
        let csum = self.sb.metadata_csum() || self.sb.has_ro_compat(sb::RO_COMPAT_GDT_CSUM);
        csum && self.groups[group as usize].flags & sb::BG_BLOCK_UNINIT != 0
    }

    /// Blocks one group's inode table takes.
    pub(crate) fn itable_blocks(&self) -> u64 {
        (u64::from(self.sb.inodes_per_group) * u64::from(self.sb.inode_size)).div_ceil(self.sb.bs())
    }
}

/// `ExtFs` is shared between threads (the `FileSystem` contract).
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ExtFs>();
};
