//! # cairn-bundle
//!
//! Reads a VM **bundle** — the configuration of a virtual machine and the disks it names —
//! from a folder or a configuration file, and rewrites a configuration's disk paths for a
//! restore. Every configuration is untrusted input: sizes and counts are checked against
//! named limits before parsing, and errors name the file and the line (or byte offset).
//!
//! | kind | configuration read | disks from | VM identity |
//! |---|---|---|---|
//! | VMware | `.vmx` (+ `.vmxf`, `.nvram`, `.vmsd` stored) | `scsiX:Y` / `sataX:Y` / `nvmeX:Y` / `ideX:Y` `.fileName` with `present = "TRUE"` | `vc.uuid`, else `uuid.bios` |
//! | libvirt | domain XML (`virsh dumpxml`) | `<disk type='file' device='disk'><source file=…>` | `<uuid>` |
//! | Hyper-V 2012 R2 | `Virtual Machines/<GUID>.xml` | controller drives' `pathname` of type `VHD` | the GUID |
//! | Hyper-V 2016+ | `Virtual Machines/<GUID>.vmcx`, stored opaque | a **folder scan** for `.vhd(x)` / `.avhd(x)` (the format is undocumented) | the GUID |
//! | OVF | `.ovf` (+ `.mf`, `.cert` stored) | `DiskSection/Disk` `fileRef` → `References/File` `href` | VirtualBox `Machine uuid` |
//! | OVA | the same, as members of a tar archive read in place ([`tar`]) | `href` → archive member, opened as a slice of the archive ([`Bundle::open_disk`]) | as OVF |
//!
//! ```
//! use cairn_bundle::{Bundle, BundleKind, OpenOptions, PowerState};
//!
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("disk.img"), vec![0u8; 1 << 20]).unwrap();
//! std::fs::write(
//!     dir.path().join("vm.vmx"),
//!     ".encoding = \"UTF-8\"\ndisplayName = \"demo\"\nscsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"disk.img\"\n",
//! ).unwrap();
//! let b = Bundle::open(dir.path(), &OpenOptions::default()).unwrap();
//! assert_eq!(b.kind, BundleKind::Vmware);
//! assert_eq!(b.vm_name, "demo");
//! assert_eq!(b.power_state, PowerState::Cold);
//! assert_eq!(b.disks[0].config_ref, "scsi0:0");
//!
//! let mut map = std::collections::BTreeMap::new();
//! map.insert("scsi0:0".to_string(), "restored.vmdk".to_string());
//! let vmx = std::fs::read(dir.path().join("vm.vmx")).unwrap();
//! let out = cairn_bundle::rewrite_config(BundleKind::Vmware, &vmx, &map).unwrap();
//! assert!(String::from_utf8(out).unwrap().contains("scsi0:0.fileName = \"restored.vmdk\""));
//! ```
#![forbid(unsafe_code)]

mod error;
mod ova;
pub mod tar;
pub mod vmx;
pub mod xml;

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

pub use error::{Error, Result};

/// Largest optional configuration file stored with a bundle (`.nvram`, `.vmgs`, `.vmrs`,
/// `.mf`...): 64 MiB. Larger ones (a `.vmrs` holding saved memory) are left out with a note.
pub const MAX_CONFIG_FILE_BYTES: u64 = 64 << 20;
/// Most entries listed in one folder while detecting or scanning.
pub const MAX_FOLDER_ENTRIES: usize = 10_000;
/// Deepest folder level a Hyper-V `.vmcx` disk scan descends to.
pub const MAX_SCAN_DEPTH: usize = 4;

/// What kind of configuration a bundle has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BundleKind {
    /// VMware Workstation / Fusion / ESXi: `.vmx`.
    Vmware,
    /// libvirt domain XML.
    Libvirt,
    /// Hyper-V 2012 R2 XML configuration.
    HyperV,
    /// Hyper-V 2016+ binary `.vmcx` (opaque; disks by folder scan).
    HyperVVmcx,
    /// OVF descriptor.
    Ovf,
}

