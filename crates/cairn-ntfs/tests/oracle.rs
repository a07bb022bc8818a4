//! Compares the reader with independent tools on images made at test time:
//! mkntfs + ntfscp (no mount), ntfs-3g over FUSE (directories, compression, sparse files,
//! ADS, hard links, reparse points, a 300-entry index, an attribute list), and the
//! `testfs1` image shipped in the crates.io `ntfs` 0.4.0 crate.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cairn_io::{FileReader, RangeKind, ReadAt};
use cairn_ntfs::{decode_security_descriptor, NtfsFs, NtfsOptions};
use cairn_vfs::{FileKind, FileSystem};
use common::*;

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn prng(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// TSK's view: path -> (fls type, inode address) for allocated entries.
fn fls(img: &Path) -> BTreeMap<String, (String, String)> {
    let out = String::from_utf8(run("fls", &["-r", "-p", img.to_str().unwrap()])).unwrap();
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let Some((left, path)) = line.split_once(":\t") else {
            continue;
        };
        if left.contains('*') || path.starts_with("$OrphanFiles") {
            continue;
        }
        let (ty, addr) = left.split_once(' ').unwrap();
        m.insert(
            format!("/{path}"),
            (ty.to_string(), addr.trim().to_string()),
        );
    }
    m
}

/// Files, streams and directories of our walk must equal TSK's (fls + icat), SHA-256 included.
fn compare_with_tsk(img: &Path, ours: &BTreeMap<String, Item>, skip_system: bool) {
    compare_with_tsk_sampled(img, ours, skip_system, &|_| true);
}

/// [`compare_with_tsk`], running `icat` only for the paths `icat_this` selects (paths and
/// kinds are still compared for all).
fn compare_with_tsk_sampled(
    img: &Path,
    ours: &BTreeMap<String, Item>,
    skip_system: bool,
    icat_this: &dyn Fn(&str) -> bool,
) {
    let tsk = fls(img);
    let mut tsk_files = BTreeSet::new();
    let mut tsk_dirs = BTreeSet::new();
    for (path, (ty, addr)) in &tsk {
        let top = path.trim_start_matches('/');
        if skip_system && top.starts_with('$') || top.starts_with("$Extend/$RmMetadata") {
            continue;
        }
        let attr_type = addr.split('-').nth(1).unwrap_or("");
        if ty == "d/d" {
            if ours
                .get(path)
                .is_some_and(|i| matches!(i.kind, FileKind::Symlink | FileKind::Other))
            {
                continue; // junction: a directory to TSK, a link to us; WSL FIFO etc.: other
            }
            tsk_dirs.insert(path.clone());
        } else if ty.ends_with('r') && attr_type == "128" {
            if ours
                .get(path.split(':').next().unwrap())
                .is_some_and(|i| matches!(i.kind, FileKind::Symlink | FileKind::Other))
            {
                continue;
            }
            tsk_files.insert(path.clone());
            if path == "/$BadClus:$Bad" {
                // icat prints nothing for this all-sparse, volume-sized stream (TSK quirk);
                // our size is the volume size, as ntfsinfo reports.
                continue;
            }
            let item = ours
                .get(path)
                .unwrap_or_else(|| panic!("{path} listed by fls, missing in our walk"));
            if !icat_this(path) {
                continue;
            }
            let data = run("icat", &[img.to_str().unwrap(), addr]);
            assert_eq!(item.size, data.len() as u64, "{path}: size vs icat");
            assert_eq!(
                item.sha.as_deref(),
                Some(sha256(&data).as_str()),
                "{path}: sha256 vs icat"
            );
        }
    }
    // Metadata files without an unnamed $DATA ($Secure, $Extend/$Quota...) read as empty
    // files to us; TSK lists only their named streams.
    let our_files: BTreeSet<String> = ours
        .iter()
        .filter(|(p, i)| i.kind == FileKind::File && (tsk.contains_key(*p) || !p.contains("/$")))
        .map(|(p, _)| p.clone())
        .collect();
    let our_dirs: BTreeSet<String> = ours
        .iter()
        .filter(|(_, i)| i.kind == FileKind::Dir)
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(our_files, tsk_files, "file and stream paths vs fls");
    assert_eq!(our_dirs, tsk_dirs, "directory paths vs fls");
}

