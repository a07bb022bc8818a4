//! VM bundles as restore points: the configuration files stored as blobs, a `vm` record in
//! the manifest (kind, name, UUID, power state, frozen chain point, per-disk identity), the
//! disks backed up like any image; and the way back: every disk in a chosen format and
//! every configuration file with its disk paths rewritten (docs/bundles.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_bundle::{Bundle, BundleKind};
use cairn_repo::{
    BlobKind, Repository, RestorePointSummary, SnapshotId, VmConfigFile, VmDiskRecord, VmRecord,
};
use cairn_vdisk::{ConvertOptions, TargetFormat};

use crate::{
    backup, prepare_vm, restore_raw, BackupOptions, BackupReport, Error, RestoreOptions,
    RestoredDisk, Result, SourceOptions,
};

/// Configuration files are stored in blobs of at most this size (1 MiB): small enough for
/// any blob limit, large enough that a `.vmx` or an OVF is one blob.
pub const CONFIG_BLOB_BYTES: usize = 1 << 20;

/// Whether a restore point belongs to the VM being backed up: the same VM UUID when the
/// bundle has one (wherever the VM lives now and whatever it is called), else the same
/// name.
pub(crate) fn same_vm(s: &RestorePointSummary, vm_name: &str, vm: Option<&VmRecord>) -> bool {
    match vm.and_then(|v| v.uuid) {
        Some(u) => s.vm.as_ref().and_then(|r| r.uuid) == Some(u),
        None => s.vm_name == vm_name,
    }
}

/// What [`backup_bundle`] and [`backup_source`] did.
#[derive(Debug, Clone)]
pub struct BundleBackupReport {
    /// The image backup of the disks.
    pub backup: BackupReport,
    /// The VM record stored in the restore point (`None` for a plain image).
    pub vm: Option<VmRecord>,
    /// Disk bytes left unread because the guest does not use them.
    pub bytes_skipped: u64,
    /// Guest volumes found.
    pub volumes: Vec<cairn_repo::VolumeRecord>,
}

/// Stores each configuration file of `bundle` as data blobs.
fn store_config_files(repo: &Repository, bundle: &Bundle) -> Result<Vec<VmConfigFile>> {
    let mut writer = repo.writer()?;
    let enc = writer.encoder();
    let mut out = Vec::new();
    for f in &bundle.config_files {
        // From the file, or from its OVA member; at most MAX_CONFIG_FILE_BYTES.
        let bytes = bundle.read_config_file(f)?;
        let mut blobs = Vec::new();
        for piece in bytes.chunks(CONFIG_BLOB_BYTES) {
            let id = enc.id(piece);
            if !repo.contains_blob(&id) {
                writer.add(&enc.encode(BlobKind::Data, id, piece)?)?;
            }
            blobs.push(id);
        }
        out.push(VmConfigFile {
            name: f.name.clone(),
            size: bytes.len() as u64,
            blobs,
        });
    }
    writer.finish()?;
    Ok(out)
}

/// Backs up a VM bundle as one restore point: its configuration files (as blobs) and every
/// disk it names — for an active VM, each disk's frozen point — with a `vm` record in the
/// manifest. `name` overrides the configuration's VM name.
pub fn backup_bundle(
    repo: &Repository,
    bundle: &Bundle,
    name: Option<&str>,
    source_opts: &SourceOptions,
    opts: &BackupOptions,
) -> Result<BundleBackupReport> {
    if bundle.disks.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: the configuration names no disk",
            bundle.config.display()
        )));
    }
    let vm_name = name.unwrap_or(&bundle.vm_name).to_string();
    let config_files = store_config_files(repo, bundle)?;
    let prepared = if bundle.archive.is_some() {
        // An OVA: the disks are read in place, out of the archive's members.
        let mut disks = Vec::with_capacity(bundle.disks.len());
        for d in &bundle.disks {
            let label = d
                .member
                .as_ref()
                .map_or(d.written.as_str(), |m| m.name.as_str());
            let label = label.rsplit('/').next().unwrap_or(label).to_string();
            disks.push((label, bundle.open_disk(d, &source_opts.open)?));
        }
        crate::prepare_vm_disks(repo, &vm_name, disks, source_opts)?
    } else {
        let captures: Vec<&Path> = bundle.disks.iter().map(|d| d.capture.as_path()).collect();
        prepare_vm(repo, &vm_name, &captures, source_opts)?
    };
    let record = VmRecord {
        kind: bundle.kind.as_str().to_string(),
        name: bundle.vm_name.clone(),
        uuid: bundle.vm_uuid,
        power_state: bundle.power_state.as_str().to_string(),
        config_files,
        disks: bundle
            .disks
            .iter()
            .map(|d| VmDiskRecord {
                config_ref: d.config_ref.clone(),
                uuid: d.uuid,
                written: d.written.clone(),
                path: d.path.display().to_string(),
                captured: d.capture.display().to_string(),
                capture_depth: d.capture_depth,
            })
            .collect(),
        folder_scan: bundle.disks_from_folder_scan,
        notes: bundle
            .notes
            .iter()
            .take(cairn_repo::MAX_VM_NOTES)
            .map(|n| {
                // Notes quote paths: keep them within the manifest's text limit.
                let mut end = n.len().min(cairn_repo::MAX_TEXT);
                while !n.is_char_boundary(end) {
                    end -= 1;
                }
                n[..end].to_string()
            })
            .collect(),
    };
    let mut opts = opts.clone();
    opts.volumes = prepared.volumes.clone();
    opts.vm = Some(record.clone());
    let report = backup(repo, &vm_name, &prepared.sources, &opts)?;
    Ok(BundleBackupReport {
        backup: report,
        vm: Some(record),
        bytes_skipped: prepared.bytes_skipped,
        volumes: prepared.volumes,
    })
}

