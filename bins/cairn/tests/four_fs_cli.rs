//! The data-aware backup must-show (issue #5), driven through the real `cairn` binary: one
//! GPT disk (a qemu-img VMDK) holding ext4, FAT32, exFAT and NTFS partitions, each filled
//! with the tools of that file system (mke2fs -d + debugfs, mkfs.fat + mtools, mkfs.exfat +
//! exfat-fuse, mkntfs + ntfs-3g), backed up twice with files added, changed (same and
//! different size) and deleted in between. Checked: `find` lists every file version once
//! with exactly the restore points holding it; `restore-file` gives every file of both
//! restore points with its original SHA-256; `diff` is exactly the changes made; the whole
//! restored disk equals the source on every block The Sleuth Kit calls allocated
//! (`blkls -a`), and every file read from it with `fls`/`icat` has its original SHA-256;
//! `verify --recoverable` passes for both restore points.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{have, run, s};

/// 2024-01-01T10:00:00Z: the time every file of the first day carries.
const DAY1: i64 = 1_704_103_200;
/// 2024-01-02T12:00:00Z: the time every file added or changed on the second day carries.
const DAY2: i64 = 1_704_196_800;
const MIB: u64 = 1 << 20;
const SECTOR: u64 = 512;
/// The default (fixed, disk-aligned) chunk size: files larger than this span several chunks.
const CHUNK: usize = 256 << 10;

fn cairn(args: &[&str]) -> Output {
    common::cairn_output(args, Some("four-fs"))
}

fn ok(args: &[&str]) -> String {
    common::cairn_ok(args, Some("four-fs"))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs an external tool in UTC with a UTF-8 locale (mtools encodes names by the locale).
fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.env("TZ", "UTC").env("LC_ALL", "C.UTF-8");
    c
}

/// mkfs.*, losetup and mount helpers live in /usr/sbin, not always on a test's PATH.
fn path_with_sbin() -> String {
    format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    )
}

