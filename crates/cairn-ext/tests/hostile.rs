//! Mutate-one-field tests: each corruption gives its exact error variant, and walks of
//! corrupt trees end.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use cairn_ext::{Error, ExtFs, ExtOptions};
use cairn_io::ReadAt;
use cairn_vfs::FileSystem;
use common::*;

struct Fixture {
    _dir: tempfile::TempDir,
    img: std::path::PathBuf,
}

/// A small ext4 image: /hello.txt, /loop/sub/, /big.bin. `csum` keeps metadata_csum.
fn fixture(csum: bool) -> Option<Fixture> {
    if !have("mke2fs") || !have("debugfs") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("loop/sub")).unwrap();
    fs::write(src.join("hello.txt"), b"hello world\n").unwrap();
    fs::write(src.join("loop/sub/x.txt"), b"x\n").unwrap();
    fs::write(src.join("big.bin"), rnd(3, 100_000)).unwrap();
    let img = dir.path().join("t.img");
    let feat = if csum {
        "metadata_csum"
    } else {
        "^metadata_csum"
    };
    mkfs(
        &img,
        Some(&src),
        &["-t", "ext4", "-b", "4096", "-O", feat],
        "8M",
    );
    Some(Fixture { _dir: dir, img })
}

fn open_bytes(b: Vec<u8>, opts: &ExtOptions) -> Result<ExtFs, Error> {
    let r: Arc<dyn ReadAt> = Arc::new(b);
    ExtFs::open(r, opts)
}

/// Byte offset of an inode on the volume, as debugfs `imap` says.
fn inode_offset(img: &Path, path: &str) -> u64 {
    let out = debugfs(img, &format!("imap {path}"));
    let rest = out.split("located at block ").nth(1).unwrap();
    let (block, off) = rest.split_once(", offset ").unwrap();
    let block: u64 = block.trim().parse().unwrap();
    let off = u64::from_str_radix(off.trim().trim_start_matches("0x"), 16).unwrap();
    block * 4096 + off
}

/// Physical byte offset of logical block 0 of `path`.
fn block0_offset(img: &Path, path: &str) -> u64 {
    let out = debugfs(img, &format!("bmap {path} 0"));
    out.trim().parse::<u64>().unwrap() * 4096
}

