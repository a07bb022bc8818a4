//! Guest file commands on an image: ls, extract, df.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use cairn_guestfs::{DirEntry, FileKind, GuestFs, Metadata, NodeId};
use cairn_io::{Limits, ReadAt};
use clap::Args;
use serde_json::json;

use crate::disk::{open, OpenArgs};

#[derive(Debug, Args)]
pub struct LsArgs {
    /// The image, or with --repo a restore point `RP[:DISK[:PARTITION]]`.
    pub image: PathBuf,
    /// List a restore point of this repository (from its catalog) instead of an image.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Passphrase file of the repository.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Key ring kept outside the repository.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Path inside the volume (default `/`).
    pub path: Option<String>,
    /// Partition number, counted from 1 as `cairn inspect` prints it.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// List whole trees.
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub open: OpenArgs,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The image.
    pub image: PathBuf,
    /// Paths inside the volume (files or directories).
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Partition number, counted from 1.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Folder to write into (created if missing).
    #[arg(long)]
    pub to: PathBuf,
    /// Keep times, mode and owner (where allowed), and write xattrs, named streams and
    /// security descriptors as sidecars under DIR/.cairn-metadata/ (docs/formats/extract-metadata.md).
    #[arg(long)]
    pub metadata: bool,
    #[command(flatten)]
    pub open: OpenArgs,
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// The image.
    pub image: PathBuf,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub open: OpenArgs,
}

/// Opens the guest file system of one volume of an image.
pub fn open_guest(
    image: &PathBuf,
    open_args: &OpenArgs,
    partition: Option<u32>,
) -> Result<GuestFs> {
    let disk: Arc<dyn ReadAt> = Arc::new(open(image, open_args)?);
    guest_of(disk, partition).with_context(|| image.display().to_string())
}

/// Opens the guest file system of one volume of any disk.
pub fn guest_of(disk: Arc<dyn ReadAt>, partition: Option<u32>) -> Result<GuestFs> {
    let vol = cairn_guestfs::select_volume(disk, partition)?;
    let what = if vol.index == 0 {
        "whole disk".to_string()
    } else {
        format!("partition {}", vol.index)
    };
    vol.open_fs(&Limits::default())
        .with_context(|| format!("{what} ({})", vol.fs_kind.as_str()))
}

/// One line of `ls --json`, serialized straight from borrowed data (no intermediate map:
/// listing 100k entries stays cheaper than The Sleuth Kit's `fls`).
#[derive(serde::Serialize)]
struct EntryLine<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    mtime: Option<String>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    attributes: Option<u32>,
    nlink: u32,
    target: Option<&'a str>,
    streams: Vec<StreamLine<'a>>,
}

#[derive(serde::Serialize)]
struct StreamLine<'a> {
    name: &'a str,
    size: u64,
}

fn entry_line<'a>(path: &'a str, m: &'a Metadata) -> EntryLine<'a> {
    EntryLine {
        path,
        kind: m.kind.as_str(),
        size: m.size,
        mtime: m.mtime.map(|t| t.to_rfc3339()),
        mode: m.unix.map(|u| u.mode),
        uid: m.unix.map(|u| u.uid),
        gid: m.unix.map(|u| u.gid),
        attributes: m.windows_attributes,
        nlink: m.nlink,
        target: m.symlink_target.as_deref(),
        streams: m
            .streams
            .iter()
            .map(|s| StreamLine {
                name: &s.name,
                size: s.size,
            })
            .collect(),
    }
}

fn print_entry(path: &str, m: &Metadata, as_json: bool, out: &mut impl Write) -> Result<()> {
    if as_json {
        serde_json::to_writer(&mut *out, &entry_line(path, m))?;
        out.write_all(b"\n")?;
    } else {
        let kind = match m.kind {
            FileKind::Dir => 'd',
            FileKind::Symlink => 'l',
            FileKind::File => '-',
            FileKind::Other => '?',
        };
        let mtime = m
            .mtime
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "-".into());
        let target = m
            .symlink_target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        writeln!(out, "{kind} {:>12} {mtime:<20} {path}{target}", m.size)?;
    }
    Ok(())
}