/// ntfscat must give the same bytes for every (non-system) file and stream.
fn compare_with_ntfscat(img: &Path, ours: &BTreeMap<String, Item>, skip: &dyn Fn(&str) -> bool) {
    for (path, item) in ours {
        if item.kind != FileKind::File
            || path.trim_start_matches('/').starts_with('$')
            || skip(path)
        {
            continue;
        }
        let data = match path.rsplit_once(':') {
            Some((file, stream)) => run(
                "ntfscat",
                &["-a", "0x80", "-n", stream, img.to_str().unwrap(), file],
            ),
            None => run("ntfscat", &[img.to_str().unwrap(), path]),
        };
        assert_eq!(
            item.sha.as_deref(),
            Some(sha256(&data).as_str()),
            "{path}: sha256 vs ntfscat"
        );
    }
}

/// The used map must mark exactly the clusters `blkls -a` lists as allocated.
fn compare_used_map(img: &Path, fs: &NtfsFs) {
    let out = String::from_utf8(run("blkls", &["-l", "-a", img.to_str().unwrap()])).unwrap();
    let tsk: BTreeSet<u64> = out
        .lines()
        .filter_map(|l| l.strip_suffix("|a")?.parse().ok())
        .collect();
    let map = fs.used_map().unwrap();
    map.validate().unwrap();
    let cs = u64::from(fs.info().block_size);
    let mut ours = BTreeSet::new();
    for r in map.ranges_of(RangeKind::Data) {
        assert_eq!(r.offset % cs, 0);
        for c in r.offset / cs..(r.offset + r.len) / cs {
            ours.insert(c);
        }
    }
    assert_eq!(ours.len(), tsk.len(), "allocated cluster count vs blkls");
    assert!(ours == tsk, "allocated clusters differ from blkls");
    let info = fs.info();
    assert_eq!(info.used_bytes, ours.len() as u64 * cs);
}

