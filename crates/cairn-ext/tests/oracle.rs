//! Reads images built by mke2fs -d and compares every path, kind, size, byte, symlink
//! target, hard link and xattr with the source tree, with TSK `fls -r -p` (paths and inode
//! numbers), with `debugfs rdump` (bytes) and with `dumpe2fs` (free blocks).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_ext::{ExtFs, ExtOptions};
use cairn_io::{AllocationMap, FileReader, RangeKind, ReadAt};
use cairn_vfs::{FileKind, FileSystem};
use common::*;

fn open(img: &Path) -> ExtFs {
    let r: Arc<dyn ReadAt> = Arc::new(FileReader::open(img).unwrap());
    ExtFs::open(r, &ExtOptions::default()).unwrap()
}

fn read_all(fs: &ExtFs, id: u64) -> Vec<u8> {
    let r = fs.open(id, None).unwrap();
    let mut v = vec![0u8; usize::try_from(r.size()).unwrap()];
    r.read_exact_at(&mut v, 0).unwrap();
    v
}

/// Source tree: relative path -> std metadata (symlinks not followed).
fn source_tree(root: &Path) -> BTreeMap<String, fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = format!(
                "/{}",
                e.path().strip_prefix(root).unwrap().to_str().unwrap()
            );
            if m.is_dir() {
                todo.push(e.path());
            }
            out.insert(rel, m);
        }
    }
    out
}

/// `fls -r -p` as (path, inode) of allocated entries, minus TSK's virtual $OrphanFiles.
fn fls(img: &Path) -> BTreeSet<(String, u64)> {
    let mut c = Command::new("fls");
    c.args(["-r", "-p"]).arg(img);
    let out = run(c);
    let mut set = BTreeSet::new();
    for line in out.lines() {
        let Some((head, name)) = line.split_once(":\t") else {
            continue;
        };
        if head.contains('*') || name.starts_with("$OrphanFiles") {
            continue;
        }
        let ino: u64 = head.rsplit(' ').next().unwrap().parse().unwrap();
        set.insert((format!("/{name}"), ino));
    }
    set
}

/// The used map dumpe2fs implies: every block not listed as free is used.
fn dumpe2fs_map(img: &Path, block_size: u64, volume: u64) -> AllocationMap {
    let mut c = tool("dumpe2fs");
    c.arg(img);
    let out = run(c);
    let mut free: Vec<(u64, u64)> = Vec::new();
    for line in out.lines() {
        // Per-group lines are indented; the superblock's "Free blocks:" count is not.
        let Some(list) = line.strip_prefix("  Free blocks: ") else {
            continue;
        };
        for part in list.split(", ").filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                None => {
                    let a = part.parse::<u64>().unwrap();
                    (a, a)
                }
            };
            free.push((a, b));
        }
    }
    free.sort_unstable();
    let mut m = AllocationMap::new(volume);
    let mut cur = 0u64;
    for (a, b) in free {
        if a > cur {
            m.push(cur * block_size, (a - cur) * block_size, RangeKind::Data)
                .unwrap();
        }
        cur = b + 1;
    }
    let end = volume / block_size;
    if cur < end {
        m.push(cur * block_size, (end - cur) * block_size, RangeKind::Data)
            .unwrap();
    }
    m.finish()
}