/// Backs up one source path: a VM bundle (a folder or configuration file Cairn
/// recognises) as [`backup_bundle`] does; a folder without a configuration as its disk
/// images ([`crate::vm_disk_images`]); anything else as one disk image. For policy
/// runners: `vms = ["/vms/*"]` may list bundles, image folders and images alike.
pub fn backup_source(
    repo: &Repository,
    path: &Path,
    name: Option<&str>,
    bundle_opts: &cairn_bundle::OpenOptions,
    source_opts: &SourceOptions,
    opts: &BackupOptions,
) -> Result<BundleBackupReport> {
    if cairn_bundle::is_bundle(path) {
        let b = Bundle::open(path, bundle_opts)?;
        return backup_bundle(repo, &b, name, source_opts, opts);
    }
    let vm_name = name.map_or_else(
        || {
            path.file_stem()
                .map_or_else(|| "vm".into(), |s| s.to_string_lossy().into_owned())
        },
        str::to_string,
    );
    // A folder without a configuration: its disk images (chain tops), as policy runs do.
    let images = crate::vm_disk_images(path)?;
    let images: Vec<&Path> = images.iter().map(PathBuf::as_path).collect();
    let prepared = prepare_vm(repo, &vm_name, &images, source_opts)?;
    let mut opts = opts.clone();
    opts.volumes = prepared.volumes.clone();
    let report = backup(repo, &vm_name, &prepared.sources, &opts)?;
    Ok(BundleBackupReport {
        backup: report,
        vm: None,
        bytes_skipped: prepared.bytes_skipped,
        volumes: prepared.volumes,
    })
}

/// How [`restore_bundle`] writes disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmRestoreOptions {
    /// Format of every restored disk.
    pub format: TargetFormat,
}

/// What [`restore_bundle`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmRestoreReport {
    /// (config reference, restored disk file) per disk.
    pub disks: Vec<(String, PathBuf)>,
    /// Configuration files written.
    pub config_files: Vec<PathBuf>,
    /// What was not restored, and why.
    pub notes: Vec<String>,
}

fn extension(format: TargetFormat) -> &'static str {
    match format {
        TargetFormat::Raw => "img",
        TargetFormat::VmdkMonolithicSparse | TargetFormat::VmdkStreamOptimized => "vmdk",
        TargetFormat::VhdFixed | TargetFormat::VhdDynamic => "vhd",
    }
}

/// The file name part of a path written by any host (`/`, `\`).
fn base_name(written: &str) -> &str {
    written.rsplit(['/', '\\']).next().unwrap_or(written)
}