fn fsstat_field(img: &Path, key: &str) -> String {
    let out = String::from_utf8(run("fsstat", &[img.to_str().unwrap()])).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn nomount_image_matches_tsk_and_ntfscat() {
    if !(have("mkntfs")
        && have("ntfscp")
        && have("fls")
        && have("icat")
        && have("ntfscat")
        && have("blkls"))
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("ntfs.img");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    mkntfs_image(&img, 16, "nomount");
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("hello.txt", b"hello world\n".to_vec()),
        ("empty.txt", Vec::new()),
        ("one.bin", b"x".to_vec()),
        ("a4096.txt", vec![b'A'; 4096]),
        ("b4097.bin", (0..=255u8).cycle().take(4097).collect()),
        ("rand1m.bin", prng(1, 1 << 20)),
        (
            "Long File Name With Spaces.txt",
            b"long file name\n".to_vec(),
        ),
    ];
    for (name, data) in &files {
        let p = write(&src, name, data);
        run(
            "ntfscp",
            &[
                "-q",
                img.to_str().unwrap(),
                p.to_str().unwrap(),
                &format!("/{name}"),
            ],
        );
    }
    let ads = write(&src, "ads", b"stream via ntfscp -N\n");
    run(
        "ntfscp",
        &[
            "-q",
            "-N",
            "ads1",
            img.to_str().unwrap(),
            ads.to_str().unwrap(),
            "/hello.txt",
        ],
    );

    let fs = open_img(&img);
    let vol = FileReader::open(&img).unwrap();
    let ours = walk(&fs, &vol, true);
    for (name, data) in &files {
        let item = &ours[&format!("/{name}")];
        assert_eq!(
            item.sha.as_deref(),
            Some(sha256(data).as_str()),
            "{name} vs source"
        );
    }
    assert_eq!(
        ours["/hello.txt:ads1"].sha.as_deref(),
        Some(sha256(b"stream via ntfscp -N\n").as_str())
    );
    assert!(
        ours.contains_key("/$MFT") && ours.contains_key("/$Extend"),
        "metadata files are listed"
    );
    compare_with_tsk(&img, &ours, false);
    compare_with_ntfscat(&img, &ours, &|_| false);
    compare_used_map(&img, &fs);

    let info = fs.info();
    assert_eq!(info.fs_type, "ntfs");
    assert_eq!(info.label.as_deref(), Some("nomount"));
    assert_eq!(
        info.uuid.as_deref(),
        Some(fsstat_field(&img, "Volume Serial Number:").as_str())
    );
    assert_eq!(info.block_size, 4096);
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);

    // One volume, one stream, read from several threads at once.
    let fs = Arc::new(fs);
    let rid = ours["/rand1m.bin"].id;
    let want = sha256(&prng(1, 1 << 20));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || sha256(&read_all(&*fs.open(rid, None).unwrap())))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), want);
    }

    // Case-insensitive lookup through $UpCase.
    let id = fs.lookup("/hello.txt").unwrap();
    assert_eq!(fs.lookup("/HELLO.TXT").unwrap(), id);
    assert_eq!(
        fs.lookup("/long file name with SPACES.txt").unwrap(),
        ours["/Long File Name With Spaces.txt"].id
    );
    assert!(matches!(
        fs.lookup("/nope"),
        Err(cairn_ntfs::Error::NotFound { .. })
    ));
    assert_eq!(fs.path_of(id).unwrap(), "/hello.txt");

    // Security descriptors come from $Secure ($SII -> $SDS) and decode.
    let m = fs.metadata(id).unwrap();
    let sd =
        decode_security_descriptor(m.security_descriptor.as_deref().expect("descriptor")).unwrap();
    assert!(sd.owner.unwrap().starts_with("S-1-5-"));
    assert!(m.btime.is_some() && m.windows_attributes.is_some());
    assert_eq!(m.nlink, 1);
    assert_eq!(m.streams.len(), 1);
}

/// Mounts `img` with ntfs-3g at `mnt`; false (with a clear note) when FUSE is unusable
/// outside CI. Under CI a failing mount fails the test.
fn mount(img: &Path, mnt: &Path, opts: &str) -> bool {
    if !(have("ntfs-3g") && have("fusermount") && have("setfattr")) {
        return false;
    }
    let mut cmd = Command::new("ntfs-3g");
    if !opts.is_empty() {
        cmd.args(["-o", opts]);
    }
    let out = cmd.arg(img).arg(mnt).output().unwrap();
    if !out.status.success() {
        let msg = format!(
            "ntfs-3g FUSE mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("skipped: {msg} (this test needs root and /dev/fuse)");
        return false;
    }
    true
}

struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount").arg("-u").arg(&self.0).status();
    }
}

