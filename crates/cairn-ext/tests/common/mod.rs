//! Shared helpers of the integration tests: tool discovery, a deterministic source tree,
//! image building with e2fsprogs.
#![allow(dead_code, unused_imports)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// Fixed timestamps and ids make the images reproducible.
pub const EPOCH: i64 = 1_700_000_000;
pub const FS_UUID: &str = "2f0a5b4c-1d2e-4f60-8a9b-0c1d2e3f4a5b";

pub use cairn_testkit::have;

pub fn tool(name: &str) -> Command {
    for dir in ["/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            let mut c = Command::new(p);
            c.env("E2FSPROGS_FAKE_TIME", EPOCH.to_string());
            return c;
        }
    }
    let mut c = Command::new(name);
    c.env("E2FSPROGS_FAKE_TIME", EPOCH.to_string());
    c
}

pub fn run(mut c: Command) -> String {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random bytes, different per `seed`.
pub fn rnd(seed: u64, len: usize) -> Vec<u8> {
    cairn_testkit::random_bytes(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), len)
}

fn w(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// A sparse file of `size` bytes with `pieces` written at their offsets.
fn sparse(root: &Path, rel: &str, size: u64, pieces: &[(u64, Vec<u8>)]) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(root.join(rel)).unwrap();
    f.set_len(size).unwrap();
    for (off, d) in pieces {
        f.write_all_at(d, *off).unwrap();
    }
}

/// The corpus tree of /work/shared/oracles/make-corpus.sh (profile "full"), minus
/// timestamps on symlinks. `with_big` adds the 5 MB file.
pub fn gen_tree(root: &Path, with_big: bool) {
    w(root, "hello.txt", b"hello world\n");
    w(root, "empty.txt", b"");
    w(root, "one.bin", b"x");
    w(root, "tiny.txt", b"tiny\n");
    w(root, "a4096.txt", &[b'A'; 4096]);
    let mut b = Vec::new();
    for _ in 0..16 {
        b.extend(0..=255u8);
    }
    b.push(b'!');
    w(root, "b4097.bin", &b);
    w(root, "rand1m.bin", &rnd(1, 1 << 20));
    w(root, "Long File Name With Spaces.txt", b"long file name\n");
    w(root, "deep/a/b/c/d/e/f/g/h/i/j/leaf.txt", b"deep leaf\n");
    w(
        root,
        "ünïcödé-dir/日本語ファイル.txt",
        "ユニコード\n".as_bytes(),
    );
    w(root, "ünïcödé-dir/Ελληνικά.txt", b"greek\n");
    w(
        root,
        "ünïcödé-dir/smile-😀.txt",
        b"emoji (non-BMP, UTF-16 surrogates)\n",
    );
    if with_big {
        w(root, "rand5m.bin", &rnd(5, 5_000_000));
    }
    sparse(
        root,
        "sparse.bin",
        8 << 20,
        &[
            (0, b"START".to_vec()),
            (4 << 20, rnd(7, 65536)),
            ((8 << 20) - 3, b"END".to_vec()),
        ],
    );
    let pieces: Vec<(u64, Vec<u8>)> = (0..40u64)
        .map(|i| (i * 69632, vec![u8::try_from(i + 1).unwrap(); 4096]))
        .collect();
    sparse(root, "frag_sparse.bin", 39 * 69632 + 4096, &pieces);
    for i in 1..=300 {
        w(
            root,
            &format!("many/f{i:03}.txt"),
            format!("file {i}\n").as_bytes(),
        );
    }
    symlink("hello.txt", root.join("link-to-hello")).unwrap();
    let long =
        "deep/a/b/c/d/e/f/g/h/i/j/../../../../../../../../../../a/b/c/d/e/f/g/h/i/j/leaf.txt";
    symlink(long, root.join("link-long")).unwrap();
    fs::hard_link(root.join("hello.txt"), root.join("hardlink-hello.txt")).unwrap();
}

/// Sets `user.comment` on hello.txt with setfattr; false when the tool or the file
/// system refuses (the xattr checks are then skipped).
pub fn set_xattr(root: &Path) -> bool {
    if !have("setfattr") {
        return false;
    }
    let ok = |args: &[&str], file: &str| {
        Command::new("setfattr")
            .args(args)
            .arg(root.join(file))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    // A 700-byte value does not fit inside the inode: it goes to an xattr block (of 1 KiB or more).
    let big = format!("0x{}", "ab".repeat(700));
    ok(&["-n", "user.comment", "-v", "an xattr value"], "hello.txt")
        && ok(&["-n", "user.big", "-v", &big], "one.bin")
}

/// Runs mke2fs -d with deterministic ids.
pub fn mkfs(img: &Path, src: Option<&Path>, args: &[&str], size: &str) {
    let mut c = tool("mke2fs");
    c.args([
        "-q",
        "-F",
        "-U",
        FS_UUID,
        "-E",
        &format!("hash_seed={FS_UUID}"),
    ]);
    c.args(args);
    if let Some(s) = src {
        c.arg("-d").arg(s);
    }
    c.arg(img).arg(size);
    run(c);
}

/// e2fsck -fyD: rebuilds directories as htrees. Exit 1 ("fixed") is expected.
pub fn fsck_d(img: &Path) {
    let st = tool("e2fsck").arg("-fyD").arg(img).output().unwrap();
    assert!(
        st.status.code().is_some_and(|c| c <= 1),
        "e2fsck failed: {}",
        String::from_utf8_lossy(&st.stdout)
    );
}

pub fn debugfs(img: &Path, cmd: &str) -> String {
    let mut c = tool("debugfs");
    c.arg("-R").arg(cmd).arg(img);
    run(c)
}