/// Reads a stored configuration file back.
fn read_config(repo: &Repository, f: &VmConfigFile) -> Result<Vec<u8>> {
    if f.size > cairn_bundle::MAX_CONFIG_FILE_BYTES {
        return Err(Error::Invalid(format!(
            "config file {}: {} bytes, above {}",
            f.name,
            f.size,
            cairn_bundle::MAX_CONFIG_FILE_BYTES
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(f.size).unwrap_or(0));
    for id in &f.blobs {
        out.extend_from_slice(&repo.read_blob(id)?);
        if out.len() as u64 > f.size {
            break;
        }
    }
    if out.len() as u64 != f.size {
        return Err(Error::Invalid(format!(
            "config file {}: blobs hold {} bytes, the record says {}",
            f.name,
            out.len(),
            f.size
        )));
    }
    Ok(out)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let werr = |e| Error::Write {
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(werr)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)
}

/// Loads the VM record of a restore point (an error if it is a plain image backup).
pub fn vm_record(repo: &Repository, id: &SnapshotId) -> Result<VmRecord> {
    let f = repo.load_manifest_file(id)?;
    f.vm.ok_or_else(|| {
        Error::Invalid(format!(
            "restore point {id} is an image backup, not a VM bundle: restore its disks one by one"
        ))
    })
}

/// Writes the VM bundle of restore point `id` into folder `to` (created if needed; files
/// already there are never overwritten): every disk in `opts.format`, flattened, next to
/// the main configuration; every configuration file, the main one with its disk paths
/// rewritten to the restored files. Snapshot databases (`.vmsd`) and OVF digests (`.mf`,
/// `.cert`) are left out, since they describe files that no longer exist; a `.vmcx` is
/// written as stored (it cannot be rewritten).
pub fn restore_bundle(
    repo: &Arc<Repository>,
    id: &SnapshotId,
    to: &Path,
    opts: &VmRestoreOptions,
) -> Result<VmRestoreReport> {
    let vm = vm_record(repo, id)?;
    let kind = BundleKind::parse(&vm.kind)
        .ok_or_else(|| Error::Invalid(format!("unknown bundle kind {:?}", vm.kind)))?;
    let main = vm
        .config_files
        .first()
        .ok_or_else(|| Error::Invalid("the VM record has no configuration file".into()))?;
    for f in &vm.config_files {
        if !cairn_repo::is_safe_relative(&f.name) {
            return Err(Error::Invalid(format!(
                "unsafe config file name {:?}",
                f.name
            )));
        }
    }
    std::fs::create_dir_all(to).map_err(|e| Error::Write {
        path: to.to_path_buf(),
        source: e,
    })?;
    let to = std::fs::canonicalize(to).map_err(|e| Error::Write {
        path: to.to_path_buf(),
        source: e,
    })?;
    // Refuse before writing anything when a configuration file is already there.
    for f in &vm.config_files {
        let p = to.join(&f.name);
        if p.exists() {
            return Err(Error::Write {
                path: p,
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; restore into an empty folder",
                ),
            });
        }
    }
    // Disks go next to the main configuration (for a .vmcx, where the scan found them).
    let main_dir: PathBuf = match main.name.rsplit_once('/') {
        Some((dir, _)) => to.join(dir),
        None => to.clone(),
    };
    let mut report = VmRestoreReport::default();
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    let mut used: Vec<String> = vm.config_files.iter().map(|f| f.name.clone()).collect();
    for (i, d) in vm.disks.iter().enumerate() {
        let stem = {
            let b = base_name(&d.written);
            let s = b.rsplit_once('.').map_or(b, |(s, _)| s);
            let clean: String = s
                .chars()
                .map(|c| if c.is_control() || c == ':' { '_' } else { c })
                .collect();
            if clean.is_empty() || clean == "." || clean == ".." {
                format!("disk{i}")
            } else {
                clean
            }
        };
        let (dir, prefix) = if vm.folder_scan {
            match d.written.replace('\\', "/").rsplit_once('/') {
                Some((dir, _)) if cairn_repo::is_safe_relative(dir) => {
                    (to.join(dir), format!("{dir}/"))
                }
                _ => (to.clone(), String::new()),
            }
        } else {
            (main_dir.clone(), String::new())
        };
        let mut name = format!("{stem}.{}", extension(opts.format));
        let mut n = 1;
        while used
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&format!("{prefix}{name}")))
            || dir.join(&name).exists()
        {
            n += 1;
            name = format!("{stem}-{n}.{}", extension(opts.format));
        }
        used.push(format!("{prefix}{name}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Write {
            path: dir.clone(),
            source: e,
        })?;
        let out = dir.join(&name);
        if opts.format == TargetFormat::Raw {
            restore_raw(repo, id, i, &out, &RestoreOptions::default())?;
        } else {
            let disk = RestoredDisk::open(repo.clone(), id, i)?;
            let map = disk.allocation_map();
            cairn_vdisk::convert(&disk, &map, &out, opts.format, &ConvertOptions::default())?;
        }
        let reference = match kind {
            // libvirt wants absolute paths.
            BundleKind::Libvirt => out.display().to_string(),
            _ => name.clone(),
        };
        map.insert(d.config_ref.clone(), reference);
        report.disks.push((d.config_ref.clone(), out));
    }
    for (k, f) in vm.config_files.iter().enumerate() {
        let lower = f.name.to_ascii_lowercase();
        if lower.ends_with(".vmsd") {
            report.notes.push(format!(
                "{}: snapshot database not restored (the disks are restored flattened)",
                f.name
            ));
            continue;
        }
        if kind == BundleKind::Ovf && (lower.ends_with(".mf") || lower.ends_with(".cert")) {
            report.notes.push(format!(
                "{}: not restored (its digests describe the original disk files)",
                f.name
            ));
            continue;
        }
        let bytes = read_config(repo, f)?;
        let bytes = if k == 0 && kind != BundleKind::HyperVVmcx {
            cairn_bundle::rewrite_config(kind, &bytes, &map)?
        } else {
            bytes
        };
        let path = to.join(&f.name);
        write_new(&path, &bytes)?;
        report.config_files.push(path);
    }
    if kind == BundleKind::HyperVVmcx {
        report.notes.push(
            "the .vmcx is restored as stored: attach the restored disks again in Hyper-V".into(),
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    use cairn_repo::{InitOptions, MemoryBackend};

    fn summary(name: &str, uuid: Option<[u8; 16]>) -> RestorePointSummary {
        RestorePointSummary {
            id: SnapshotId::default(),
            vm_name: name.into(),
            time: 0,
            time_nanos: None,
            tags: vec![],
            disks: vec![],
            stats: Default::default(),
            parent: None,
            vm: uuid.map(|u| VmRecord {
                uuid: Some(u),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn same_vm_goes_by_uuid_then_name() {
        let me = VmRecord {
            uuid: Some([7; 16]),
            ..Default::default()
        };
        assert!(same_vm(&summary("other", Some([7; 16])), "vm", Some(&me)));
        assert!(!same_vm(&summary("vm", Some([8; 16])), "vm", Some(&me)));
        assert!(!same_vm(&summary("vm", None), "vm", Some(&me)));
        assert!(same_vm(&summary("vm", None), "vm", None));
        assert!(!same_vm(&summary("x", None), "vm", None));
    }

    #[test]
    fn raw_bundle_round_trip_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let vm = dir.path().join("vm");
        std::fs::create_dir(&vm).unwrap();
        let disk: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i / 4096).to_le_bytes()[0])
            .collect();
        std::fs::write(vm.join("d.img"), &disk).unwrap();
        let vmx = ".encoding = \"UTF-8\"\ndisplayName = \"m\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"d.img\"\n";
        std::fs::write(vm.join("m.vmx"), vmx).unwrap();
        let repo = Arc::new(
            Repository::init(
                Arc::new(MemoryBackend::new()),
                &InitOptions::default(),
                None,
            )
            .unwrap(),
        );
        let b = Bundle::open(&vm, &cairn_bundle::OpenOptions::default()).unwrap();
        let r = backup_bundle(
            &repo,
            &b,
            None,
            &SourceOptions::default(),
            &BackupOptions::default(),
        )
        .unwrap();
        let rec = vm_record(&repo, &r.backup.restore_point).unwrap();
        assert_eq!(rec.kind, "vmware");
        assert_eq!(rec.config_files[0].size, vmx.len() as u64);
        let out = dir.path().join("out");
        let rep = restore_bundle(
            &repo,
            &r.backup.restore_point,
            &out,
            &VmRestoreOptions {
                format: TargetFormat::Raw,
            },
        )
        .unwrap();
        assert_eq!(rep.disks.len(), 1);
        assert_eq!(std::fs::read(out.join("d.img")).unwrap(), disk);
        assert_eq!(std::fs::read_to_string(out.join("m.vmx")).unwrap(), vmx);
        // A second restore into the same folder is refused before any disk is written.
        let e = restore_bundle(
            &repo,
            &r.backup.restore_point,
            &out,
            &VmRestoreOptions {
                format: TargetFormat::Raw,
            },
        );
        assert!(e.is_err());
        assert!(!out.join("d-2.img").exists());
        // backup_source takes the same folder, and a plain image.
        let again = backup_source(
            &repo,
            &vm,
            None,
            &cairn_bundle::OpenOptions::default(),
            &SourceOptions::default(),
            &BackupOptions::default(),
        )
        .unwrap();
        assert!(again.vm.is_some());
        let plain = backup_source(
            &repo,
            &vm.join("d.img"),
            None,
            &cairn_bundle::OpenOptions::default(),
            &SourceOptions::default(),
            &BackupOptions::default(),
        )
        .unwrap();
        assert!(plain.vm.is_none());
        assert!(vm_record(&repo, &plain.backup.restore_point).is_err());
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("C:\\VMs\\a b.vhdx"), "a b.vhdx");
        assert_eq!(base_name("/x/y.qcow2"), "y.qcow2");
        assert_eq!(base_name("z.vmdk"), "z.vmdk");
    }
}
