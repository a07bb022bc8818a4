//! OVA: an OVF bundle inside one tar archive, read in place. The `.ovf` descriptor (the
//! OVF spec puts it first), its optional `.mf` manifest and `.cert` are archive members,
//! and each disk `href` names a member whose data the disk reader reads straight out of
//! the archive (a [`cairn_io::Slice`]), never unpacked to disk.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_io::{FileReader, ReadAt};

use crate::tar::{MemberKind, TarArchive, TarMember};
use crate::{
    stem, xml, Bundle, BundleDisk, BundleKind, ConfigFile, Error, OpenOptions, PowerState, Result,
    MAX_CONFIG_FILE_BYTES,
};

/// The first bytes of a gzip stream (RFC 1952): an OVF `File` with `ovf:compression="gzip"`.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens the archive at `path` (already canonical) and walks its headers.
pub(crate) fn open_archive(path: &Path) -> Result<TarArchive> {
    let f = FileReader::open(path).map_err(|e| Error::io(path, e))?;
    let reader: Arc<dyn ReadAt> = Arc::new(f);
    TarArchive::open(reader, &path.display().to_string())
}

/// The member an OVF `href` names, relative to the descriptor's folder in the archive. A
/// URL, an absolute path or one that climbs out of the archive is [`Error::Escape`].
fn resolve_href<'a>(
    tar: &'a TarArchive,
    archive: &Path,
    ovf_dir: &str,
    config_name: &str,
    config_ref: &str,
    href: &str,
) -> Result<&'a TarMember> {
    let escape = || Error::Escape {
        config: config_name.into(),
        config_ref: config_ref.into(),
        path: href.into(),
        root: archive.to_path_buf(),
    };
    if href.contains("://") || href.starts_with('/') || href.contains('\\') {
        return Err(escape());
    }
    // Resolve `..` lexically against the descriptor's folder; climbing above the archive's
    // top is an escape.
    let mut parts: Vec<&str> = ovf_dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in href.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(escape());
                }
            }
            other => parts.push(other),
        }
    }
    let name = parts.join("/");
    let m = tar.find(&name).ok_or_else(|| Error::DiskMissing {
        config: config_name.into(),
        config_ref: config_ref.into(),
        path: archive.join(&name),
    })?;
    if m.kind != MemberKind::File {
        return Err(Error::invalid(
            config_name,
            format!(
                "disk {config_ref}: archive member {name} is not a regular file ({:?})",
                m.kind
            ),
        ));
    }
    Ok(m)
}