fn sha(bytes: &[u8]) -> String {
    cairn_catalog::hex(&cairn_catalog::sha256(bytes))
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

// ------------------------------------------------------------------------------- the model

/// What a volume should hold: files (path -> bytes, mtime) and directories.
#[derive(Clone, Default, Debug)]
struct Tree {
    files: BTreeMap<String, (Vec<u8>, i64)>,
    dirs: BTreeSet<String>,
}

/// A second-day change, applied to the model and to each file system with its own tools.
#[derive(Clone, Debug)]
enum Op {
    Mkdir(&'static str),
    /// Create or replace a file (new content, mtime DAY2).
    Put(&'static str, Vec<u8>),
    Delete(&'static str),
}

/// A 1 MiB file that is a hole except 4 KiB of data at 512 KiB.
fn sparse_content() -> Vec<u8> {
    let mut v = vec![0u8; 1 << 20];
    v[512 << 10..(512 << 10) + 4096].copy_from_slice(&noise(9, 4096));
    v
}

fn day1_tree(seed: u64) -> Tree {
    let mut t = Tree::default();
    for d in [
        "/docs",
        "/docs/a",
        "/docs/a/b",
        "/docs/a/b/c",
        "/old",
        "/media",
        "/Ünïcödé-dir",
    ] {
        t.dirs.insert(d.to_string());
    }
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("/small.txt", b"hello world\n".to_vec()),
        ("/empty.bin", Vec::new()),
        ("/big.bin", noise(seed + 1, 3 * CHUNK + 1234)),
        ("/sparse.bin", sparse_content()),
        ("/docs/report.txt", b"report, first draft.\n".repeat(200)),
        ("/docs/notes.txt", b"note\n".repeat(600)),
        ("/docs/a/b/c/deep.txt", b"deep inside\n".to_vec()),
        (
            "/Ünïcödé-dir/日本語のファイル.txt",
            "ユニコード\n".repeat(50).into_bytes(),
        ),
        ("/old/remove-me.bin", noise(seed + 2, CHUNK + 4096)),
        ("/old/keep.txt", b"keep me\n".to_vec()),
        ("/media/photo.jpg", noise(seed + 3, 300_000)),
    ];
    for (p, c) in files {
        t.files.insert(p.to_string(), (c, DAY1));
    }
    t
}

fn day2_ops(seed: u64) -> Vec<Op> {
    let mut big = noise(seed + 1, 3 * CHUNK + 1234);
    big[CHUNK + 100..CHUNK + 4196].copy_from_slice(&noise(seed + 4, 4096));
    vec![
        // added
        Op::Put("/new.txt", b"a new file\n".to_vec()),
        Op::Put("/docs/a/new-big.bin", noise(seed + 5, 2 * CHUNK + 77)),
        Op::Mkdir("/newdir"),
        Op::Put("/newdir/inner.txt", b"inside a new directory\n".to_vec()),
        // changed, same size
        Op::Put("/docs/report.txt", b"report, final draft.\n".repeat(200)),
        Op::Put("/big.bin", big),
        // changed, other size
        Op::Put("/docs/notes.txt", b"more notes\n".repeat(900)),
        Op::Put(
            "/Ünïcödé-dir/日本語のファイル.txt",
            "ユニコード、第二版\n".repeat(40).into_bytes(),
        ),
        // deleted
        Op::Delete("/small.txt"),
        Op::Delete("/old/remove-me.bin"),
    ]
}

fn apply(t: &Tree, ops: &[Op]) -> Tree {
    let mut t = t.clone();
    for op in ops {
        match op {
            Op::Mkdir(p) => {
                t.dirs.insert((*p).to_string());
            }
            Op::Put(p, c) => {
                t.files.insert((*p).to_string(), (c.clone(), DAY2));
            }
            Op::Delete(p) => {
                t.files.remove(*p);
            }
        }
    }
    t
}

/// The directory whose entry list `op` changes (a name added or removed), as a kernel or a
/// FUSE driver updates its mtime; None for a file replaced in place or a change in the root
/// (the root has no entry of its own in a catalog, so `diff` cannot list it).
fn touched_dir<'o>(before: &Tree, op: &'o Op) -> Option<&'o str> {
    let p = match op {
        Op::Put(p, _) if before.files.contains_key(*p) => return None,
        Op::Mkdir(p) | Op::Put(p, _) | Op::Delete(p) => p,
    };
    Some(parent(p)).filter(|d| *d != "/")
}

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// Sets atime and mtime: exfat-fuse 1.3.0 stores "now" as the mtime when only the mtime is
/// set (`touch -m` passes UTIME_OMIT for the atime).
fn set_mtime(p: &Path, secs: i64) {
    run(tool("touch").arg("-d").arg(format!("@{secs}")).arg(p));
}

/// Writes `t` as a host directory (the sparse file with a real hole), every time set.
fn stage(t: &Tree, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for d in &t.dirs {
        std::fs::create_dir_all(dir.join(&d[1..])).unwrap();
    }
    for (p, (c, mtime)) in &t.files {
        write_host_file(&dir.join(&p[1..]), c, *mtime);
    }
    for d in t.dirs.iter().rev() {
        set_mtime(&dir.join(&d[1..]), DAY1);
    }
}

/// Writes `c` leaving all-zero 4 KiB blocks as holes, then sets the mtime.
fn write_host_file(path: &Path, c: &[u8], mtime: i64) {
    let mut f = std::fs::File::create(path).unwrap();
    for (i, block) in c.chunks(4096).enumerate() {
        if block.iter().any(|b| *b != 0) {
            f.seek(SeekFrom::Start(i as u64 * 4096)).unwrap();
            f.write_all(block).unwrap();
        }
    }
    f.set_len(c.len() as u64).unwrap();
    drop(f);
    set_mtime(path, mtime);
}

// ------------------------------------------------------------------ the four file systems

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fs {
    Ext4,
    Fat32,
    ExFat,
    Ntfs,
}

struct Volume {
    fs: Fs,
    /// GPT partition number.
    number: u32,
    start_sector: u64,
    size: u64,
    image: PathBuf,
}

fn make_fs(v: &Volume, t: &Tree, work: &Path) -> bool {
    let img = &v.image;
    std::fs::File::create(img).unwrap().set_len(v.size).unwrap();
    let staged = work.join(format!("stage-{}", v.number));
    stage(t, &staged);
    match v.fs {
        Fs::Ext4 => {
            run(tool("mke2fs")
                .env("PATH", path_with_sbin())
                .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", "cairn-ext4"])
                .args(["-E", "nodiscard", "-d"])
                .arg(&staged)
                .arg(img));
        }
        Fs::Fat32 => {
            run(tool("mkfs.fat")
                .env("PATH", path_with_sbin())
                .args(["-F", "32", "-s", "1", "-n", "CAIRNFAT", "-i", "0CA1F32A"])
                .args(["-h", &v.start_sector.to_string()])
                .arg(img));
            let mut c = tool("mcopy");
            c.args(["-s", "-p", "-m", "-i", s(img)]);
            for e in std::fs::read_dir(&staged).unwrap() {
                c.arg(e.unwrap().path());
            }
            run(c.arg("::/"));
        }
        Fs::ExFat => {
            run(tool("mkfs.exfat")
                .env("PATH", path_with_sbin())
                .args(["-L", "CAIRNEX"])
                .arg(img));
            let Some(m) = Mount::new(v, work) else {
                return false;
            };
            copy_tree(&staged, &m.dir);
            m.unmount();
        }
        Fs::Ntfs => {
            run(tool("mkntfs")
                .env("PATH", path_with_sbin())
                .args(["-F", "-Q", "-q", "-L", "CAIRNNTFS"])
                .args(["-p", &v.start_sector.to_string(), "-H", "255", "-S", "63"])
                .arg(img));
            let Some(m) = Mount::new(v, work) else {
                return false;
            };
            copy_tree(&staged, &m.dir);
            m.unmount();
        }
    }
    std::fs::remove_dir_all(&staged).unwrap();
    true
}

/// `cp` keeps holes and times; the directories' times are set again after their contents.
fn copy_tree(from: &Path, to: &Path) {
    let mut c = tool("cp");
    c.args(["-r", "--sparse=always", "--preserve=timestamps"]);
    for e in std::fs::read_dir(from).unwrap() {
        c.arg(e.unwrap().path());
    }
    run(c.arg(to));
}

fn change_fs(v: &Volume, before: &Tree, ops: &[Op], work: &Path) {
    let host = work.join(format!("day2-{}", v.number));
    std::fs::create_dir_all(&host).unwrap();
    let host_file = |i: usize, c: &[u8]| {
        let p = host.join(format!("f{i}"));
        write_host_file(&p, c, DAY2);
        p
    };
    match v.fs {
        Fs::Ext4 => {
            // debugfs neither replaces a file nor touches directory times (a kernel does):
            // replace = rm + write, and a directory gaining or losing an entry gets a new
            // mtime, as from the kernel.
            let mut script = String::new();
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::Mkdir(p) => script.push_str(&format!("mkdir {p}\nsif {p} mtime @{DAY2}\n")),
                    Op::Put(p, c) => {
                        let f = host_file(i, c);
                        if before.files.contains_key(*p) {
                            script.push_str(&format!("rm {p}\n"));
                        }
                        script.push_str(&format!(
                            "cd {}\nwrite {} {}\ncd /\nsif {p} mtime @{DAY2}\n",
                            parent(p),
                            s(&f),
                            p.rsplit('/').next().unwrap()
                        ));
                    }
                    Op::Delete(p) => script.push_str(&format!("rm {p}\n")),
                }
                if let Some(d) = touched_dir(before, op) {
                    script.push_str(&format!("sif {d} mtime @{DAY2}\n"));
                }
            }
            let cmds = host.join("debugfs.cmds");
            std::fs::write(&cmds, script).unwrap();
            run(tool("debugfs")
                .env("PATH", path_with_sbin())
                .arg("-w")
                .arg("-f")
                .arg(&cmds)
                .arg(&v.image));
        }
        Fs::Fat32 => {
            for (i, op) in ops.iter().enumerate() {
                let target = |p: &str| format!("::{p}");
                match op {
                    Op::Mkdir(p) => {
                        run(tool("mmd").args(["-i", s(&v.image), &target(p)]));
                    }
                    Op::Put(p, c) => {
                        let f = host_file(i, c);
                        run(tool("mcopy")
                            .args(["-o", "-p", "-m", "-i", s(&v.image)])
                            .arg(&f)
                            .arg(target(p)));
                    }
                    Op::Delete(p) => {
                        run(tool("mdel").args(["-i", s(&v.image), &target(p)]));
                    }
                }
            }
        }
        Fs::ExFat | Fs::Ntfs => {
            let m = Mount::new(v, work).expect("the first mount worked");
            for op in ops {
                match op {
                    Op::Mkdir(p) => std::fs::create_dir(m.dir.join(&p[1..])).unwrap(),
                    Op::Put(p, c) => {
                        let f = m.dir.join(&p[1..]);
                        std::fs::write(&f, c).unwrap();
                        set_mtime(&f, DAY2);
                    }
                    Op::Delete(p) => std::fs::remove_file(m.dir.join(&p[1..])).unwrap(),
                }
            }
            m.unmount();
        }
    }
}

