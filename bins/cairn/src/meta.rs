//! `--metadata` for extract and restore-file: times, mode and owner on the written files;
//! what a host file cannot hold (xattrs of any namespace, named streams, Windows security
//! descriptors and attributes) goes to sidecars under `DIR/.cairn-metadata/`, as
//! docs/formats/extract-metadata.md specifies.
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use cairn_guestfs::{FileKind, GuestFs, Metadata, NodeId};
use cairn_vfs::Timestamp;
use serde_json::json;

use crate::files::ExtractStats;

/// Folder, under the extraction root, that holds the sidecars.
pub const SIDECAR_DIR: &str = ".cairn-metadata";

fn system_time(t: Timestamp) -> Option<SystemTime> {
    if t.secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(u64::try_from(t.secs).ok()?, t.nanos))
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(Duration::new(t.secs.unsigned_abs(), 0))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn apply(
    fs: &GuestFs,
    node: NodeId,
    meta: &Metadata,
    guest_path: &str,
    dest: &Path,
    root: &Path,
    stats: &mut ExtractStats,
) -> Result<()> {
    let rel = dest.strip_prefix(root).unwrap_or(dest);
    let needs_sidecar = !meta.xattrs.is_empty()
        || !meta.streams.is_empty()
        || meta.security_descriptor.is_some()
        || meta.windows_attributes.is_some();
    if needs_sidecar {
        let side = root.join(SIDECAR_DIR).join(rel);
        let side_json = side.with_file_name(format!(
            "{}.json",
            side.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into())
        ));
        if let Some(parent) = side_json.parent() {
            fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
        }
        let mut streams = Vec::new();
        if !meta.streams.is_empty() {
            let sdir = side.with_file_name(format!(
                "{}.streams",
                side.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "root".into())
            ));
            fs::create_dir_all(&sdir).with_context(|| sdir.display().to_string())?;
            for s in &meta.streams {
                crate::files::check_name(&s.name)
                    .with_context(|| format!("{guest_path}: stream"))?;
                let data = fs.open_stream(node, Some(&s.name))?;
                let out = sdir.join(&s.name);
                let bytes =
                    data.read_vec_at(0, usize::try_from(data.size()).context("stream too large")?)?;
                fs::write(&out, bytes).with_context(|| out.display().to_string())?;
                streams.push(json!({"name": s.name, "size": s.size, "file": format!("{}.streams/{}", rel.display(), s.name)}));
            }
        }
        let xattrs: Vec<_> = meta
            .xattrs
            .iter()
            .map(|x| json!({"name": x.name, "value_hex": hex(&x.value)}))
            .collect();
        let v = json!({
            "version": 1,
            "guest_path": guest_path,
            "kind": meta.kind.as_str(),
            "mode": meta.unix.map(|u| u.mode),
            "uid": meta.unix.map(|u| u.uid),
            "gid": meta.unix.map(|u| u.gid),
            "windows_attributes": meta.windows_attributes,
            "mtime": meta.mtime.map(|t| t.to_rfc3339()),
            "atime": meta.atime.map(|t| t.to_rfc3339()),
            "ctime": meta.ctime.map(|t| t.to_rfc3339()),
            "btime": meta.btime.map(|t| t.to_rfc3339()),
            "xattrs": xattrs,
            "streams": streams,
            "security_descriptor_hex": meta.security_descriptor.as_deref().map(hex),
        });
        fs::write(&side_json, format!("{v:#}\n"))
            .with_context(|| side_json.display().to_string())?;
    }
    if meta.kind == FileKind::Symlink {
        return Ok(());
    }
    #[cfg(unix)]
    if let Some(u) = meta.unix {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dest, fs::Permissions::from_mode(u.mode & 0o7777))
            .with_context(|| dest.display().to_string())?;
        if let Err(e) = std::os::unix::fs::chown(dest, Some(u.uid), Some(u.gid)) {
            if stats.warnings.iter().all(|w| !w.starts_with("owner")) {
                stats.warnings.push(format!(
                    "owner not kept ({e}); it is in the catalog and sidecars"
                ));
            }
        }
    }
    let mut times = fs::FileTimes::new();
    if let Some(t) = meta.mtime.and_then(system_time) {
        times = times.set_modified(t);
    }
    if let Some(t) = meta.atime.and_then(system_time) {
        times = times.set_accessed(t);
    }
    let f = fs::File::options()
        .read(true)
        .open(dest)
        .with_context(|| dest.display().to_string())?;
    f.set_times(times)
        .with_context(|| dest.display().to_string())?;
    Ok(())
}