fn reparse_hex(kind: &str, target: &str) -> String {
    let utf16 = |s: &str| {
        s.encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<u8>>()
    };
    let (tag, body) = if kind == "symlink" {
        let s = utf16(target);
        let n = u16::try_from(s.len()).unwrap();
        let mut b = Vec::new();
        for v in [0, n, n, n] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&s);
        b.extend_from_slice(&s);
        (0xA000_000Cu32, b)
    } else {
        let sub = utf16(&format!("\\??\\{target}"));
        let pr = utf16(target);
        let (ns, np) = (
            u16::try_from(sub.len()).unwrap(),
            u16::try_from(pr.len()).unwrap(),
        );
        let mut b = Vec::new();
        for v in [0, ns, ns + 2, np] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&sub);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&pr);
        b.extend_from_slice(&[0, 0]);
        (0xA000_0003, b)
    };
    let mut all = tag.to_le_bytes().to_vec();
    all.extend_from_slice(&u16::try_from(body.len()).unwrap().to_le_bytes());
    all.extend_from_slice(&[0, 0]);
    all.extend_from_slice(&body);
    format!(
        "0x{}",
        all.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[test]
fn fuse_image_matches_tsk_and_ntfscat() {
    if !(have("mkntfs") && have("fls") && have("icat") && have("ntfscat") && have("blkls")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("ntfs.img");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    mkntfs_image(&img, 64, "corpus-ntfs");
    if !mount(
        &img,
        &mnt,
        "compression,streams_interface=xattr,special_files=wsl",
    ) {
        return;
    }
    let guard = Unmount(mnt.clone());
    let m = |p: &str| mnt.join(p);
    let text: Vec<u8> = b"compressible line of text\n"
        .iter()
        .copied()
        .cycle()
        .take(26 * 11538)
        .collect();
    let rand5m = prng(5, 5_000_000);
    std::fs::create_dir(m("compressed")).unwrap();
    run(
        "setfattr",
        &[
            "-n",
            "system.ntfs_attrib_be",
            "-v",
            "0x00000810",
            m("compressed").to_str().unwrap(),
        ],
    );
    std::fs::write(m("compressed/text.txt"), &text).unwrap();
    std::fs::write(m("compressed/zeros.bin"), vec![0u8; 200_000]).unwrap();
    std::fs::write(m("compressed/random.bin"), prng(11, 100_000)).unwrap();
    std::fs::write(m("hello.txt"), b"hello world\n").unwrap();
    std::fs::write(m("rand5m.bin"), &rand5m).unwrap();
    std::fs::create_dir_all(m("deep/a/b/c/d/e/f/g/h/i/j")).unwrap();
    std::fs::write(m("deep/a/b/c/d/e/f/g/h/i/j/leaf.txt"), b"deep leaf\n").unwrap();
    std::fs::create_dir(m("ünïcödé-dir")).unwrap();
    std::fs::write(m("ünïcödé-dir/日本語ファイル.txt"), "ユニコード\n").unwrap();
    std::fs::write(m("ünïcödé-dir/smile-😀.txt"), b"emoji\n").unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(m("sparse.bin")).unwrap();
        f.write_all(b"START").unwrap();
        f.seek(SeekFrom::Start(4 << 20)).unwrap();
        f.write_all(&prng(7, 65536)).unwrap();
        f.seek(SeekFrom::Start((8 << 20) - 3)).unwrap();
        f.write_all(b"END").unwrap();
    }
    std::fs::create_dir(m("many")).unwrap();
    for i in 1..=300 {
        std::fs::write(m(&format!("many/f{i:03}.txt")), format!("file {i}\n")).unwrap();
    }
    std::fs::write(m("Long File Name With Spaces.txt"), b"long file name\n").unwrap();
    run(
        "setfattr",
        &[
            "-n",
            "system.ntfs_dos_name",
            "-v",
            "LONGFI~1.TXT",
            m("Long File Name With Spaces.txt").to_str().unwrap(),
        ],
    );
    std::fs::hard_link(m("hello.txt"), m("hardlink-hello.txt")).unwrap();
    std::fs::hard_link(m("hello.txt"), m("deep/link-in-deep.txt")).unwrap();
    run(
        "setfattr",
        &[
            "-n",
            "user.ads1",
            "-v",
            "alternate stream content",
            m("hello.txt").to_str().unwrap(),
        ],
    );
    std::os::unix::fs::symlink("hello.txt", m("wsl-link")).unwrap();
    std::fs::write(m("win-symlink"), b"").unwrap();
    run(
        "setfattr",
        &[
            "-n",
            "system.ntfs_reparse_data",
            "-v",
            &reparse_hex("symlink", "hello.txt"),
            m("win-symlink").to_str().unwrap(),
        ],
    );
    std::fs::create_dir(m("junction")).unwrap();
    run(
        "setfattr",
        &[
            "-n",
            "system.ntfs_reparse_data",
            "-v",
            &reparse_hex("junction", "C:\\deep"),
            m("junction").to_str().unwrap(),
        ],
    );
    // Made before the probes below: creating it changes the root's mtime, which a probe
    // taken first would miss whenever a second boundary falls in between.
    run("mkfifo", &["-m", "0640", m("fifo").to_str().unwrap()]);
    // What ntfs-3g reports: raw security descriptors (system.ntfs_acl), Windows attributes
    // (system.ntfs_attrib_be) and modification times.
    let probe = [
        "",
        "hello.txt",
        "compressed",
        "compressed/text.txt",
        "many/f001.txt",
        "deep/a",
    ];
    let mut fuse_view = Vec::new();
    for p in probe {
        let path = mnt.join(p);
        let acl = run(
            "getfattr",
            &[
                "--only-values",
                "-n",
                "system.ntfs_acl",
                path.to_str().unwrap(),
            ],
        );
        let attrib = run(
            "getfattr",
            &[
                "--only-values",
                "-n",
                "system.ntfs_attrib_be",
                path.to_str().unwrap(),
            ],
        );
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let secs = i64::try_from(
            mtime
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        fuse_view.push((
            p,
            acl,
            u32::from_be_bytes(attrib[..4].try_into().unwrap()),
            secs,
        ));
    }
    // A WSL FIFO: reparse tag 0x80000024 (kind Other) with its mode in the $LXMOD EA.
    let fifo_mode = {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(m("fifo")).unwrap().mode()
    };
    // ntfs-3g's raw EA list: the 4 bytes after "$LXMOD\0" are the stored st_mode.
    let ea = run(
        "getfattr",
        &[
            "--only-values",
            "-n",
            "system.ntfs_ea",
            m("fifo").to_str().unwrap(),
        ],
    );
    let at = ea
        .windows(7)
        .position(|w| w == b"$LXMOD\0")
        .expect("$LXMOD EA")
        + 7;
    let lxmod = u32::from_le_bytes(ea[at..at + 4].try_into().unwrap());
    drop(guard);

    let fs = open_img(&img);
    let vol = FileReader::open(&img).unwrap();
    let fifo = fs.metadata(fs.lookup("/fifo").unwrap()).unwrap();
    assert_eq!(fifo.kind, FileKind::Other);
    assert_eq!(fs.reparse_point(fifo.id).unwrap().unwrap().tag, 0x8000_0024);
    assert_eq!(
        fifo.unix.map(|u| u.mode),
        Some(lxmod),
        "fifo mode vs system.ntfs_ea"
    );
    assert_eq!(
        lxmod & 0o170_000,
        fifo_mode & 0o170_000,
        "FIFO type vs FUSE stat"
    );
    for (p, acl, attrib, secs) in &fuse_view {
        let m = fs.metadata(fs.lookup(&format!("/{p}")).unwrap()).unwrap();
        assert_eq!(
            m.security_descriptor.as_deref(),
            Some(&acl[..]),
            "/{p}: descriptor vs system.ntfs_acl"
        );
        let sd = decode_security_descriptor(acl).unwrap();
        assert!(sd.owner.is_some() && sd.dacl.is_some(), "/{p}: {sd:?}");
        assert_eq!(
            m.windows_attributes,
            Some(*attrib),
            "/{p}: attributes vs system.ntfs_attrib_be"
        );
        assert_eq!(m.mtime.unwrap().secs, *secs, "/{p}: mtime vs FUSE stat");
    }
    let ours = walk(&fs, &vol, false);
    let sha = |p: &str| {
        ours[p]
            .sha
            .clone()
            .unwrap_or_else(|| panic!("{p} has no data"))
    };
    assert_eq!(sha("/compressed/text.txt"), sha256(&text));
    assert_eq!(sha("/compressed/zeros.bin"), sha256(&[0u8; 200_000]));
    assert_eq!(sha("/compressed/random.bin"), sha256(&prng(11, 100_000)));
    assert_eq!(sha("/rand5m.bin"), sha256(&rand5m));
    assert_eq!(sha("/hello.txt:ads1"), sha256(b"alternate stream content"));
    assert_eq!(
        sha("/hardlink-hello.txt:ads1"),
        sha256(b"alternate stream content")
    );
    assert_eq!(sha("/ünïcödé-dir/smile-😀.txt"), sha256(b"emoji\n"));
    assert_eq!(ours.keys().filter(|p| p.starts_with("/many/")).count(), 300);
    // Hard links: every directory lists the entry, one node, nlink 3.
    let h = ours["/hello.txt"].id;
    assert_eq!(ours["/hardlink-hello.txt"].id, h);
    assert_eq!(ours["/deep/link-in-deep.txt"].id, h);
    assert_eq!(fs.metadata(h).unwrap().nlink, 3);
    // Links.
    for (p, tag, target) in [
        ("/wsl-link", 0xA000_001D, "hello.txt"),
        ("/win-symlink", 0xA000_000C, "hello.txt"),
        ("/junction", 0xA000_0003, "C:\\\\deep"),
    ] {
        assert_eq!(ours[p].kind, FileKind::Symlink, "{p}");
        assert_eq!(ours[p].target.as_deref(), Some(target), "{p}");
        let rp = fs.reparse_point(ours[p].id).unwrap().unwrap();
        assert_eq!(rp.tag, tag, "{p}");
    }
    assert_eq!(ours["/junction"].size, 7);
    // Sparse file: holes are extents without a volume offset.
    let sp = ours["/sparse.bin"].id;
    let ext = fs.extents(sp, None).unwrap();
    assert!(
        ext.iter()
            .any(|e| e.volume_offset.is_none() && e.len >= 1 << 20),
        "{ext:?}"
    );
    // Compressed file: compressed units are encoded extents.
    let ct = ours["/compressed/text.txt"].id;
    assert!(fs.extents(ct, None).unwrap().iter().any(|e| e.encoded));
    assert_ne!(
        fs.metadata(ct).unwrap().windows_attributes.unwrap() & 0x800,
        0
    );

    compare_with_tsk(&img, &ours, true);
    compare_with_ntfscat(&img, &ours, &|p| {
        p.starts_with("/many/f") && !p.ends_with("f150.txt")
    });
    compare_used_map(&img, &fs);
    assert_eq!(
        fs.lookup("/DEEP/A/b/C/d/e/f/g/h/i/j/LEAF.TXT").unwrap(),
        ours["/deep/a/b/c/d/e/f/g/h/i/j/leaf.txt"].id
    );
}

#[test]
fn fuse_attribute_list_matches_tsk() {
    if !(have("mkntfs") && have("fls") && have("icat") && have("istat") && have("ntfscat")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("attrlist.img");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    mkntfs_image(&img, 32, "attrlist");
    if !mount(&img, &mnt, "") {
        return;
    }
    let guard = Unmount(mnt.clone());
    {
        use std::io::Write;
        let mut a = std::fs::File::create(mnt.join("fragA.bin")).unwrap();
        let mut b = std::fs::File::create(mnt.join("fragB.bin")).unwrap();
        for i in 0..600u32 {
            a.write_all(&[u8::try_from(i % 251).unwrap(); 4096])
                .unwrap();
            a.sync_data().unwrap();
            b.write_all(&[u8::try_from((i * 7) % 251).unwrap(); 4096])
                .unwrap();
            b.sync_data().unwrap();
        }
    }
    drop(guard);
    let want_a: Vec<u8> = (0..600u32)
        .flat_map(|i| [u8::try_from(i % 251).unwrap(); 4096])
        .collect();
    let want_b: Vec<u8> = (0..600u32)
        .flat_map(|i| [u8::try_from((i * 7) % 251).unwrap(); 4096])
        .collect();

    let fs = open_img(&img);
    let vol = FileReader::open(&img).unwrap();
    let ours = walk(&fs, &vol, false);
    assert_eq!(
        ours["/fragA.bin"].sha.as_deref(),
        Some(sha256(&want_a).as_str())
    );
    assert_eq!(
        ours["/fragB.bin"].sha.as_deref(),
        Some(sha256(&want_b).as_str())
    );
    let rec = ours["/fragA.bin"].id & 0xFFFF_FFFF_FFFF;
    let istat =
        String::from_utf8(run("istat", &[img.to_str().unwrap(), &rec.to_string()])).unwrap();
    assert!(
        istat.contains("$ATTRIBUTE_LIST"),
        "fragA.bin should have an attribute list:\n{istat}"
    );
    compare_with_tsk(&img, &ours, true);
    compare_with_ntfscat(&img, &ours, &|_| false);

    // Hostile twist: the attribute list names fragB's record as an extension of fragA.
    const MASK: u64 = 0xFFFF_FFFF_FFFF;
    assert_eq!(
        fs.extents(0, None).unwrap().len(),
        1,
        "fresh volume: contiguous $MFT"
    );
    let (a_id, b_id) = (ours["/fragA.bin"].id, ours["/fragB.bin"].id);
    let mut bytes = std::fs::read(&img).unwrap();
    let cs = geo(&bytes).cs;
    // Where the attribute list's value lies: (volume offset, length), resident or not.
    let mut list_at = (0usize, 0usize);
    edit_record(&mut bytes, a_id & MASK, |rec| {
        let a = find_attr(rec, 0x20);
        if rec[a + 8] == 0 {
            let v = a + usize::from(u16_at(rec, a + 0x14));
            list_at = (v, usize::try_from(u32_at(rec, a + 0x10)).unwrap());
        } else {
            let runs = a + usize::from(u16_at(rec, a + 0x20));
            let h = rec[runs];
            let (ls, os) = (usize::from(h & 0xF), usize::from(h >> 4));
            let mut lcn = 0usize;
            for i in 0..os {
                lcn |= usize::from(rec[runs + 1 + ls + i]) << (8 * i);
            }
            list_at = (lcn * cs, usize::try_from(u64_at(rec, a + 0x30)).unwrap());
            assert!(list_at.1 <= cs, "list fits its first cluster");
        }
    });
    let mut patched = false;
    let mut patch = |list: &mut [u8]| {
        let mut pos = 0;
        while pos + 0x18 <= list.len() {
            if u64_at(list, pos + 0x10) & MASK != a_id & MASK {
                list[pos + 0x10..pos + 0x18].copy_from_slice(&b_id.to_le_bytes());
                patched = true;
                break;
            }
            pos += usize::from(u16_at(list, pos + 4)).max(1);
        }
    };
    if list_at.0 > 4096 {
        patch(&mut bytes[list_at.0..list_at.0 + list_at.1]);
    } else {
        edit_record(&mut bytes, a_id & MASK, |rec| {
            patch(&mut rec[list_at.0..list_at.0 + list_at.1])
        });
    }
    if patched {
        let bad = NtfsFs::open(Arc::new(bytes), &NtfsOptions::default()).unwrap();
        match bad.metadata(a_id).unwrap_err() {
            cairn_ntfs::Error::BadRecord { record, .. } => assert_eq!(record, b_id & MASK),
            other => panic!("expected BadRecord for the foreign extension, got {other:?}"),
        }
    } else {
        panic!("fragA's attribute list names no extension record");
    }
}

/// The `testfs1` image inside the crates.io `ntfs` 0.4.0 crate (fetched with `cargo fetch`
/// of a project depending on `ntfs = "=0.4.0"`); used when present.
fn testfs1() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let reg = home.join("registry/src");
    for d in std::fs::read_dir(reg).ok()?.flatten() {
        let p = d.path().join("ntfs-0.4.0/testdata/testfs1");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

#[test]
fn testfs1_from_ntfs_crate() {
    let Some(img) = testfs1() else {
        eprintln!("skipped: ntfs-0.4.0/testdata/testfs1 not in the cargo registry (cargo fetch a project depending on ntfs = \"=0.4.0\")");
        return;
    };
    let fs = NtfsFs::open(
        Arc::new(FileReader::open(&img).unwrap()),
        &NtfsOptions::default(),
    )
    .unwrap();
    let vol = FileReader::open(&img).unwrap();
    let ours = walk(&fs, &vol, false);
    assert_eq!(fs.info().label.as_deref(), Some("mylabel"));
    assert_eq!(fs.info().block_size, 512);
    assert!(fs.info().warnings.is_empty(), "{:?}", fs.info().warnings);
    assert_eq!(fs.version(), Some((3, 1)));
    assert_eq!(
        ours["/file-with-12345"].sha.as_deref(),
        Some(sha256(b"12345").as_str())
    );
    let thousand: Vec<u8> = b"12345".iter().copied().cycle().take(1000).collect();
    assert_eq!(
        ours["/1000-bytes-file"].sha.as_deref(),
        Some(sha256(&thousand).as_str())
    );
    let mut sparse = vec![0u8; 500_005];
    sparse[..5].copy_from_slice(b"12345");
    sparse[500_000..].copy_from_slice(b"11111");
    assert_eq!(
        ours["/sparse-file"].sha.as_deref(),
        Some(sha256(&sparse).as_str())
    );
    assert_eq!(ours["/empty-file"].size, 0);
    let mtime = fs.metadata(ours["/empty-file"].id).unwrap().mtime.unwrap();
    // Made with `touch -t 202101011337` in UTC+1.
    assert_eq!(mtime.to_rfc3339()[..16], *"2021-01-01T12:37");
    for i in 1..=512 {
        assert_eq!(ours[&format!("/many_subdirs/{i}")].kind, FileKind::Dir);
    }
    if have("fls") && have("icat") && have("blkls") {
        compare_with_tsk(&img, &ours, true);
        compare_used_map(&img, &fs);
    }
    let _: &dyn ReadAt = &vol;
}

#[test]
fn fuse_fragmented_mft_matches_tsk() {
    if !(have("mkntfs") && have("fls") && have("icat") && have("blkls")) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("frag.img");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    mkntfs_image(&img, 16, "");
    if !mount(&img, &mnt, "") {
        return;
    }
    let guard = Unmount(mnt.clone());
    // Fill the volume, then grow $MFT past its zone: its new runs land in freed gaps.
    for i in 1..=12 {
        std::fs::write(mnt.join(format!("big{i}")), prng(i, 1_000_000)).unwrap();
    }
    std::fs::create_dir(mnt.join("d")).unwrap();
    for j in 1..=700 {
        std::fs::write(mnt.join(format!("d/s{j}")), format!("{j}\n")).unwrap();
    }
    std::fs::remove_file(mnt.join("big3")).unwrap();
    std::fs::remove_file(mnt.join("big7")).unwrap();
    for j in 701..=1200 {
        std::fs::write(mnt.join(format!("d/s{j}")), format!("{j}\n")).unwrap();
    }
    drop(guard);

    let fs = open_img(&img);
    let mft_extents = fs.extents(0, None).unwrap();
    assert!(
        mft_extents.len() > 1,
        "$MFT should be fragmented: {mft_extents:?}"
    );
    let vol = FileReader::open(&img).unwrap();
    let ours = walk(&fs, &vol, false);
    for j in [1, 700, 701, 1200] {
        assert_eq!(
            ours[&format!("/d/s{j}")].sha.as_deref(),
            Some(sha256(format!("{j}\n").as_bytes()).as_str())
        );
    }
    assert_eq!(ours.keys().filter(|p| p.starts_with("/d/")).count(), 1200);
    compare_with_tsk_sampled(&img, &ours, true, &|p| {
        !p.starts_with("/d/s") || p.ends_with('7')
    });
    compare_used_map(&img, &fs);
}