impl BundleKind {
    /// Stable lower-case name (`vmware`, `libvirt`, `hyperv`, `hyperv-vmcx`, `ovf`).
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Vmware => "vmware",
            BundleKind::Libvirt => "libvirt",
            BundleKind::HyperV => "hyperv",
            BundleKind::HyperVVmcx => "hyperv-vmcx",
            BundleKind::Ovf => "ovf",
        }
    }

    /// The inverse of [`BundleKind::as_str`].
    pub fn parse(s: &str) -> Option<BundleKind> {
        Some(match s {
            "vmware" => BundleKind::Vmware,
            "libvirt" => BundleKind::Libvirt,
            "hyperv" => BundleKind::HyperV,
            "hyperv-vmcx" => BundleKind::HyperVVmcx,
            "ovf" => BundleKind::Ovf,
            _ => return None,
        })
    }
}

/// Whether the VM was running when its bundle was read, which decides what a backup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Powered off: the disks are read as they are.
    Cold,
    /// Suspended (memory saved to a state file, disks quiescent): read as they are.
    Warm,
    /// Running: each disk is read at its frozen point, the parent of the live delta.
    Active,
}

impl PowerState {
    /// `cold`, `warm` or `active`.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Cold => "cold",
            PowerState::Warm => "warm",
            PowerState::Active => "active",
        }
    }

    /// The inverse of [`PowerState::as_str`].
    pub fn parse(s: &str) -> Option<PowerState> {
        Some(match s {
            "cold" => PowerState::Cold,
            "warm" => PowerState::Warm,
            "active" => PowerState::Active,
            _ => return None,
        })
    }
}

/// A configuration file kept with a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Path relative to the bundle folder, `/`-separated, without `..`.
    pub name: String,
    /// Where it is now (for a bundle read from an OVA: `<archive>/<member>`, not a file).
    pub path: PathBuf,
    /// The archive member holding it, for a bundle read from an OVA.
    pub member: Option<tar::TarMember>,
}

/// A disk of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleDisk {
    /// The configuration's reference: `scsi0:0`, `vda`, `ide/controller0/drive0`, an OVF
    /// disk id, or `scan:<relative path of the chain's base>` for a `.vmcx` folder scan.
    pub config_ref: String,
    /// The path as the configuration writes it.
    pub written: String,
    /// The disk the configuration names (the live top of its chain), resolved.
    pub path: PathBuf,
    /// A disk UUID from the configuration or, failing that, the image header.
    pub uuid: Option<[u8; 16]>,
    /// What a backup reads: [`BundleDisk::path`], or for an active VM its frozen point (the
    /// parent of the live delta).
    pub capture: PathBuf,
    /// Layers between the live disk and the captured one (0, or 1 for an active VM).
    pub capture_depth: u32,
    /// The archive member holding the disk, for a bundle read from an OVA (then `path` and
    /// `capture` are `<archive>/<member>`, not files): open it with [`Bundle::open_disk`].
    pub member: Option<tar::TarMember>,
}

/// How to open a bundle.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Accept disks at absolute paths outside the bundle folder (libvirt pools keep images
    /// in `/var/lib/libvirt/images`). Relative paths that climb out are always refused.
    pub allow_outside: bool,
    /// The power state, when the caller knows it (libvirt and Hyper-V cannot be told
    /// offline); overrides what the folder shows.
    pub state: Option<PowerState>,
    /// Caps for reading disk headers.
    pub limits: cairn_io::Limits,
}

/// A VM bundle: its configuration files, identity, disks and power state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Configuration kind.
    pub kind: BundleKind,
    /// The bundle folder (relative disk paths and config file names are under it).
    pub root: PathBuf,
    /// The main configuration file.
    pub config: PathBuf,
    /// The VM name (the configuration's, else the configuration file's stem).
    pub vm_name: String,
    /// The VM UUID, when the configuration has one.
    pub vm_uuid: Option<[u8; 16]>,
    /// Configuration files to store, the main one first.
    pub config_files: Vec<ConfigFile>,
    /// Disks, in configuration order.
    pub disks: Vec<BundleDisk>,
    /// Cold, warm or active.
    pub power_state: PowerState,
    /// The VMware snapshot database, when there is one.
    pub snapshots: Option<vmx::SnapshotDb>,
    /// Whether the disks were found by scanning the folder rather than from the
    /// configuration (Hyper-V `.vmcx`).
    pub disks_from_folder_scan: bool,
    /// What was left out or assumed, and why.
    pub notes: Vec<String>,
    /// The OVA archive the bundle was read from, in place (`config` is then the archive
    /// too); `None` for a folder.
    pub archive: Option<PathBuf>,
}