fn check_image(img: &Path, src: &Path, fs_type: &str, xattr: bool) {
    let fs = open(img);
    let info = fs.info();
    assert_eq!(info.fs_type, fs_type);
    assert_eq!(info.uuid.as_deref(), Some(FS_UUID));
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    let walked: BTreeMap<String, cairn_vfs::DirEntry> =
        fs.walk(100_000).unwrap().into_iter().collect();

    // 1. Against the source tree.
    let tree = source_tree(src);
    let vol = fs::read(img).unwrap();
    for (rel, m) in &tree {
        let e = walked.get(rel).unwrap_or_else(|| panic!("{rel} missing"));
        let md = fs.metadata(e.id).unwrap();
        let unix = md.unix.unwrap();
        assert_eq!(unix.mode & 0o7777, m.permissions().mode() & 0o7777, "{rel}");
        assert_eq!((unix.uid, unix.gid), (m.uid(), m.gid()), "{rel}");
        if m.file_type().is_symlink() {
            assert_eq!(e.kind, FileKind::Symlink, "{rel}");
            let t = fs::read_link(src.join(&rel[1..])).unwrap();
            assert_eq!(md.symlink_target.as_deref(), t.to_str(), "{rel}");
            assert_eq!(fs.lookup(rel).unwrap(), e.id);
            // Following the link reaches the leaf.
            let target = fs.lookup_with(rel, true).unwrap();
            assert_eq!(fs.metadata(target).unwrap().kind, FileKind::File);
        } else if m.is_dir() {
            assert_eq!(e.kind, FileKind::Dir, "{rel}");
        } else {
            assert_eq!(e.kind, FileKind::File, "{rel}");
            assert_eq!(md.size, m.len(), "{rel}");
            assert_eq!(md.nlink, u32::try_from(m.nlink()).unwrap(), "{rel}");
            assert_eq!(md.mtime.unwrap().secs, m.mtime(), "{rel}");
            let want = fs::read(src.join(&rel[1..])).unwrap();
            assert!(read_all(&fs, e.id) == want, "{rel}: content differs");
            check_extents(&fs, &vol, e.id, &want, rel);
        }
    }
    let extra: Vec<_> = walked
        .keys()
        .filter(|p| !tree.contains_key(*p) && !p.starts_with("/lost+found"))
        .collect();
    assert!(extra.is_empty(), "not in source: {extra:?}");
    assert_eq!(
        fs.lookup("/hello.txt").unwrap(),
        fs.lookup("hardlink-hello.txt").unwrap()
    );
    if xattr {
        let md = fs.metadata(fs.lookup("/hello.txt").unwrap()).unwrap();
        let x = md
            .xattrs
            .iter()
            .find(|x| x.name == "user.comment")
            .expect("user.comment");
        assert_eq!(x.value, b"an xattr value");
        let md = fs.metadata(fs.lookup("/one.bin").unwrap()).unwrap();
        let x = md
            .xattrs
            .iter()
            .find(|x| x.name == "user.big")
            .expect("user.big");
        assert_eq!(x.value, vec![0xab; 700]);
        // debugfs agrees on the value.
        let out = tempfile::tempdir().unwrap();
        let dump = out.path().join("v");
        debugfs(
            img,
            &format!("ea_get -f {} /one.bin user.big", dump.display()),
        );
        assert_eq!(fs::read(dump).unwrap(), x.value);
    }

    // 2. Paths and inode numbers against TSK.
    if have("fls") {
        let mine: BTreeSet<(String, u64)> = walked.iter().map(|(p, e)| (p.clone(), e.id)).collect();
        assert_eq!(mine, fls(img));
    }

    // 3. Bytes against debugfs rdump (an independent reader).
    let out = tempfile::tempdir().unwrap();
    debugfs(img, &format!("rdump / {}", out.path().display()));
    for (rel, e) in &walked {
        if e.kind != FileKind::File {
            continue;
        }
        let theirs = fs::read(out.path().join(&rel[1..])).unwrap();
        let mine = read_all(&fs, e.id);
        // e2fsprogs 1.47 pads inline-data files to 60 bytes (oracles REPORT.md).
        assert!(
            theirs == mine || (theirs.len() == 60 && theirs.starts_with(&mine)),
            "{rel}: differs from debugfs ({} vs {} bytes)",
            theirs.len(),
            mine.len()
        );
    }

    // 4. Used blocks against dumpe2fs.
    let used = fs.used_map().unwrap();
    used.validate().unwrap();
    let theirs = dumpe2fs_map(img, u64::from(fs.block_size()), used.size());
    assert_eq!(used.runs(), theirs.runs());
}

/// extents() covers [0, size) in order; data extents hold the file's bytes on the
/// volume; holes are zeros in the file.
fn check_extents(fs: &ExtFs, vol: &[u8], id: u64, want: &[u8], rel: &str) {
    let ext = fs.extents(id, None).unwrap();
    let mut cur = 0u64;
    for x in &ext {
        assert_eq!(x.file_offset, cur, "{rel}");
        let f = usize::try_from(x.file_offset).unwrap();
        let n = usize::try_from(x.len).unwrap();
        match x.volume_offset {
            Some(v) if !x.encoded => {
                let v = usize::try_from(v).unwrap();
                assert!(vol[v..v + n] == want[f..f + n], "{rel}: extent at {f}");
            }
            Some(_) => {}
            None => assert!(want[f..f + n].iter().all(|&b| b == 0), "{rel}: hole at {f}"),
        }
        cur += x.len;
    }
    assert_eq!(cur, want.len() as u64, "{rel}");
}

fn build(
    kind: &str,
    args: &[&str],
    size: &str,
    htree: bool,
) -> Option<(tempfile::TempDir, std::path::PathBuf, bool)> {
    if !have("mke2fs") || !have("debugfs") || !have("dumpe2fs") || !have("e2fsck") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    gen_tree(&src, true);
    let xattr = set_xattr(&src);
    let img = dir.path().join(format!("{kind}.img"));
    mkfs(&img, Some(&src), args, size);
    if htree {
        fsck_d(&img);
    }
    Some((dir, img, xattr))
}

/// 1 KiB blocks and 128-byte inodes (no extra fields; xattrs only in blocks).
#[test]
fn ext2_1k_blocks_indirect() {
    let Some((dir, img, xattr)) = build(
        "ext2",
        &["-t", "ext2", "-b", "1024", "-I", "128"],
        "32M",
        false,
    ) else {
        return;
    };
    check_image(&img, &dir.path().join("src"), "ext2", xattr);
}

