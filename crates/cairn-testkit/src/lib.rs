//! Helpers shared by Cairn's integration tests (a dev-dependency only). See README.md.
//!
//! ```
//! let data = cairn_testkit::random_bytes(7, 4096);
//! assert_eq!(cairn_testkit::read_all(&data, 1000), data);
//! cairn_testkit::check_odd_reads(&data, &data);
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cairn_io::{AllocationMap, DiskIdentity, DiskLayer, FileReader, ParentLink, RangeKind, ReadAt};

/// Folders outside an ordinary user's `PATH` where Debian installs file-system tools.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// Where `tool` is: a path on `PATH`, in `/usr/sbin` or `/sbin`, or `None`. A name with a
/// `/` is taken as a path.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// True when `tool` is installed. Missing: panics when `CI` is set (CI installs every
/// oracle), else prints `skipped: <tool> not found` and returns false.
pub fn have(tool: &str) -> bool {
    let found = find_tool(tool).is_some();
    if !found {
        skip_or_fail(tool);
    }
    found
}

/// True when `/usr/bin/python3` imports `module` (Debian's python3-libvhdi and friends are
/// visible to the system interpreter only). Missing: as [`have`].
pub fn have_python_module(module: &str) -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail(&format!("python3 module {module}"));
    }
    ok
}

fn skip_or_fail(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} not found (CI is set, so it must be installed)"
    );
    eprintln!("skipped: {what} not found");
}

/// A [`Command`] for `tool`, resolved through [`find_tool`] (so `/usr/sbin` tools run
/// without a root `PATH`), with `TZ=UTC` and `LC_ALL=C.UTF-8` so tools print stable output.
pub fn tool_command(tool: &str) -> Command {
    let mut c = Command::new(find_tool(tool).unwrap_or_else(|| PathBuf::from(tool)));
    c.env("TZ", "UTC").env("LC_ALL", "C.UTF-8");
    c
}

/// Runs `cmd` and returns its standard output; panics with both outputs on failure.
pub fn run_command(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `tool args...` (see [`tool_command`]) and returns its standard output.
pub fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    run_command(tool_command(tool).args(args))
}

/// [`run`], with the output as (lossy) UTF-8 text.
pub fn run_text(tool: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&run(tool, args)).into_owned()
}

/// A path as `&str` for a command line (test paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Deterministic pseudo-random bytes (xorshift64*). The seed's low bit is forced on (the
/// generator's state must not be zero), so seeds 2n and 2n+1 give the same bytes: use seeds
/// that differ elsewhere when two fixtures must differ.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A raw disk of 6 MiB + 3584 bytes (deliberately not a multiple of any grain, cluster or
/// block size): random, zero and pattern areas, and small writes that straddle 64 KiB and
/// 1 MiB boundaries.
pub fn sample_disk() -> Vec<u8> {
    const MIB: usize = 1 << 20;
    let size = 6 * MIB + 3584;
    let mut d = vec![0u8; size];
    d[..MIB].copy_from_slice(&random_bytes(1, MIB));
    d[2 * MIB..2 * MIB + 512 * 1024].fill(0x5a);
    d[3 * MIB - 1000..3 * MIB + 2000].copy_from_slice(&random_bytes(2, 3000));
    d[4 * MIB + 65536 - 7..4 * MIB + 65536 + 9].fill(0xee);
    d[size - 5000..].copy_from_slice(&random_bytes(3, 5000));
    d
}

/// Bytes every test read buffer starts as: a reader that leaves part of a successful read
/// unwritten (trusting the caller's buffer to be zeroed) shows up as this pattern instead of
/// passing by luck.
pub const POISON: u8 = 0xA5;

/// Reads all of `img` in requests of `step` bytes, into a buffer pre-filled with [`POISON`].
pub fn read_all(img: &dyn ReadAt, step: usize) -> Vec<u8> {
    let mut out = vec![POISON; usize::try_from(img.size()).expect("test image fits in memory")];
    for (i, piece) in out.chunks_mut(step.max(1)).enumerate() {
        let offset = u64::try_from(i * step.max(1)).expect("usize fits u64");
        img.read_exact_at(piece, offset)
            .unwrap_or_else(|e| panic!("read of {} bytes at {offset}: {e}", piece.len()));
    }
    out
}