fn read_limited(path: &Path, limit: u64, file: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > limit {
        return Err(Error::Limit {
            file: file.into(),
            what: "file size",
            value: meta.len(),
            limit,
        });
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        if out.len() >= MAX_FOLDER_ENTRIES {
            return Err(Error::Limit {
                file: dir.display().to_string(),
                what: "folder entries",
                value: out.len() as u64 + 1,
                limit: MAX_FOLDER_ENTRIES as u64,
            });
        }
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

fn ext_is(p: &Path, ext: &str) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// The root element name of an XML file, if it parses.
fn xml_root(path: &Path) -> Option<String> {
    let bytes = read_limited(path, xml::MAX_XML_BYTES as u64, "").ok()?;
    let (text, _) = xml::decode("", &bytes).ok()?;
    let doc = xml::parse("", &text).ok()?;
    Some(doc.root_element().tag_name().name().to_string())
}

fn file_guid(path: &Path) -> Option<[u8; 16]> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(vmx::parse_vmware_uuid)
}

/// Finds the configuration at `path` (a file or a folder) and its kind.
pub fn detect(path: &Path) -> Result<(BundleKind, PathBuf)> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        if ext_is(path, "ova") {
            // Read in place: the OVF and the disks are members of the archive.
            return Ok((BundleKind::Ovf, path.to_path_buf()));
        }
        return kind_of_file(path)
            .map(|k| (k, path.to_path_buf()))
            .ok_or_else(|| Error::NotABundle {
                path: path.to_path_buf(),
                why: "not a .vmx, .ovf, .vmcx, libvirt or Hyper-V XML file".into(),
            });
    }
    let mut found: Vec<(BundleKind, PathBuf)> = Vec::new();
    for p in list_dir(path)? {
        if p.is_file() {
            if let Some(k) = kind_of_file(&p) {
                found.push((k, p));
            }
        } else if p
            .file_name()
            .is_some_and(|n| n.eq_ignore_ascii_case("Virtual Machines"))
        {
            for q in list_dir(&p)? {
                if q.is_file() && (ext_is(&q, "vmcx") || ext_is(&q, "xml")) {
                    if let Some(k) = kind_of_file(&q) {
                        found.push((k, q));
                    }
                }
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::NotABundle {
            path: path.to_path_buf(),
            why: "no .vmx, .ovf, domain XML or Virtual Machines/<GUID>.xml|.vmcx in the folder"
                .into(),
        }),
        _ => Err(Error::NotABundle {
            path: path.to_path_buf(),
            why: format!(
                "several configurations ({}): name one",
                found
                    .iter()
                    .map(|(_, p)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

fn kind_of_file(p: &Path) -> Option<BundleKind> {
    if ext_is(p, "vmx") {
        Some(BundleKind::Vmware)
    } else if ext_is(p, "ovf") {
        Some(BundleKind::Ovf)
    } else if ext_is(p, "vmcx") {
        Some(BundleKind::HyperVVmcx)
    } else if ext_is(p, "xml") {
        match xml_root(p)?.as_str() {
            "domain" => Some(BundleKind::Libvirt),
            "configuration" => Some(BundleKind::HyperV),
            _ => None,
        }
    } else {
        None
    }
}

/// Whether `path` is (or holds) a VM configuration Cairn reads.
pub fn is_bundle(path: &Path) -> bool {
    detect(path).is_ok()
}

/// Lexically normalises a path: drops `.`, resolves `..` against earlier components.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn is_windows_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/'))
        || s.starts_with("\\\\")
}

/// `root`-relative name of `p` (both canonical), `/`-separated.
fn relative_name(root: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str().map(str::to_string),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

struct Resolver<'a> {
    root: PathBuf,
    config_dir: PathBuf,
    config_name: String,
    opts: &'a OpenOptions,
    notes: Vec<String>,
}

impl Resolver<'_> {
    /// Resolves a disk path written in the configuration.
    fn disk(&mut self, config_ref: &str, written: &str) -> Result<PathBuf> {
        let missing = |path: PathBuf| Error::DiskMissing {
            config: self.config_name.clone(),
            config_ref: config_ref.into(),
            path,
        };
        if is_windows_absolute(written) && !cfg!(windows) {
            // A path of another host: find its trailing components under the bundle folder
            // (`...\Virtual Hard Disks\d.vhdx`, then `d.vhdx`).
            let parts: Vec<&str> = written
                .split(['\\', '/'])
                .filter(|s| !s.is_empty() && *s != "." && *s != "..")
                .collect();
            for k in (1..parts.len()).rev() {
                let cand = parts[parts.len() - k..]
                    .iter()
                    .fold(self.root.clone(), |p, s| p.join(s));
                if cand.is_file() {
                    self.notes.push(format!(
                        "{config_ref}: host path {written} found in the bundle as {}",
                        cand.display()
                    ));
                    return self.check_inside(config_ref, written, &cand, false);
                }
            }
            return Err(missing(PathBuf::from(written)));
        }
        let text = if written.contains('\\') && !written.contains('/') {
            written.replace('\\', "/")
        } else {
            written.to_string()
        };
        let p = Path::new(&text);
        let absolute = p.is_absolute();
        let cand = normalize(&if absolute {
            p.to_path_buf()
        } else {
            self.config_dir.join(p)
        });
        if !cand.is_file() {
            return Err(missing(cand));
        }
        self.check_inside(config_ref, written, &cand, absolute)
    }

    fn check_inside(
        &self,
        config_ref: &str,
        written: &str,
        cand: &Path,
        absolute: bool,
    ) -> Result<PathBuf> {
        let canon = std::fs::canonicalize(cand).map_err(|e| Error::io(cand, e))?;
        if canon.starts_with(&self.root) || (absolute && self.opts.allow_outside) {
            Ok(canon)
        } else {
            Err(Error::Escape {
                config: self.config_name.clone(),
                config_ref: config_ref.into(),
                path: written.into(),
                root: self.root.clone(),
            })
        }
    }

    /// Adds an optional configuration file named relative to the configuration's folder,
    /// when it exists inside the bundle and is not too large.
    fn optional(&mut self, files: &mut Vec<ConfigFile>, written: &str) {
        let p = normalize(&self.config_dir.join(written.replace('\\', "/")));
        let Ok(canon) = std::fs::canonicalize(&p) else {
            return;
        };
        if !canon.is_file() || files.iter().any(|f| f.path == canon) {
            return;
        }
        let Some(name) = relative_name(&self.root, &canon) else {
            self.notes
                .push(format!("{written}: outside the bundle folder, not stored"));
            return;
        };
        match std::fs::metadata(&canon) {
            Ok(m) if m.len() <= MAX_CONFIG_FILE_BYTES => files.push(ConfigFile {
                name,
                path: canon,
                member: None,
            }),
            Ok(m) => self.notes.push(format!(
                "{name}: {} bytes, above {MAX_CONFIG_FILE_BYTES}: not stored",
                m.len()
            )),
            Err(_) => {}
        }
    }
}

/// A disk as a configuration names it: (reference, path as written, UUID it records).
type FoundDisk = (String, String, Option<[u8; 16]>);

fn stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

fn header_uuid(
    path: &Path,
    limits: &cairn_io::Limits,
    config_ref: &str,
) -> Result<Option<[u8; 16]>> {
    let layer = cairn_vdisk::open_layer(path, limits).map_err(|source| Error::Disk {
        config_ref: config_ref.into(),
        source,
    })?;
    Ok(layer.identity().uuid)
}

impl Bundle {
    /// Opens the bundle at `path`: a folder holding one configuration, or a configuration
    /// file.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Bundle> {
        let (kind, config) = detect(path.as_ref())?;
        if kind == BundleKind::Ovf && ext_is(&config, "ova") {
            return ova::open(&config, opts);
        }
        let config = std::fs::canonicalize(&config).map_err(|e| Error::io(&config, e))?;
        let config_dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = match kind {
            BundleKind::HyperV | BundleKind::HyperVVmcx
                if config_dir
                    .file_name()
                    .is_some_and(|n| n.eq_ignore_ascii_case("Virtual Machines")) =>
            {
                config_dir
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            }
            _ => config_dir.clone(),
        };
        let config_name = config
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut r = Resolver {
            root: root.clone(),
            config_dir,
            config_name: config_name.clone(),
            opts,
            notes: Vec::new(),
        };
        let main = ConfigFile {
            name: relative_name(&root, &config).unwrap_or(config_name.clone()),
            path: config.clone(),
            member: None,
        };
        let mut files = vec![main];
        let disks: Vec<FoundDisk>;
        let mut b = Bundle {
            kind,
            root: root.clone(),
            config: config.clone(),
            vm_name: stem(&config),
            vm_uuid: None,
            config_files: Vec::new(),
            disks: Vec::new(),
            power_state: PowerState::Cold,
            snapshots: None,
            disks_from_folder_scan: false,
            notes: Vec::new(),
            archive: None,
        };
        match kind {
            BundleKind::Vmware => {
                let bytes = read_limited(&config, vmx::MAX_KV_BYTES as u64, &config_name)?;
                let kv = vmx::KvFile::parse(&config_name, &bytes)?;
                let c = vmx::VmxConfig::from_kv(&config_name, &kv)?;
                if let Some(n) = c.display_name.filter(|n| !n.is_empty()) {
                    b.vm_name = n;
                }
                b.vm_uuid = c.vc_uuid.or(c.uuid_bios);
                b.notes.extend(c.notes);
                let s = stem(&config);
                let vmxf = c.extended_config.unwrap_or(format!("{s}.vmxf"));
                r.optional(&mut files, &vmxf);
                if let Some(n) = &c.nvram {
                    r.optional(&mut files, n);
                }
                let vmsd = format!("{s}.vmsd");
                let vmsd_path = r.config_dir.join(&vmsd);
                if vmsd_path.is_file() {
                    let bytes = read_limited(&vmsd_path, vmx::MAX_KV_BYTES as u64, &vmsd)?;
                    b.snapshots = Some(vmx::SnapshotDb::parse(&vmsd, &bytes)?);
                    r.optional(&mut files, &vmsd);
                }
                disks = c
                    .disks
                    .into_iter()
                    .map(|d| (d.config_ref, d.file_name, None))
                    .collect();
                b.power_state = vmware_state(&root, &config_name, c.suspend_state.is_some())?;
            }
            BundleKind::Libvirt | BundleKind::HyperV | BundleKind::Ovf => {
                let bytes = read_limited(&config, xml::MAX_XML_BYTES as u64, &config_name)?;
                let (text, _) = xml::decode(&config_name, &bytes)?;
                let c = match kind {
                    BundleKind::Libvirt => xml::libvirt(&config_name, &text)?,
                    BundleKind::HyperV => xml::hyperv(&config_name, &text, file_guid(&config))?,
                    _ => xml::ovf(&config_name, &text)?,
                };
                if let Some(n) = c.vm_name.filter(|n| !n.is_empty()) {
                    b.vm_name = n;
                }
                b.vm_uuid = c.vm_uuid;
                b.notes.extend(c.notes);
                if kind == BundleKind::Ovf {
                    let s = stem(&config);
                    r.optional(&mut files, &format!("{s}.mf"));
                    r.optional(&mut files, &format!("{s}.cert"));
                }
                disks = c
                    .disks
                    .into_iter()
                    .map(|d| (d.config_ref, d.path, d.uuid))
                    .collect();
            }
            BundleKind::HyperVVmcx => {
                b.vm_uuid = file_guid(&config);
                if let Some(n) = root.file_name() {
                    b.vm_name = n.to_string_lossy().into_owned();
                }
                let s = stem(&config);
                r.optional(&mut files, &format!("{s}.vmgs"));
                r.optional(&mut files, &format!("{s}.vmrs"));
                b.disks_from_folder_scan = true;
                b.notes.push(
                    "the .vmcx format is undocumented: it is stored as an opaque file and the disks were found by scanning the bundle folder for .vhd/.vhdx/.avhd/.avhdx files"
                        .into(),
                );
                disks = scan_hyperv_disks(&root, &opts.limits)?;
            }
        }
        b.config_files = files;
        if let Some(s) = opts.state {
            b.power_state = s;
        }
        let mut seen = HashSet::new();
        for (config_ref, written, uuid) in disks {
            let path = if b.disks_from_folder_scan {
                PathBuf::from(&written)
            } else {
                r.disk(&config_ref, &written)?
            };
            if !seen.insert(path.clone()) {
                return Err(Error::invalid(
                    &config_name,
                    format!("disk {config_ref}: {} is attached twice", path.display()),
                ));
            }
            let uuid = match uuid {
                Some(u) => Some(u),
                None => header_uuid(&path, &opts.limits, &config_ref)?,
            };
            let (capture, capture_depth) = if b.power_state == PowerState::Active {
                (frozen_point(&config_ref, &path, &opts.limits)?, 1)
            } else {
                (path.clone(), 0)
            };
            let written = if b.disks_from_folder_scan {
                relative_name(&root, &path).unwrap_or(written)
            } else {
                written
            };
            b.disks.push(BundleDisk {
                config_ref,
                written,
                path,
                uuid,
                capture,
                capture_depth,
                member: None,
            });
        }
        b.notes.append(&mut r.notes);
        Ok(b)
    }
}

impl Bundle {
    /// Opens the disk a backup reads ([`BundleDisk::capture`]) with its parent chain: from
    /// its file, or for a bundle read from an OVA, straight out of the archive member.
    pub fn open_disk(
        &self,
        disk: &BundleDisk,
        opts: &cairn_vdisk::OpenOptions,
    ) -> Result<cairn_vdisk::VirtualDisk> {
        match (&self.archive, &disk.member) {
            (Some(archive), Some(m)) => ova::open_disk(archive, disk, m, opts),
            _ => {
                cairn_vdisk::VirtualDisk::open(&disk.capture, opts).map_err(|source| Error::Disk {
                    config_ref: disk.config_ref.clone(),
                    source,
                })
            }
        }
    }

    /// The bytes of one of [`Bundle::config_files`] (at most [`MAX_CONFIG_FILE_BYTES`]):
    /// from its file, or from its archive member.
    pub fn read_config_file(&self, f: &ConfigFile) -> Result<Vec<u8>> {
        match (&self.archive, &f.member) {
            (Some(archive), Some(m)) => ova::read_config(archive, m),
            _ => read_limited(&f.path, MAX_CONFIG_FILE_BYTES, &f.name),
        }
    }
}

/// VMware: a `.lck` folder (the `.vmx`'s or a disk's) means the VM is running; a `.vmss`
/// (or `checkpoint.vmState`) means it is suspended.
fn vmware_state(root: &Path, config_name: &str, suspended: bool) -> Result<PowerState> {
    let mut vmss = suspended;
    for p in list_dir(root)? {
        let name = p
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().to_ascii_lowercase());
        if name.ends_with(".lck") {
            return Ok(PowerState::Active);
        }
        if name.ends_with(".vmss") {
            vmss = true;
        }
    }
    let _ = config_name;
    Ok(if vmss {
        PowerState::Warm
    } else {
        PowerState::Cold
    })
}

/// The frozen point of a running VM's disk: the parent of the live delta.
fn frozen_point(config_ref: &str, live: &Path, limits: &cairn_io::Limits) -> Result<PathBuf> {
    let layer = cairn_vdisk::open_layer(live, limits).map_err(|source| Error::Disk {
        config_ref: config_ref.into(),
        source,
    })?;
    if layer.parent_link().is_none() {
        return Err(Error::NoFrozenPoint {
            config_ref: config_ref.into(),
            path: live.to_path_buf(),
        });
    }
    let opts = cairn_vdisk::OpenOptions {
        limits: limits.clone(),
        ..Default::default()
    };
    let disk = cairn_vdisk::VirtualDisk::open(live, &opts).map_err(|source| Error::Disk {
        config_ref: config_ref.into(),
        source,
    })?;
    disk.layers()
        .get(1)
        .map(|l| l.path.clone())
        .ok_or_else(|| Error::NoFrozenPoint {
            config_ref: config_ref.into(),
            path: live.to_path_buf(),
        })
}

/// Hyper-V `.vmcx` bundles: every `.vhd`/`.vhdx`/`.avhd`/`.avhdx` under `root` (bounded
/// depth and entries); the tops of chains are the disks, named by their chain's base.
fn scan_hyperv_disks(root: &Path, limits: &cairn_io::Limits) -> Result<Vec<FoundDisk>> {
    let mut images: Vec<PathBuf> = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut listed = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        for p in list_dir(&dir)? {
            listed += 1;
            if listed > MAX_FOLDER_ENTRIES {
                return Err(Error::Limit {
                    file: root.display().to_string(),
                    what: "entries scanned",
                    value: listed as u64,
                    limit: MAX_FOLDER_ENTRIES as u64,
                });
            }
            let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
            if meta.is_dir() {
                if depth + 1 < MAX_SCAN_DEPTH {
                    stack.push((p, depth + 1));
                }
            } else if meta.is_file()
                && ["vhd", "vhdx", "avhd", "avhdx"]
                    .iter()
                    .any(|e| ext_is(&p, e))
            {
                if images.len() >= vmx::MAX_BUNDLE_DISKS {
                    return Err(Error::Limit {
                        file: root.display().to_string(),
                        what: "disk images found",
                        value: images.len() as u64 + 1,
                        limit: vmx::MAX_BUNDLE_DISKS as u64,
                    });
                }
                images.push(std::fs::canonicalize(&p).map_err(|e| Error::io(&p, e))?);
            }
        }
    }
    images.sort();
    let opts = cairn_vdisk::OpenOptions {
        limits: limits.clone(),
        ..Default::default()
    };
    // Layers below some other image are not disks of their own.
    let mut below: HashSet<PathBuf> = HashSet::new();
    let mut chains: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for img in &images {
        let name = img.display().to_string();
        let disk = cairn_vdisk::VirtualDisk::open(img, &opts).map_err(|source| Error::Disk {
            config_ref: format!("scan:{name}"),
            source,
        })?;
        let layers = disk.layers();
        for l in &layers[1..] {
            below.insert(std::fs::canonicalize(&l.path).unwrap_or_else(|_| l.path.clone()));
        }
        let base = layers
            .last()
            .map_or_else(|| img.clone(), |l| l.path.clone());
        chains.insert(img.clone(), std::fs::canonicalize(&base).unwrap_or(base));
    }
    let mut out = Vec::new();
    for img in images {
        if below.contains(&img) {
            continue;
        }
        let base = chains.get(&img).cloned().unwrap_or_else(|| img.clone());
        let rel = relative_name(root, &base).unwrap_or_else(|| base.display().to_string());
        out.push((format!("scan:{rel}"), img.display().to_string(), None));
    }
    Ok(out)
}

/// Rewrites the disk paths of a configuration for a restore: `map` goes from a disk's
/// [`BundleDisk::config_ref`] to the new file name (relative to the configuration, or an
/// absolute path). Everything else in the file is kept byte for byte.
///
/// A `.vmcx` cannot be rewritten (its format is undocumented): that is
/// [`Error::Unsupported`].
pub fn rewrite_config(
    kind: BundleKind,
    original: &[u8],
    map: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    match kind {
        BundleKind::Vmware => vmx::rewrite_vmx("vmx", original, map),
        BundleKind::Libvirt => xml::rewrite_libvirt("domain XML", original, map),
        BundleKind::HyperV => xml::rewrite_hyperv("Hyper-V XML", original, map),
        BundleKind::Ovf => xml::rewrite_ovf("OVF", original, map),
        BundleKind::HyperVVmcx => Err(Error::Unsupported(
            "a Hyper-V .vmcx is an undocumented binary format: it is restored as it was, and the disks must be attached again in Hyper-V".into(),
        )),
    }
}