/// A FUSE mount (exfat-fuse on a loop device, ntfs-3g on the file) run in the foreground, so
/// that unmounting can wait for the driver to finish writing the image.
struct Mount {
    dir: PathBuf,
    daemon: Option<Child>,
    loop_dev: Option<String>,
}

impl Mount {
    /// None (skipped, with a note) when FUSE is unusable outside CI; under CI it fails.
    fn new(v: &Volume, work: &Path) -> Option<Mount> {
        let dir = work.join(format!("mnt-{}", v.number));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = Mount {
            dir: dir.clone(),
            daemon: None,
            loop_dev: None,
        };
        let spawned = if v.fs == Fs::ExFat {
            // exfat-fuse as root insists on a block device.
            let out = tool("losetup")
                .env("PATH", path_with_sbin())
                .args(["-f", "--show"])
                .arg(&v.image)
                .output()
                .unwrap();
            if !out.status.success() {
                return fuse_unusable(&format!(
                    "losetup: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
            m.loop_dev = Some(dev.clone());
            tool("mount.exfat-fuse")
                .env("PATH", path_with_sbin())
                .arg("-d")
                .arg(&dev)
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        } else {
            tool("ntfs-3g")
                .args(["-o", "no_detach"])
                .arg(&v.image)
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        };
        m.daemon = Some(spawned.unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            if mounts.lines().any(|l| l.split(' ').nth(4) == Some(s(&dir))) {
                return Some(m);
            }
            let exited = m.daemon.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let mut err = String::new();
                if let Some(mut e) = m.daemon.as_mut().unwrap().stderr.take() {
                    if exited.is_some() {
                        let _ = e.read_to_string(&mut err);
                    }
                }
                drop(m);
                return fuse_unusable(&format!("{:?} mount failed: {err}", v.fs));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn unmount(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = Command::new("umount").arg(&self.dir).status();
            let _ = d.wait();
        }
        if let Some(dev) = self.loop_dev.take() {
            let _ = Command::new("losetup")
                .env("PATH", path_with_sbin())
                .arg("-d")
                .arg(dev)
                .status();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.release();
    }
}

fn fuse_unusable(msg: &str) -> Option<Mount> {
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("skipped: {msg} (this test needs root, /dev/fuse and a loop device)");
    None
}

// ----------------------------------------------------------------------------- the disk

fn gpt_disk(path: &Path, volumes: &[Volume], disk_size: u64) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(disk_size)
        .unwrap();
    let mut c = tool("sgdisk");
    c.env("PATH", path_with_sbin()).arg("-o");
    for v in volumes {
        let end = v.start_sector + v.size / SECTOR - 1;
        let code = if v.fs == Fs::Ext4 { "8300" } else { "0700" };
        c.arg(format!("-n{}:{}:{end}", v.number, v.start_sector))
            .arg(format!("-t{}:{code}", v.number))
            .arg(format!("-c{}:{:?}", v.number, v.fs));
    }
    run(c.arg(path));
}

/// Copies each volume image into the (fresh, all-zero) disk at its partition, leaving zero
/// blocks as holes.
fn write_volumes(disk: &Path, volumes: &[Volume]) {
    let mut d = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    for v in volumes {
        let bytes = std::fs::read(&v.image).unwrap();
        let base = v.start_sector * SECTOR;
        for (i, block) in bytes.chunks(64 << 10).enumerate() {
            if block.iter().any(|b| *b != 0) {
                d.seek(SeekFrom::Start(base + i as u64 * (64 << 10)))
                    .unwrap();
                d.write_all(block).unwrap();
            }
        }
    }
}

/// A fresh disk with `from`'s partition table (both GPT copies) and the volumes' images.
fn same_table_new_volumes(from: &Path, to: &Path, volumes: &[Volume]) {
    let old = std::fs::read(from).unwrap();
    let gpt = usize::try_from(34 * SECTOR).unwrap();
    let mut d = std::fs::File::create(to).unwrap();
    d.set_len(old.len() as u64).unwrap();
    d.write_all(&old[..gpt]).unwrap();
    d.seek(SeekFrom::Start((old.len() - gpt) as u64)).unwrap();
    d.write_all(&old[old.len() - gpt..]).unwrap();
    drop(d);
    write_volumes(to, volumes);
}

/// Every regular file TSK lists on the volume at `start_sector` (no metadata files, no
/// deleted or orphan entries), read with `icat`: path -> SHA-256.
fn tsk_files(disk: &Path, start_sector: u64) -> BTreeMap<String, String> {
    let off = start_sector.to_string();
    let fls = String::from_utf8(run(tool("fls").args(["-r", "-p", "-o", &off]).arg(disk))).unwrap();
    let mut out = BTreeMap::new();
    for line in fls.lines() {
        let Some((kind, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((inode, path)) = rest.split_once(":\t") else {
            continue;
        };
        if kind != "r/r"
            || inode.starts_with('*')
            || path.starts_with('$')
            || path.contains("/$")
            || path.ends_with("(Volume Label Entry)")
            || path.starts_with("lost+found/")
        {
            continue;
        }
        let data = run(tool("icat").args(["-o", &off]).arg(disk).arg(inode));
        out.insert(format!("/{path}"), sha(&data));
    }
    out
}

/// SHA-256 of every block TSK counts as allocated on the volume (`blkls -a`).
fn tsk_allocated(disk: &Path, start_sector: u64) -> String {
    let off = start_sector.to_string();
    sha(&run(tool("blkls").args(["-a", "-o", &off]).arg(disk)))
}

fn read_host_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_str().unwrap();
                out.insert(format!("/{rel}"), sha(&std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn hashes(t: &Tree) -> BTreeMap<String, String> {
    t.files
        .iter()
        .map(|(p, (c, _))| (p.clone(), sha(c)))
        .collect()
}

/// NTFS lists its own metadata files ($MFT, $Bitmap, $Extend/...) like any file; they are
/// in the catalog (a restore can bring back $MFT), but they are not the guest's files.
fn is_metadata_file(fs: Fs, path: &str) -> bool {
    fs == Fs::Ntfs && path.starts_with("/$")
}

fn rfc3339(secs: i64) -> &'static str {
    match secs {
        DAY1 => "2024-01-01T10:00:00Z",
        DAY2 => "2024-01-02T12:00:00Z",
        _ => unreachable!(),
    }
}

#[test]
fn four_file_systems_two_restore_points() {
    for t in [
        "qemu-img",
        "sgdisk",
        "mke2fs",
        "debugfs",
        "mkfs.fat",
        "mcopy",
        "mkfs.exfat",
        "mount.exfat-fuse",
        "losetup",
        "mkntfs",
        "ntfs-3g",
        "fls",
        "icat",
        "blkls",
    ] {
        if !have(t) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let sizes = [
        (Fs::Ext4, 32 * MIB),
        // FAT32 needs 65525 clusters: 40 MiB of 512-byte clusters.
        (Fs::Fat32, 40 * MIB),
        (Fs::ExFat, 32 * MIB),
        (Fs::Ntfs, 32 * MIB),
    ];
    let mut volumes = Vec::new();
    let mut start = 2048u64;
    for (i, (fs, size)) in sizes.into_iter().enumerate() {
        let number = u32::try_from(i + 1).unwrap();
        volumes.push(Volume {
            fs,
            number,
            start_sector: start,
            size,
            image: work.join(format!("p{number}.img")),
        });
        start += size / SECTOR;
    }
    let disk_size = start * SECTOR + MIB;

    // Day 1.
    let mut day1 = Vec::new();
    for v in &volumes {
        let t = day1_tree(u64::from(v.number) * 100);
        if !make_fs(v, &t, work) {
            return;
        }
        day1.push(t);
    }
    let raw1 = work.join("day1.raw");
    gpt_disk(&raw1, &volumes, disk_size);
    write_volumes(&raw1, &volumes);
    let vm = work.join("vm");
    std::fs::create_dir(&vm).unwrap();
    let vmdk = vm.join("fourfs.vmdk");
    run(tool("qemu-img").args(["convert", "-f", "raw", "-O", "vmdk", s(&raw1), s(&vmdk)]));

    let repo = work.join("repo");
    ok(&["init", "--repo", s(&repo)]);
    let backup = |time: &str| -> Value {
        let out = ok(&[
            "backup",
            "--repo",
            s(&repo),
            s(&vmdk),
            "--name",
            "fourfs",
            "--time",
            time,
            "--json",
        ]);
        serde_json::from_str(&out).unwrap()
    };
    let b1 = backup("2024-01-01T23:00:00Z");

    // Day 2.
    let mut day2 = Vec::new();
    let mut all_ops = Vec::new();
    for (v, t1) in volumes.iter().zip(&day1) {
        let ops = day2_ops(u64::from(v.number) * 100);
        change_fs(v, t1, &ops, work);
        day2.push(apply(t1, &ops));
        all_ops.push(ops);
    }
    let raw2 = work.join("day2.raw");
    same_table_new_volumes(&raw1, &raw2, &volumes);
    std::fs::remove_file(&vmdk).unwrap();
    run(tool("qemu-img").args(["convert", "-f", "raw", "-O", "vmdk", s(&raw2), s(&vmdk)]));
    let b2 = backup("2024-01-02T23:00:00Z");

    // The sources themselves, read with TSK, hold exactly the model (checks the fixture).
    for (day, raw) in [(&day1, &raw1), (&day2, &raw2)] {
        for (v, t) in volumes.iter().zip(day.iter()) {
            assert_eq!(
                tsk_files(raw, v.start_sector),
                hashes(t),
                "source {:?}",
                v.fs
            );
        }
    }

    // Both backups found four cataloged volumes and skipped free blocks.
    for b in [&b1, &b2] {
        let fs: Vec<&str> = b["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                assert_eq!(v["cataloged"], true, "{v}");
                assert!(v["unparsed"].is_null(), "{v}");
                v["filesystem"].as_str().unwrap()
            })
            .collect();
        assert_eq!(fs, ["ext4", "fat32", "exfat", "ntfs"]);
        // The VMDK leaves never-written space unallocated; what is skipped is free space in
        // written grains (deleted files' old data, mkfs leftovers).
        assert!(b["bytes_skipped"].as_u64().unwrap() > 0, "{b}");
        eprintln!("backup: {b}");
    }
    let rp1 = b1["restore_point"].as_str().unwrap().to_string();
    let rp2 = b2["restore_point"].as_str().unwrap().to_string();

    // find: every file version once, with exactly the restore points holding it.
    let found = json_lines(&ok(&["find", "--repo", s(&repo), "*", "--json"]));
    for (v, (t1, t2)) in volumes.iter().zip(day1.iter().zip(&day2)) {
        let mut got: BTreeMap<String, Vec<(u64, String, Vec<String>)>> = BTreeMap::new();
        for f in found
            .iter()
            .filter(|f| f["partition"] == v.number && f["type"] == "file")
            .filter(|f| !is_metadata_file(v.fs, f["path"].as_str().unwrap()))
        {
            got.entry(f["path"].as_str().unwrap().to_string())
                .or_default()
                .push((
                    f["size"].as_u64().unwrap(),
                    f["mtime"].as_str().unwrap_or("-").to_string(),
                    serde_json::from_value(f["restore_points"].clone()).unwrap(),
                ));
        }
        let mut want: BTreeMap<String, Vec<(u64, String, Vec<String>)>> = BTreeMap::new();
        let paths: BTreeSet<&String> = t1.files.keys().chain(t2.files.keys()).collect();
        for p in paths {
            let version = |f: &(Vec<u8>, i64), rps: Vec<String>| {
                (f.0.len() as u64, rfc3339(f.1).to_string(), rps)
            };
            let w = want.entry(p.clone()).or_default();
            match (t1.files.get(p), t2.files.get(p)) {
                (Some(a), Some(b)) if a == b => w.push(version(a, vec![rp1.clone(), rp2.clone()])),
                (a, b) => {
                    if let Some(a) = a {
                        w.push(version(a, vec![rp1.clone()]));
                    }
                    if let Some(b) = b {
                        w.push(version(b, vec![rp2.clone()]));
                    }
                }
            }
        }
        assert_eq!(got, want, "find on {:?}", v.fs);
    }

    // Names are case-insensitive on FAT32, exFAT and NTFS, not on ext4.
    let upper = json_lines(&ok(&[
        "find",
        "--repo",
        s(&repo),
        "/DOCS/REPORT.TXT",
        "--json",
    ]));
    let hits: Vec<(u64, &str)> = upper
        .iter()
        .map(|f| {
            (
                f["partition"].as_u64().unwrap(),
                f["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hits,
        [2, 2, 3, 3, 4, 4].map(|p| (p, "/docs/report.txt")),
        "{upper:?}"
    );

    // diff: exactly what was done.
    let changes = json_lines(&ok(&["diff", "--repo", s(&repo), &rp1, &rp2, "--json"]));
    for (v, ops) in volumes.iter().zip(&all_ops) {
        let got: BTreeSet<(String, String)> = changes
            .iter()
            .filter(|c| c["partition"] == v.number)
            .filter(|c| !is_metadata_file(v.fs, c["path"].as_str().unwrap()))
            .map(|c| {
                (
                    c["change"].as_str().unwrap().to_string(),
                    c["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let t1 = &day1[usize::try_from(v.number).unwrap() - 1];
        let mut want = BTreeSet::new();
        for op in ops {
            let (kind, p) = match op {
                Op::Mkdir(p) => ("added", *p),
                Op::Put(p, _) if t1.files.contains_key(*p) => ("changed", *p),
                Op::Put(p, _) => ("added", *p),
                Op::Delete(p) => ("removed", *p),
            };
            want.insert((kind.to_string(), p.to_string()));
        }
        // Directories that gained or lost an entry changed their mtime, except on FAT32:
        // mtools, like a FAT driver, leaves directory times alone.
        if v.fs != Fs::Fat32 {
            for op in ops {
                if let Some(d) = touched_dir(t1, op) {
                    if t1.dirs.contains(d) {
                        want.insert(("changed".to_string(), d.to_string()));
                    }
                }
            }
        }
        assert_eq!(got, want, "diff on {:?}", v.fs);
    }

    // restore-file: every file of both restore points, with its original SHA-256.
    for (rp, day) in [(&rp1, &day1), (&rp2, &day2)] {
        for (v, t) in volumes.iter().zip(day.iter()) {
            let out = work.join(format!("files-{}-{}", &rp[..8], v.number));
            ok(&[
                "restore-file",
                "--repo",
                s(&repo),
                &format!("{rp}:1:{}", v.number),
                "/",
                "--to",
                s(&out),
            ]);
            let mut got = read_host_tree(&out);
            // A tree restore of an NTFS root leaves its metadata files ($MFT, ...) out.
            assert!(
                !got.keys().any(|p| is_metadata_file(v.fs, p)),
                "NTFS metadata files restored: {:?}",
                got.keys()
                    .filter(|p| p.starts_with("/$"))
                    .collect::<Vec<_>>()
            );
            got.retain(|p, _| !p.starts_with("/lost+found/"));
            assert_eq!(
                got,
                hashes(t),
                "restore-file {rp}:1:{} ({:?})",
                v.number,
                v.fs
            );
            std::fs::remove_dir_all(&out).unwrap();
        }
    }

    // The usual request: a deleted file and the older version of a changed one, by path.
    for (v, t) in volumes.iter().zip(&day1) {
        let out = work.join(format!("two-files-{}", v.number));
        let wanted = ["/old/remove-me.bin", "/Ünïcödé-dir/日本語のファイル.txt"];
        let mut args = vec!["restore-file", "--repo", s(&repo)];
        let spec = format!("{rp1}:1:{}", v.number);
        args.push(&spec);
        args.extend(wanted);
        args.extend(["--to", s(&out)]);
        ok(&args);
        let got: BTreeSet<String> = read_host_tree(&out).into_values().collect();
        let want: BTreeSet<String> = wanted.iter().map(|p| sha(&t.files[*p].0)).collect();
        assert_eq!(got, want, "restore-file of two paths from {:?}", v.fs);
    }
    // Named explicitly, an NTFS metadata file is restored ($UpCase: 65536 UTF-16 units).
    for v in volumes.iter().filter(|v| v.fs == Fs::Ntfs) {
        let out = work.join("upcase");
        ok(&[
            "restore-file",
            "--repo",
            s(&repo),
            &format!("{rp1}:1:{}", v.number),
            "/$UpCase",
            "--to",
            s(&out),
        ]);
        assert_eq!(
            std::fs::metadata(out.join("$UpCase")).unwrap().len(),
            131_072
        );
    }

    // The whole restored disk: the partition table and every allocated block as in the
    // source, and every file read back with TSK.
    for (rp, day, raw) in [(&rp1, &day1, &raw1), (&rp2, &day2, &raw2)] {
        let restored = work.join("restored.raw");
        ok(&["restore", "--repo", s(&repo), rp, "--to", s(&restored)]);
        let (a, b) = (
            std::fs::read(raw).unwrap(),
            std::fs::read(&restored).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        let gpt = usize::try_from(34 * SECTOR).unwrap();
        assert_eq!(a[..gpt], b[..gpt], "primary GPT");
        assert_eq!(
            a[a.len() - gpt + 512..],
            b[b.len() - gpt + 512..],
            "backup GPT"
        );
        for (v, t) in volumes.iter().zip(day.iter()) {
            assert_eq!(
                tsk_allocated(&restored, v.start_sector),
                tsk_allocated(raw, v.start_sector),
                "allocated blocks of {:?} in {rp}",
                v.fs
            );
            assert_eq!(
                tsk_files(&restored, v.start_sector),
                hashes(t),
                "TSK on the restored {:?} of {rp}",
                v.fs
            );
        }
        if rp == &rp2 {
            // Not a copy of the image: free blocks (the deleted files' old data) came back
            // as zeros.
            let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert!(
                differing >= volumes.len() * CHUNK,
                "{differing} bytes differ"
            );
        }
        std::fs::remove_file(&restored).unwrap();

        // verify --recoverable: every volume recoverable, all files read.
        let vols = json_lines(&ok(&[
            "verify",
            "--repo",
            s(&repo),
            "--recoverable",
            rp,
            "--json",
        ]));
        assert_eq!(vols.len(), 4);
        for (v, t) in vols.iter().zip(day.iter()) {
            assert_eq!(v["recoverable"], true, "{v}");
            assert!(
                v["files_read"].as_u64().unwrap() >= t.files.len() as u64,
                "{v}"
            );
        }
    }
}

/// A file left out by `--exclude` has no data in the restore point: `restore-file` must say
/// so instead of writing a file of zeros (its blocks were backed up as free).
#[test]
fn restore_file_does_not_fake_excluded_files() {
    if !have("mke2fs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("photo.jpg"), noise(1, 300_000)).unwrap();
    std::fs::write(src.join("a.txt"), b"kept\n").unwrap();
    let img = d.join("vol.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    run(tool("mke2fs")
        .env("PATH", path_with_sbin())
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&src)
        .arg(&img));
    let repo = d.join("repo");
    ok(&["init", "--repo", s(&repo), "--encryption", "none"]);
    ok(&["backup", "--repo", s(&repo), s(&img), "--exclude", "*.jpg"]);
    let out = d.join("out");
    let r = cairn(&[
        "restore-file",
        "--repo",
        s(&repo),
        "latest",
        "/",
        "--to",
        s(&out),
    ]);
    assert!(r.status.success());
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains("/photo.jpg: excluded from this backup"),
        "{stderr}"
    );
    assert!(!out.join("photo.jpg").exists());
    assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"kept\n");
}