/// Reads the OVA at `path` as an OVF bundle.
pub(crate) fn open(path: &Path, opts: &OpenOptions) -> Result<Bundle> {
    let archive = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let root = archive.parent().map(Path::to_path_buf).unwrap_or_default();
    let tar = open_archive(&archive)?;
    let ovfs: Vec<&TarMember> = tar
        .members()
        .iter()
        .filter(|m| {
            m.kind == MemberKind::File
                && Path::new(&m.name)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("ovf"))
        })
        .collect();
    let ovf = match ovfs.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(Error::NotABundle {
                path: archive.clone(),
                why: "the archive holds no .ovf descriptor".into(),
            })
        }
        many => {
            return Err(Error::NotABundle {
                path: archive.clone(),
                why: format!(
                    "the archive holds several .ovf descriptors ({})",
                    many.iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    };
    let mut notes = vec![format!(
        "read in place from the OVA archive {} ({} members)",
        archive.display(),
        tar.members().len()
    )];
    if tar.members().first().map(|m| &m.name) != Some(&ovf.name) {
        notes.push(format!(
            "{}: not the archive's first member, as the OVF spec requires",
            ovf.name
        ));
    }
    let config_name = ovf.name.clone();
    let bytes = tar.read_member(&ovf, xml::MAX_XML_BYTES as u64)?;
    let (text, _) = xml::decode(&config_name, &bytes)?;
    let c = xml::ovf(&config_name, &text)?;
    let ovf_dir = ovf.name.rsplit_once('/').map_or("", |(d, _)| d).to_string();
    let mut files = vec![ConfigFile {
        name: ovf.name.clone(),
        path: archive.join(&ovf.name),
        member: Some(ovf.clone()),
    }];
    let s = stem(Path::new(&ovf.name));
    for ext in ["mf", "cert"] {
        let name = if ovf_dir.is_empty() {
            format!("{s}.{ext}")
        } else {
            format!("{ovf_dir}/{s}.{ext}")
        };
        if let Some(m) = tar.find(&name).filter(|m| m.kind == MemberKind::File) {
            if m.size <= MAX_CONFIG_FILE_BYTES {
                files.push(ConfigFile {
                    name: m.name.clone(),
                    path: archive.join(&m.name),
                    member: Some(m.clone()),
                });
            } else {
                notes.push(format!(
                    "{name}: {} bytes, above {MAX_CONFIG_FILE_BYTES}: not stored",
                    m.size
                ));
            }
        }
    }
    let power_state = opts.state.unwrap_or(PowerState::Cold);
    let mut b = Bundle {
        kind: BundleKind::Ovf,
        root,
        config: archive.clone(),
        vm_name: c
            .vm_name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| stem(&archive)),
        vm_uuid: c.vm_uuid,
        config_files: files,
        disks: Vec::new(),
        power_state,
        snapshots: None,
        disks_from_folder_scan: false,
        notes,
        archive: Some(archive.clone()),
    };
    b.notes.extend(c.notes);
    let vopts = cairn_vdisk::OpenOptions {
        limits: opts.limits.clone(),
        ..Default::default()
    };
    let mut seen = HashSet::new();
    for d in c.disks {
        let m = resolve_href(
            &tar,
            &archive,
            &ovf_dir,
            &config_name,
            &d.config_ref,
            &d.path,
        )?;
        let path: PathBuf = archive.join(&m.name);
        if power_state == PowerState::Active {
            // A disk inside an archive is never a running VM's live delta.
            return Err(Error::NoFrozenPoint {
                config_ref: d.config_ref,
                path,
            });
        }
        if !seen.insert(m.name.clone()) {
            return Err(Error::invalid(
                &config_name,
                format!("disk {}: {} is attached twice", d.config_ref, m.name),
            ));
        }
        let uuid = match d.uuid {
            Some(u) => Some(u),
            None => {
                open_member_disk(&tar, m, &path, &d.config_ref, &vopts)?
                    .identity()
                    .uuid
            }
        };
        b.disks.push(BundleDisk {
            config_ref: d.config_ref,
            written: d.path,
            path: path.clone(),
            uuid,
            capture: path,
            capture_depth: 0,
            member: Some(m.clone()),
        });
    }
    Ok(b)
}

fn open_member_disk(
    tar: &TarArchive,
    m: &TarMember,
    path: &Path,
    config_ref: &str,
    opts: &cairn_vdisk::OpenOptions,
) -> Result<cairn_vdisk::VirtualDisk> {
    let reader = tar.member_reader(m)?;
    let mut magic = [0u8; 2];
    if reader.read_exact_at(&mut magic, 0).is_ok() && magic == GZIP_MAGIC {
        return Err(Error::Unsupported(format!(
            "disk {config_ref}: archive member {} is gzip-compressed (ovf:compression=\"gzip\"): unpack the OVA and gunzip it, then back up the folder",
            m.name
        )));
    }
    cairn_vdisk::VirtualDisk::open_reader(path, reader, opts).map_err(|source| Error::Disk {
        config_ref: config_ref.into(),
        source,
    })
}

/// Re-walks `archive` and checks that `m` is still the member it was when the bundle was
/// opened (the file may have been replaced since).
fn reopen(archive: &Path, m: &TarMember) -> Result<TarArchive> {
    let tar = open_archive(archive)?;
    if tar.find(&m.name) != Some(m) {
        return Err(Error::Archive {
            file: archive.display().to_string(),
            member: Some(m.name.clone()),
            offset: m.header_offset,
            what: "the archive changed since the bundle was opened".into(),
        });
    }
    Ok(tar)
}

/// [`Bundle::open_disk`] for a disk inside an archive.
pub(crate) fn open_disk(
    archive: &Path,
    disk: &BundleDisk,
    m: &TarMember,
    opts: &cairn_vdisk::OpenOptions,
) -> Result<cairn_vdisk::VirtualDisk> {
    let tar = reopen(archive, m)?;
    open_member_disk(&tar, m, &disk.capture, &disk.config_ref, opts)
}

/// [`Bundle::read_config_file`] for a file inside an archive.
pub(crate) fn read_config(archive: &Path, m: &TarMember) -> Result<Vec<u8>> {
    reopen(archive, m)?.read_member(m, MAX_CONFIG_FILE_BYTES)
}