#[test]
fn ext3_htree() {
    let Some((dir, img, xattr)) = build("ext3", &["-t", "ext3", "-b", "1024"], "32M", true) else {
        return;
    };
    let out = debugfs(&img, "stat /many");
    assert!(out.contains("Flags: 0x1000"), "many/ is not indexed: {out}");
    check_image(&img, &dir.path().join("src"), "ext3", xattr);
    let fs = open(&img);
    assert_eq!(fs.read_dir(fs.lookup("/many").unwrap()).unwrap().len(), 300);
}

#[test]
fn ext4_extents_inline_csum() {
    let Some((dir, img, xattr)) = build(
        "ext4",
        &["-t", "ext4", "-b", "4096", "-O", "inline_data"],
        "64M",
        true,
    ) else {
        return;
    };
    let st = debugfs(&img, "stat /many");
    assert!(
        st.contains("Flags: 0x81000"),
        "many/ is not an indexed extent dir: {st}"
    );
    let feats = debugfs(&img, "features");
    assert!(
        feats.contains("metadata_csum") && feats.contains("64bit"),
        "{feats}"
    );
    check_image(&img, &dir.path().join("src"), "ext4", xattr);
    let fs = open(&img);
    // A corrupt htree block is a checksum error (strict) and readable (lenient).
    let mut vol = fs::read(&img).unwrap();
    let blk = debugfs(&img, "bmap /many 0")
        .trim()
        .parse::<usize>()
        .unwrap()
        * 4096;
    vol[blk + 0x22] ^= 0xFF; // inside the dx entries of dx_root
    let id = fs.lookup("/many").unwrap();
    let bad = ExtFs::open(Arc::new(vol.clone()), &ExtOptions::default()).unwrap();
    assert!(matches!(
        bad.read_dir(id),
        Err(cairn_ext::Error::Checksum {
            what: "htree block",
            location: 0,
            ..
        })
    ));
    let lenient = ExtFs::open(Arc::new(vol), &ExtOptions::lenient()).unwrap();
    assert_eq!(lenient.read_dir(id).unwrap().len(), 300);
    // The fragmented sparse file has a depth-1 extent tree with 40 data extents.
    let id = fs.lookup("/frag_sparse.bin").unwrap();
    let ex = debugfs(&img, "ex /frag_sparse.bin");
    assert!(ex.contains(" 1/ 1"), "expected a depth-1 tree: {ex}");
    let data = fs
        .extents(id, None)
        .unwrap()
        .iter()
        .filter(|x| x.volume_offset.is_some())
        .count();
    assert_eq!(data, 40);
    // Nanoseconds and epoch bits of the extra time fields (mke2fs -d drops nanoseconds,
    // so debugfs sets them: 2 epoch bits = 1, nanoseconds 123456789).
    let mut c = tool("debugfs");
    c.args(["-w", "-R", "sif /one.bin mtime_extra 493827157"])
        .arg(&img);
    run(c);
    let st = debugfs(&img, "stat /one.bin");
    assert!(st.contains(":1d6f3455"), "{st}");
    let fs = open(&img);
    let t = fs
        .metadata(fs.lookup("/one.bin").unwrap())
        .unwrap()
        .mtime
        .unwrap();
    let secs =
        i64::from_str_radix(st.split(" mtime: 0x").nth(1).unwrap().get(..8).unwrap(), 16).unwrap();
    assert_eq!((t.secs, t.nanos), (secs + (1 << 32), 123_456_789));
    // Inline data is reported as encoded.
    let tiny = fs.extents(fs.lookup("/tiny.txt").unwrap(), None).unwrap();
    assert!(tiny.len() == 1 && tiny[0].encoded);
}

#[test]
fn ext4_1k_meta_bg_uninit_groups() {
    let Some((dir, img, xattr)) = build(
        "ext4mb",
        &["-t", "ext4", "-b", "1024", "-O", "meta_bg,^resize_inode"],
        // 20 groups of 8 MiB, 16 descriptors per block: two meta groups.
        "160M",
        false,
    ) else {
        return;
    };
    let dump = run({
        let mut c = tool("dumpe2fs");
        c.arg(&img);
        c
    });
    assert!(
        dump.contains("BLOCK_UNINIT"),
        "no BLOCK_UNINIT group to test"
    );
    check_image(&img, &dir.path().join("src"), "ext4", xattr);
}

/// 64 KiB blocks: the largest block size, whose rec_len 65536 needs the special encoding.
#[test]
fn ext4_64k_blocks() {
    let Some((dir, img, xattr)) = build(
        "ext4-64k",
        &["-t", "ext4", "-b", "65536", "-O", "inline_data"],
        "64M",
        true,
    ) else {
        return;
    };
    check_image(&img, &dir.path().join("src"), "ext4", xattr);
}