fn ino_of(img: &Path, path: &str) -> u64 {
    let out = debugfs(img, &format!("stat {path}"));
    let s = out.split("Inode: ").nth(1).unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn put_u16(b: &mut [u8], off: u64, v: u16) {
    let o = usize::try_from(off).unwrap();
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: u64, v: u32) {
    let o = usize::try_from(off).unwrap();
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn superblock_fields() {
    let Some(f) = fixture(false) else { return };
    let base = fs::read(&f.img).unwrap();
    let o = ExtOptions::default();
    open_bytes(base.clone(), &o).unwrap();

    let mut b = base.clone();
    put_u32(&mut b, 1024 + 0x18, 40);
    assert!(matches!(
        open_bytes(b, &o),
        Err(Error::BadSuperblock {
            field: "s_log_block_size",
            value: 40,
            ..
        })
    ));

    let mut b = base.clone();
    put_u32(&mut b, 1024 + 0x28, 0);
    assert!(matches!(
        open_bytes(b, &o),
        Err(Error::BadSuperblock {
            field: "s_inodes_per_group",
            value: 0,
            ..
        })
    ));

    let mut b = base.clone();
    put_u16(&mut b, 1024 + 0x38, 0x1234);
    assert!(matches!(
        open_bytes(b, &o),
        Err(Error::NotExt { found: 0x1234 })
    ));

    let mut b = base.clone();
    let inc = u32::from_le_bytes(b[1024 + 0x60..1024 + 0x64].try_into().unwrap());
    put_u32(&mut b, 1024 + 0x60, inc | 0x1);
    assert!(matches!(
        open_bytes(b, &o),
        Err(Error::UnsupportedFeature {
            kind: "incompat",
            bits: 1,
            ..
        })
    ));

    // needs_recovery is reported, never ignored.
    let mut b = base.clone();
    put_u32(&mut b, 1024 + 0x60, inc | 0x4);
    let fs = open_bytes(b, &o).unwrap();
    assert!(fs
        .info()
        .warnings
        .iter()
        .any(|w| w == "journal needs recovery"));

    // Truncated volumes.
    assert!(matches!(
        open_bytes(base[..2000].to_vec(), &o),
        Err(Error::Io(cairn_io::Error::OutOfBounds { .. }))
    ));
    assert!(matches!(
        open_bytes(base[..base.len() / 2].to_vec(), &o),
        Err(Error::VolumeTooSmall { .. })
    ));
}

#[test]
fn extent_tree_corruptions() {
    let Some(f) = fixture(false) else { return };
    let base = fs::read(&f.img).unwrap();
    let o = ExtOptions::default();
    let ino = ino_of(&f.img, "/hello.txt");
    let iblock = inode_offset(&f.img, "/hello.txt") + 0x28;

    let mut b = base.clone();
    put_u16(&mut b, iblock + 6, 6);
    let fs = open_bytes(b, &o).unwrap();
    let e = fs.open(ino, None).err().unwrap();
    assert!(
        matches!(
            e,
            Error::ExtentTreeTooDeep {
                depth: 6,
                max: 5,
                ..
            }
        ),
        "{e}"
    );

    // The first extent's start moved past the end of the volume.
    let mut b = base.clone();
    put_u32(&mut b, iblock + 12 + 8, 0x7FFF_FFF0);
    let fs = open_bytes(b, &o).unwrap();
    let e = fs.open(ino, None).err().unwrap();
    assert!(
        matches!(
            e,
            Error::BlockOutOfRange {
                block: 0x7FFF_FFF0,
                ..
            }
        ),
        "{e}"
    );

    let mut b = base.clone();
    put_u16(&mut b, iblock, 0xBEEF);
    let fs = open_bytes(b, &o).unwrap();
    assert!(matches!(
        fs.open(ino, None),
        Err(Error::BadExtent { block: 0, .. })
    ));
}

#[test]
fn directory_corruptions() {
    let Some(f) = fixture(false) else { return };
    let base = fs::read(&f.img).unwrap();
    let o = ExtOptions::default();
    let loop_ino = ino_of(&f.img, "/loop");
    let blk = block0_offset(&f.img, "/loop");

    let mut b = base.clone();
    put_u16(&mut b, blk + 4, 0);
    let fs = open_bytes(b, &o).unwrap();
    let e = fs.read_dir(loop_ino).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadDirEntry {
                offset: 0,
                block: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(fs.walk(1000).is_err());

    // /loop/sub made to name /loop itself: the walk must end with DirectoryLoop.
    let mut b = base.clone();
    let start = usize::try_from(blk).unwrap();
    let block = &b[start..start + 4096];
    let pos = block.windows(3).position(|w| w == b"sub").unwrap() - 8;
    put_u32(&mut b, blk + pos as u64, u32::try_from(loop_ino).unwrap());
    let fs = open_bytes(b, &o).unwrap();
    let e = fs.walk(1000).unwrap_err();
    assert!(
        matches!(e, Error::DirectoryLoop { ino, .. } if ino == loop_ino),
        "{e}"
    );
    // Lookup through the loop still terminates (bounded by the path).
    assert_eq!(fs.lookup("/loop/sub/sub/sub").unwrap(), loop_ino);
}

#[test]
fn checksums_and_lenient_mode() {
    let Some(f) = fixture(true) else { return };
    let base = fs::read(&f.img).unwrap();
    let strict = ExtOptions::default();
    let lenient = ExtOptions::lenient();
    let ino = ino_of(&f.img, "/hello.txt");
    open_bytes(base.clone(), &strict).unwrap();

    // Inode: i_uid low byte.
    let mut b = base.clone();
    let off = usize::try_from(inode_offset(&f.img, "/hello.txt")).unwrap();
    b[off + 2] ^= 0x55;
    let fs = open_bytes(b.clone(), &strict).unwrap();
    let e = fs.metadata(ino).unwrap_err();
    assert!(
        matches!(e, Error::Checksum { what: "inode", location, .. } if location == ino),
        "{e}"
    );
    let fs = open_bytes(b, &lenient).unwrap();
    fs.metadata(ino).unwrap();
    assert!(fs.info().warnings.iter().any(|w| w.contains("inode")));

    // Superblock: s_mtime.
    let mut b = base.clone();
    b[1024 + 0x2C] ^= 1;
    assert!(matches!(
        open_bytes(b.clone(), &strict),
        Err(Error::Checksum {
            what: "superblock",
            ..
        })
    ));
    assert!(!open_bytes(b, &lenient).unwrap().info().warnings.is_empty());

    // Directory block: a byte of a name in the root.
    let mut b = base.clone();
    let blk = usize::try_from(block0_offset(&f.img, "/")).unwrap();
    let pos = b[blk..blk + 4096]
        .windows(9)
        .position(|w| w == b"hello.txt")
        .unwrap();
    b[blk + pos] = b'j';
    let fs = open_bytes(b.clone(), &strict).unwrap();
    assert!(matches!(
        fs.read_dir(2),
        Err(Error::Checksum {
            what: "directory block",
            ..
        })
    ));
    let fs = open_bytes(b, &lenient).unwrap();
    assert!(fs
        .read_dir(2)
        .unwrap()
        .iter()
        .any(|e| e.name == "jello.txt"));
}

/// Random byte corruptions (deterministic seed) of small ext2 and ext4 images: opening,
/// walking, stat, mapping and reading never panic and always end. A stand-in for the
/// `ext` fuzz target that runs in every `cargo test`.
#[test]
fn random_corruptions_end_cleanly() {
    if !have("mke2fs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("d/e")).unwrap();
    fs::write(src.join("h.txt"), b"hello\n").unwrap();
    fs::write(src.join("d/r.bin"), rnd(9, 60_000)).unwrap();
    fs::write(src.join("d/e/t.txt"), b"t\n").unwrap();
    std::os::unix::fs::symlink("h.txt", src.join("l")).unwrap();
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (i, args) in [
        &["-t", "ext2", "-b", "1024", "-N", "32"][..],
        &[
            "-t",
            "ext4",
            "-b",
            "1024",
            "-N",
            "32",
            "-O",
            "^has_journal,inline_data",
        ][..],
    ]
    .iter()
    .enumerate()
    {
        let img = dir.path().join(format!("{i}.img"));
        mkfs(&img, Some(&src), args, "1M");
        let base = fs::read(&img).unwrap();
        let mut opts = ExtOptions::lenient();
        opts.max_map_runs = 4096;
        let (mut opened, mut walked) = (0, 0);
        for _ in 0..1000 {
            let mut b = base.clone();
            for _ in 0..1 + next() % 6 {
                let r = next();
                // A third of the hits land in the superblock and descriptors, a third in
                // the bitmaps, inode table and first directories of this 1 KiB-block fs,
                // a third anywhere.
                let (lo, hi) = match r % 3 {
                    0 => (1024, 3072),
                    1 => (3072, 40_960),
                    _ => (1024, b.len() as u64),
                };
                let pos = usize::try_from(lo + (r >> 8) % (hi - lo)).unwrap();
                b[pos] = u8::try_from(next() & 0xFF).unwrap();
            }
            let Ok(fs) = open_bytes(b, &opts) else {
                continue;
            };
            opened += 1;
            let _ = fs.used_map();
            let Ok(nodes) = fs.walk(500) else { continue };
            walked += 1;
            for (_, e) in nodes {
                let _ = fs.metadata(e.id);
                let _ = fs.extents(e.id, None);
                if let Ok(r) = fs.open(e.id, None) {
                    let mut buf = vec![0u8; 4096];
                    let mut off = 0;
                    while off < r.size().min(1 << 20) {
                        match r.read_at(&mut buf, off) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => off += n as u64,
                        }
                    }
                }
            }
        }
        println!("image {i}: {opened} of 1000 corruptions opened, {walked} walked");
        assert!(
            walked > 50,
            "the corruptions should mostly leave a readable tree"
        );
    }
}

/// An inline-data file whose `system.data` value claims to live in an EA inode that is
/// the file itself: refused, not followed forever.
#[test]
fn ea_inode_pointing_at_itself() {
    if !have("mke2fs") || !have("debugfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("tiny.txt"), vec![b't'; 100]).unwrap();
    let img = dir.path().join("t.img");
    mkfs(
        &img,
        Some(&src),
        &[
            "-t",
            "ext4",
            "-b",
            "4096",
            "-O",
            "inline_data,^metadata_csum",
        ],
        "8M",
    );
    let mut b = fs::read(&img).unwrap();
    let ino = ino_of(&img, "/tiny.txt");
    let off = usize::try_from(inode_offset(&img, "/tiny.txt")).unwrap();
    let extra = usize::from(u16::from_le_bytes([b[off + 0x80], b[off + 0x81]]));
    let entry = off + 128 + extra + 4;
    assert_eq!(
        (b[entry], b[entry + 1]),
        (4, 7),
        "first entry is system.data"
    );
    put_u32(&mut b, (entry + 4) as u64, u32::try_from(ino).unwrap());
    // The value size equals the file's own size, so only the EA-inode check stops it.
    put_u32(&mut b, (entry + 8) as u64, 100);
    let fs = open_bytes(b, &ExtOptions::default()).unwrap();
    let e = fs.open(ino, None).err().unwrap();
    assert!(matches!(e, Error::BadXattr { .. }), "{e}");
}

/// A file flagged encrypted (set with debugfs, as fscrypt would) is listed and stat'ed but
/// its data is refused with `Error::Encrypted`.
#[test]
fn encrypted_file_is_listed_not_read() {
    let Some(f) = fixture(true) else { return };
    let mut c = tool("debugfs");
    c.args(["-w", "-f", "-"]).arg(&f.img);
    c.stdin(std::process::Stdio::piped());
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "feature encrypt").unwrap();
        writeln!(stdin, "sif /hello.txt flags 0x80800").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let r: Arc<dyn ReadAt> = Arc::new(cairn_io::FileReader::open(&f.img).unwrap());
    let fs = ExtFs::open(r, &ExtOptions::default()).unwrap();
    let id = fs.lookup("/hello.txt").unwrap();
    assert_eq!(fs.metadata(id).unwrap().size, 12);
    assert!(matches!(fs.open(id, None), Err(Error::Encrypted { ino }) if ino == id));
    assert!(fs
        .read_dir(2)
        .unwrap()
        .iter()
        .any(|e| e.name == "hello.txt"));
}