/// Lists one directory (or one file) of a guest file system, or a whole tree.
pub fn list(fs: &GuestFs, path: &str, recursive: bool, as_json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let node = fs.lookup(path)?;
    let meta = fs.metadata(node)?;
    let base = normalize(path);
    if meta.kind != FileKind::Dir {
        print_entry(&base, &meta, as_json, &mut out)?;
        return Ok(());
    }
    let root_path = if base == "/" { String::new() } else { base };
    if recursive {
        fs.walk(
            node,
            &root_path,
            Limits::default().max_dir_depth,
            &mut |p, e| {
                let m = fs.metadata(e.id)?;
                print_entry(p, &m, as_json, &mut out).map_err(|err| cairn_guestfs::Error::Walk {
                    path: p.to_string(),
                    what: err.to_string(),
                })
            },
        )?;
    } else {
        let mut entries = fs.read_dir(node)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let m = fs.metadata(e.id)?;
            print_entry(&format!("{root_path}/{}", e.name), &m, as_json, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn normalize(path: &str) -> String {
    let parts: Vec<_> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

pub fn ls(a: &LsArgs) -> Result<()> {
    if let Some(repo) = &a.repo {
        let args = crate::repo_cmd::RepoArgs {
            repo: repo.clone(),
            password_file: a.password_file.clone(),
            key_file: a.key_file.clone(),
        };
        let spec = a.image.to_string_lossy();
        return crate::catalog_cmd::ls(
            &args,
            &spec,
            a.path.as_deref().unwrap_or("/"),
            a.recursive,
            a.json,
        );
    }
    let fs = open_guest(&a.image, &a.open, a.partition)?;
    list(&fs, a.path.as_deref().unwrap_or("/"), a.recursive, a.json)
}

pub fn df(a: &DfArgs) -> Result<()> {
    let disk: Arc<dyn ReadAt> = Arc::new(open(&a.image, &a.open)?);
    let vols = cairn_guestfs::volumes(disk)?;
    let mut rows = Vec::new();
    for v in &vols {
        let info = if cairn_guestfs::is_readable(v.fs_kind) {
            match v.open_fs(&Limits::default()) {
                Ok(fs) => Ok(fs.info()),
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err(format!("{} is not read", v.fs_kind.as_str()))
        };
        rows.push((v, info));
    }
    if a.json {
        let arr: Vec<_> = rows
            .iter()
            .map(|(v, info)| match info {
                Ok(i) => json!({"partition": v.index, "start": v.start, "size": v.size, "filesystem": i.fs_type,
                    "label": i.label, "fs_size": i.total_bytes, "used": i.used_bytes, "free": i.free_bytes,
                    "warnings": i.warnings}),
                Err(e) => json!({"partition": v.index, "start": v.start, "size": v.size,
                    "filesystem": v.fs_kind.as_str(), "error": e}),
            })
            .collect();
        outln!("{}", serde_json::Value::Array(arr));
        return Ok(());
    }
    outln!(
        "{:>4} {:<8} {:>14} {:>14} {:>14}  label",
        "part",
        "fs",
        "size",
        "used",
        "free"
    );
    for (v, info) in rows {
        match info {
            Ok(i) => outln!(
                "{:>4} {:<8} {:>14} {:>14} {:>14}  {}",
                v.index,
                i.fs_type,
                i.total_bytes,
                i.used_bytes,
                i.free_bytes,
                i.label.unwrap_or_default()
            ),
            Err(e) => outln!(
                "{:>4} {:<8} {:>14} {:>14} {:>14}  ({e})",
                v.index,
                v.fs_kind.as_str(),
                v.size,
                "-",
                "-"
            ),
        }
    }
    Ok(())
}

/// Refuses a guest name that could escape the target folder or means something else on
/// some host: empty, `.`, `..`, containing `/` or NUL, a drive prefix (`C:`), or a
/// backslash that is not one of our own escapes (`\\`, `\xNN`, `\u{...}`).
pub fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| -> Result<()> { bail!("refusing guest name {name:?}: {why}") };
    if name.is_empty() || name == "." || name == ".." {
        return bad("it names the folder itself or its parent");
    }
    if name.contains('/') || name.contains('\0') {
        return bad("it contains a path separator or NUL");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return bad("it starts with a drive letter");
    }
    let mut rest = name.as_bytes();
    while let Some(i) = rest.iter().position(|&c| c == b'\\') {
        let after = &rest[i + 1..];
        let hex2 = after
            .get(1..3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        let ok = after.first() == Some(&b'\\')
            || (after.first() == Some(&b'x') && hex2)
            || (after.starts_with(b"u{") && after.contains(&b'}'));
        if !ok {
            return bad("it contains a backslash (a path separator on Windows)");
        }
        rest = after.strip_prefix(b"\\").unwrap_or(after);
    }
    Ok(())
}

/// Extracts `paths` of a guest file system into `to`.
pub fn extract_from(
    fs: &GuestFs,
    paths: &[String],
    to: &Path,
    metadata: bool,
) -> Result<ExtractStats> {
    fs::create_dir_all(to).with_context(|| to.display().to_string())?;
    let mut stats = ExtractStats::default();
    for p in paths {
        let node = fs.lookup(p)?;
        let norm = normalize(p);
        let name = norm.rsplit('/').next().unwrap_or("").to_string();
        let dest = if name.is_empty() {
            to.to_path_buf()
        } else {
            check_name(&name)?;
            to.join(&name)
        };
        extract_node(fs, node, &norm, &dest, to, metadata, &mut stats, 0)?;
    }
    Ok(stats)
}

/// What an extraction wrote.
#[derive(Debug, Default)]
pub struct ExtractStats {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub warnings: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn extract_node(
    fs: &GuestFs,
    node: NodeId,
    guest_path: &str,
    dest: &Path,
    root: &Path,
    metadata: bool,
    stats: &mut ExtractStats,
    depth: u32,
) -> Result<()> {
    if depth > Limits::default().max_dir_depth {
        bail!(
            "{guest_path}: deeper than {} directories",
            Limits::default().max_dir_depth
        );
    }
    let meta = fs.metadata(node)?;
    match meta.kind {
        FileKind::Dir => {
            fs::create_dir_all(dest).with_context(|| dest.display().to_string())?;
            stats.dirs += 1;
            let entries: Vec<DirEntry> = fs.read_dir(node)?;
            for e in entries {
                check_name(&e.name).with_context(|| guest_path.to_string())?;
                let child_guest = format!("{}/{}", guest_path.trim_end_matches('/'), e.name);
                extract_node(
                    fs,
                    e.id,
                    &child_guest,
                    &dest.join(&e.name),
                    root,
                    metadata,
                    stats,
                    depth + 1,
                )?;
            }
        }
        FileKind::File => {
            let data = fs.open_stream(node, None)?;
            copy_to_file(&*data, dest)?;
            stats.files += 1;
            stats.bytes += meta.size;
        }
        FileKind::Symlink => {
            let target = meta.symlink_target.clone().unwrap_or_default();
            #[cfg(unix)]
            {
                let _ = fs::remove_file(dest);
                std::os::unix::fs::symlink(&target, dest)
                    .with_context(|| dest.display().to_string())?;
            }
            #[cfg(not(unix))]
            stats.warnings.push(format!(
                "{guest_path}: symlink to {target} not created on this platform"
            ));
        }
        FileKind::Other => stats
            .warnings
            .push(format!("{guest_path}: special file skipped")),
    }
    if metadata {
        crate::meta::apply(fs, node, &meta, guest_path, dest, root, stats)?;
    }
    Ok(())
}

fn copy_to_file(src: &dyn ReadAt, dest: &Path) -> Result<()> {
    let mut f = fs::File::create(dest).with_context(|| dest.display().to_string())?;
    let size = src.size();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    let mut pending_hole = false;
    while off < size {
        let n = usize::try_from((size - off).min(buf.len() as u64)).unwrap_or(buf.len());
        src.read_exact_at(&mut buf[..n], off)?;
        if buf[..n].iter().all(|&b| b == 0) {
            // Keep holes sparse: seek over zeros.
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Current(i64::try_from(n).unwrap_or(0)))?;
            pending_hole = true;
        } else {
            f.write_all(&buf[..n])?;
            pending_hole = false;
        }
        off += n as u64;
    }
    if pending_hole {
        f.set_len(size)?;
    }
    Ok(())
}

pub fn extract(a: &ExtractArgs) -> Result<()> {
    let fs = open_guest(&a.image, &a.open, a.partition)?;
    let stats = extract_from(&fs, &a.paths, &a.to, a.metadata)?;
    for w in &stats.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "extracted {} files, {} directories, {} bytes",
        stats.files, stats.dirs, stats.bytes
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\0b",
            "C:evil",
            "c:",
            "dir\\..\\x",
            "\\xé",
            "a\\",
            "\\u",
        ] {
            let bad = bad.replace("\\0", "\0");
            assert!(check_name(&bad).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "a",
            "file.txt",
            "bad\\xffname",
            "back\\\\slash",
            "lone\\u{d800}",
            "日本語",
            "ab:c",
        ] {
            assert!(check_name(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