/// Reads `img` in odd-sized requests (1 byte to ~200 KB) at odd offsets and compares each
/// with `want`, so every grain, cluster and block boundary is crossed somewhere. Buffers
/// start as [`POISON`].
pub fn check_odd_reads(img: &dyn ReadAt, want: &[u8]) {
    assert_eq!(img.size(), u64::try_from(want.len()).unwrap(), "image size");
    let mut off = 0usize;
    let mut step = 1usize;
    while off < want.len() {
        let len = (step * 4099 % 200_000 + 1).min(want.len() - off);
        let mut buf = vec![POISON; len];
        img.read_exact_at(&mut buf, u64::try_from(off).unwrap())
            .unwrap_or_else(|e| panic!("read of {len} bytes at {off}: {e}"));
        assert!(buf == want[off..off + len], "mismatch at {off}+{len}");
        off += len;
        step += 1;
    }
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `qemu-img args...` (see [`run`]) and returns its standard output. Callers check
/// [`have`]`("qemu-img")` first, which carries the CI / skip rule.
pub fn qemu_img(args: &[&str]) -> Vec<u8> {
    run("qemu-img", args)
}

/// `qemu-img create -q -f fmt opts... path size`: a new image (`opts` such as
/// `["-o", "subformat=twoGbMaxExtentSparse"]`, or `-b`/`-F` with an explicit size).
pub fn qemu_img_create(path: &Path, fmt: &str, size: &str, opts: &[&str]) {
    let mut args = vec!["create", "-q", "-f", fmt];
    args.extend_from_slice(opts);
    args.extend([path_str(path), size]);
    qemu_img(&args);
}

/// `qemu-img create -q -f fmt -b backing -F backing_fmt path`: an overlay (snapshot delta)
/// of `backing`, as large as it. `backing` is recorded as given: a bare name is found next
/// to `path`, as hypervisors write it; an absolute path stays absolute.
pub fn qemu_img_overlay(path: &Path, fmt: &str, backing: &str, backing_fmt: &str) {
    qemu_img(&[
        "create",
        "-q",
        "-f",
        fmt,
        "-b",
        backing,
        "-F",
        backing_fmt,
        path_str(path),
    ]);
}

/// `qemu-img convert -q -f from -O to opts... src dst` (`opts` such as `["-c"]` or
/// `["-o", "subformat=streamOptimized"]`).
pub fn qemu_img_convert(src: &Path, from: &str, dst: &Path, to: &str, opts: &[&str]) {
    let mut args = vec!["convert", "-q", "-f", from, "-O", to];
    args.extend_from_slice(opts);
    args.extend([path_str(src), path_str(dst)]);
    qemu_img(&args);
}

/// The guest-visible bytes of `image` (format `fmt`, with its backing chain) as qemu reads
/// them: `qemu-img convert -O raw` into a temporary file, read back. The oracle for every
/// whole-disk read and restore.
pub fn qemu_raw(image: &Path, fmt: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("qemu.raw");
    qemu_img_convert(image, fmt, &out, "raw", &[]);
    std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// `qemu-io -f fmt -c cmd... image`: runs qemu-io commands (`"write -P 0xab 1M 64k"`,
/// `"write -z 0 64k"`, ...) on `image` through qemu's own driver. Callers check
/// [`have`]`("qemu-io")` first.
pub fn qemu_io(image: &Path, fmt: &str, cmds: &[&str]) {
    let mut args = vec!["-f", fmt];
    for c in cmds {
        args.extend(["-c", c]);
    }
    args.push(path_str(image));
    run("qemu-io", &args);
}

/// `qemu-img map --output=json` of the image at `path` alone (its parents' ranges count as
/// unallocated), as an allocation map of `size` bytes: depth-0 data is `Data`, depth-0
/// present zeros `Zero`, everything else `Unallocated`. `format` pins qemu's probe.
pub fn qemu_map(path: &Path, format: Option<&str>, size: u64) -> AllocationMap {
    let mut args = vec!["map", "--output=json"];
    if let Some(f) = format {
        args.extend(["-f", f]);
    }
    args.push(path_str(path));
    let out = qemu_img(&args);
    let runs: serde_json::Value = serde_json::from_slice(&out).expect("qemu-img map JSON");
    let mut map = AllocationMap::new(size);
    for r in runs.as_array().expect("qemu-img map prints an array") {
        let field = |k: &str| {
            r[k].as_u64()
                .unwrap_or_else(|| panic!("map run without {k}"))
        };
        let present = r["present"].as_bool().unwrap_or(true);
        let kind = if field("depth") != 0 || !present {
            RangeKind::Unallocated
        } else if r["data"].as_bool().unwrap_or(false) {
            RangeKind::Data
        } else {
            RangeKind::Zero
        };
        map.push(field("start"), field("length"), kind)
            .expect("qemu-img map runs are contiguous");
    }
    map.finish()
}

/// A fresh temporary folder when every tool in `tools` is installed, else `None` (after
/// [`have`]'s skip / CI rule): the start of every oracle test,
/// `let Some(dir) = tempdir_if_have(&["qemu-img", "qemu-io"]) else { return };`.
pub fn tempdir_if_have(tools: &[&str]) -> Option<tempfile::TempDir> {
    if !tools.iter().all(|t| have(t)) {
        return None;
    }
    Some(tempfile::tempdir().expect("temporary folder"))
}

/// A raw file as a parentless [`DiskLayer`], every byte data: the backing file of a format
/// crate's chain test. (cairn-vdisk's `RawImage` is the product's raw layer; the format
/// crates sit below cairn-vdisk, so their tests cannot use it.)
#[derive(Debug)]
pub struct RawLayer {
    file: FileReader,
}

impl RawLayer {
    /// Opens the raw file at `path` as a layer ready for `attach_parent`.
    pub fn open(path: &Path) -> Arc<dyn DiskLayer> {
        let file = FileReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Arc::new(RawLayer { file })
    }
}

impl ReadAt for RawLayer {
    fn size(&self) -> u64 {
        self.file.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

impl DiskLayer for RawLayer {
    fn format(&self) -> &'static str {
        "raw"
    }
    fn subformat(&self) -> String {
        String::new()
    }
    fn identity(&self) -> DiskIdentity {
        DiskIdentity::default()
    }
    fn parent_link(&self) -> Option<ParentLink> {
        None
    }
    fn attach_parent(
        &mut self,
        _: Arc<dyn DiskLayer>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("a raw test layer has no parent".into())
    }
    fn layer_map(&self) -> Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AllocationMap::uniform(self.size(), RangeKind::Data))
    }
}
