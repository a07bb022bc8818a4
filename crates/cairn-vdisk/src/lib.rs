//! # cairn-vdisk
//!
//! Opens a virtual disk image of any supported format, by its magic bytes and never by its
//! file name: VMDK (descriptor, sparse, streamOptimized, flat, vmfsSparse, seSparse), VHD,
//! VHDX, qcow2, and raw. A delta / differencing / backed image has its parent chain
//! resolved (relative to the child's folder first, then the search path), checked (the
//! parent must be the one the child names: VMDK CID, VHD unique id, VHDX data write GUID),
//! bounded in depth and free of cycles.
//!
//! The result, [`VirtualDisk`], is a [`ReadAt`] of the guest-visible disk plus its format,
//! identity, per-layer allocation maps, the combined map, and the **ranges the top layer
//! changed relative to its parent**: the offline change-tracking source of incremental
//! backups. [`convert`] writes any readable disk to raw, VMDK (monolithicSparse,
//! streamOptimized) or VHD (fixed, dynamic), never writing the ranges the map says are
//! zero or unallocated.
//!
//! ```no_run
//! use cairn_io::ReadAt;
//! use cairn_vdisk::{OpenOptions, VirtualDisk};
//!
//! let disk = VirtualDisk::open("vm/disk-000001.vmdk", &OpenOptions::default())?;
//! println!("{} {} bytes, {} layers", disk.format(), disk.size(), disk.layers().len());
//! if let Some(changed) = disk.changed_ranges()? {
//!     println!("the delta changed {} bytes", changed.bytes_of(cairn_io::RangeKind::Data));
//! }
//! # Ok::<(), cairn_vdisk::Error>(())
//! ```
#![forbid(unsafe_code)]

mod convert;
mod error;
mod probe;
mod raw;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cairn_io::{AllocationMap, DiskIdentity, DiskLayer, Limits, RangeKind, ReadAt};
pub use convert::{convert, readable_map, ConvertOptions, ConvertReport, TargetFormat};
pub use error::{Error, FormatError, Result};
pub use probe::{probe_format, probe_reader, ImageFormat};
pub use raw::RawImage;

/// How to open a disk.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Caps on everything read from the images.
    pub limits: Limits,
    /// Folders searched for parents after the child's own folder.
    pub search_paths: Vec<PathBuf>,
    /// Open the top layer alone, without its parents (unallocated ranges read as zeros).
    pub no_parents: bool,
}

/// One layer of a chain, top (the file opened) first.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// The file.
    pub path: PathBuf,
    /// Format name (`vmdk`, `vhd`, `vhdx`, `qcow2`, `raw`).
    pub format: &'static str,
    /// Subformat as the format names it.
    pub subformat: String,
    /// Identity recorded in the layer.
    pub identity: DiskIdentity,
    /// The layer's own virtual size.
    pub virtual_size: u64,
    layer: Arc<dyn DiskLayer>,
}

impl LayerInfo {
    /// This layer's own allocation map (no parents).
    pub fn layer_map(&self) -> Result<AllocationMap> {
        self.layer.layer_map().map_err(|source| Error::Format {
            path: self.path.clone(),
            format: self.format,
            source,
        })
    }

    /// The opened layer (with its parent attached).
    pub fn layer(&self) -> &Arc<dyn DiskLayer> {
        &self.layer
    }
}

/// A virtual disk: a chain of one or more layers, read as the guest sees it.
#[derive(Debug, Clone)]
pub struct VirtualDisk {
    layers: Vec<LayerInfo>,
}

/// Opens one file as the layer its magic says, without parents.
pub fn open_layer(path: &Path, limits: &Limits) -> Result<Box<dyn DiskLayer>> {
    let fmt = probe_format(path)?;
    let wrap = |format: &'static str| {
        let path = path.to_path_buf();
        move |e: Box<dyn std::error::Error + Send + Sync>| Error::Format {
            path,
            format,
            source: e,
        }
    };
    Ok(match fmt {
        ImageFormat::Vmdk => {
            Box::new(cairn_vmdk::VmdkImage::open(path, limits).map_err(|e| wrap("vmdk")(e.into()))?)
        }
        ImageFormat::Vhd => match cairn_vhd::VhdImage::open(path, limits) {
            Ok(img) => Box::new(img),
            // A footer only at the end that does not describe the file may be a stale one on
            // a raw image (qemu also reads such files as raw): `inspect` then says `raw`.
            Err(_) if !probe::has_leading_vhd_copy(path) => {
                Box::new(RawImage::open(path).map_err(|io| Error::io(path, io))?)
            }
            Err(e) => return Err(wrap("vhd")(e.into())),
        },
        ImageFormat::Vhdx => {
            Box::new(cairn_vhdx::VhdxImage::open(path, limits).map_err(|e| wrap("vhdx")(e.into()))?)
        }
        ImageFormat::Qcow2 => Box::new(
            cairn_qcow2::Qcow2Image::open(path, limits).map_err(|e| wrap("qcow2")(e.into()))?,
        ),
        ImageFormat::Raw => Box::new(RawImage::open(path).map_err(|e| Error::io(path, e))?),
    })
}

impl VirtualDisk {
    /// Opens `path` and its parent chain.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<VirtualDisk> {
        let path = path.as_ref();
        let mut opened: Vec<(PathBuf, Box<dyn DiskLayer>)> = Vec::new();
        let mut seen = HashSet::new();
        let mut cur = path.to_path_buf();
        loop {
            let canonical = std::fs::canonicalize(&cur).map_err(|e| Error::io(&cur, e))?;
            if !seen.insert(canonical) {
                return Err(Error::ChainCycle { path: cur });
            }
            if opened.len() >= usize::try_from(opts.limits.max_chain_depth).unwrap_or(usize::MAX) {
                return Err(Error::ChainTooDeep {
                    path: cur,
                    limit: opts.limits.max_chain_depth,
                });
            }
            let layer = open_layer(&cur, &opts.limits)?;
            let link = if opts.no_parents {
                None
            } else {
                layer.parent_link()
            };
            opened.push((cur.clone(), layer));
            let Some(link) = link else { break };
            let parent_path = resolve_parent(&cur, &link.hints, &opts.search_paths)?;
            cur = parent_path;
        }
        // Check each child's expectation against its parent's identity, then attach bottom-up.
        for w in opened.windows(2) {
            let (child_path, child) = &w[0];
            let (parent_path, parent) = &w[1];
            if let Some(link) = child.parent_link() {
                check_parent(child_path, parent_path, &link.expect, &parent.identity())?;
            }
        }
        let mut below: Option<Arc<dyn DiskLayer>> = None;
        let mut layers = Vec::with_capacity(opened.len());
        for (p, mut layer) in opened.into_iter().rev() {
            if let Some(parent) = below.take() {
                let format = layer.format();
                layer
                    .attach_parent(parent)
                    .map_err(|source| Error::Format {
                        path: p.clone(),
                        format,
                        source,
                    })?;
            }
            let layer: Arc<dyn DiskLayer> = Arc::from(layer);
            layers.push(LayerInfo {
                path: p,
                format: layer.format(),
                subformat: layer.subformat(),
                identity: layer.identity(),
                virtual_size: layer.size(),
                layer: layer.clone(),
            });
            below = Some(layer);
        }
        layers.reverse();
        Ok(VirtualDisk { layers })
    }

    /// Opens a disk that is not a file of its own — a disk inside an archive (an OVA) —
    /// from `reader`; `name` labels it in errors and in [`LayerInfo::path`]. The format is
    /// probed from the magic bytes: single-file VMDK (hosted sparse, streamOptimized),
    /// VHD, VHDX, qcow2. A raw disk or a VMDK text descriptor (whose extents are other
    /// files) is [`Error::Unsupported`], and so is a layer with a parent (there is no
    /// folder to find it in) unless `opts.no_parents`.
    pub fn open_reader(
        name: impl Into<PathBuf>,
        reader: Arc<dyn ReadAt>,
        opts: &OpenOptions,
    ) -> Result<VirtualDisk> {
        let path: PathBuf = name.into();
        let fmt = probe_reader(reader.as_ref()).map_err(|e| Error::io(&path, e.into()))?;
        let wrap = |format: &'static str| {
            let path = path.clone();
            move |e: Box<dyn std::error::Error + Send + Sync>| Error::Format {
                path,
                format,
                source: e,
            }
        };
        let limits = &opts.limits;
        let layer: Box<dyn DiskLayer> = match fmt {
            ImageFormat::Vmdk => Box::new(
                cairn_vmdk::VmdkImage::from_reader(reader, limits)
                    .map_err(|e| wrap("vmdk")(e.into()))?,
            ),
            ImageFormat::Vhd => Box::new(
                cairn_vhd::VhdImage::from_reader(reader, limits)
                    .map_err(|e| wrap("vhd")(e.into()))?,
            ),
            ImageFormat::Vhdx => Box::new(
                cairn_vhdx::VhdxImage::from_reader(reader, limits)
                    .map_err(|e| wrap("vhdx")(e.into()))?,
            ),
            ImageFormat::Qcow2 => Box::new(
                cairn_qcow2::Qcow2Image::from_reader(reader, limits)
                    .map_err(|e| wrap("qcow2")(e.into()))?,
            ),
            ImageFormat::Raw => {
                return Err(Error::Unsupported(format!(
                    "{}: no disk image magic; a raw disk is read only from a file of its own",
                    path.display()
                )))
            }
        };
        if layer.parent_link().is_some() && !opts.no_parents {
            return Err(Error::Unsupported(format!(
                "{}: a delta (child) image read from inside an archive has no folder to find its parent in",
                path.display()
            )));
        }
        let layer: Arc<dyn DiskLayer> = Arc::from(layer);
        Ok(VirtualDisk {
            layers: vec![LayerInfo {
                path,
                format: layer.format(),
                subformat: layer.subformat(),
                identity: layer.identity(),
                virtual_size: layer.size(),
                layer,
            }],
        })
    }

    fn top(&self) -> &LayerInfo {
        &self.layers[0]
    }

    /// The layers, top (the file opened) first, base last.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Format of the top layer.
    pub fn format(&self) -> &'static str {
        self.top().format
    }

    /// Subformat of the top layer.
    pub fn subformat(&self) -> &str {
        &self.top().subformat
    }

    /// Identity of the top layer.
    pub fn identity(&self) -> &DiskIdentity {
        &self.top().identity
    }

    /// The combined map of the whole chain: `Data` (top layer), `FromParent` with the depth
    /// of the layer that holds it, `Zero`, `Unallocated` (reads as zeros).
    pub fn map(&self) -> Result<AllocationMap> {
        let mut iter = self.layers.iter().rev();
        let Some(base) = iter.next() else {
            return Ok(AllocationMap::new(0));
        };
        let mut combined = base.layer_map()?;
        for layer in iter {
            combined = layer.layer_map()?.overlay(&combined);
        }
        Ok(combined)
    }

    /// Bytes of the virtual disk that some layer stores (`Data` or `FromParent`).
    pub fn allocated_bytes(&self) -> Result<u64> {
        let m = self.map()?;
        Ok(m.bytes_of(RangeKind::Data) + m.bytes_of(RangeKind::FromParent))
    }

    /// For a child (a layer with a parent): what the top layer changed relative to its
    /// parent (`Data` and `Zero` runs; `Unallocated` = unchanged). `None` for a single layer.
    pub fn changed_ranges(&self) -> Result<Option<AllocationMap>> {
        if self.layers.len() < 2 {
            return Ok(None);
        }
        self.top().layer_map().map(Some)
    }

    /// The identities of the layers below the top, nearest first: what an incremental
    /// backup compares with the disk it captured last time.
    pub fn parent_identities(&self) -> Vec<DiskIdentity> {
        self.layers
            .iter()
            .skip(1)
            .map(|l| l.identity.clone())
            .collect()
    }
}

impl ReadAt for VirtualDisk {
    fn size(&self) -> u64 {
        self.top().layer.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        self.top().layer.read_at(buf, offset)
    }
}

fn check_parent(
    child: &Path,
    parent: &Path,
    expect: &cairn_io::ParentExpectation,
    found: &DiskIdentity,
) -> Result<()> {
    use cairn_io::ParentExpectation as E;
    let mismatch = |expected: String, f: String| Error::ParentMismatch {
        child: child.to_path_buf(),
        parent: parent.to_path_buf(),
        expected,
        found: f,
    };
    match expect {
        E::Nothing => Ok(()),
        E::Uuid(u) => {
            if found.uuid.as_ref() == Some(u) {
                Ok(())
            } else {
                Err(mismatch(
                    format!("uuid {}", hex(u)),
                    found
                        .uuid
                        .map_or("no uuid".into(), |f| format!("uuid {}", hex(&f))),
                ))
            }
        }
        E::ContentId(c) => match &found.content_id {
            Some(f) if f.eq_ignore_ascii_case(c) => Ok(()),
            Some(f) => Err(mismatch(
                format!("content id {c}"),
                format!("content id {f}"),
            )),
            None => Err(mismatch(format!("content id {c}"), "no content id".into())),
        },
        // New expectation kinds: refuse rather than trust.
        #[allow(unreachable_patterns)]
        other => Err(mismatch(
            format!("{other:?}"),
            "an expectation this version cannot check".into(),
        )),
    }
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Finds the parent file: each hint relative to the child's folder (Windows separators
/// accepted), then as an absolute path, then its file name in the child's folder and in
/// each search folder.
fn resolve_parent(child: &Path, hints: &[String], search: &[PathBuf]) -> Result<PathBuf> {
    let dir = child.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut tried = Vec::new();
    for hint in hints {
        let h = hint
            .strip_prefix("file://")
            .unwrap_or(hint)
            .trim_end_matches('\0');
        if h.is_empty() || h.contains('\0') {
            continue;
        }
        let unixy = h.replace('\\', "/");
        let is_windows_abs = unixy.len() >= 2 && unixy.as_bytes()[1] == b':';
        let mut candidates = Vec::new();
        if !is_windows_abs {
            candidates.push(dir.join(&unixy));
        }
        let file_name = unixy.rsplit('/').next().unwrap_or(&unixy).to_string();
        if !file_name.is_empty() {
            candidates.push(dir.join(&file_name));
            for s in search {
                candidates.push(s.join(&file_name));
            }
        }
        for c in candidates {
            if c.is_file() {
                return Ok(c);
            }
            tried.push(c);
        }
    }
    Err(Error::ParentNotFound {
        child: child.to_path_buf(),
        hints: hints.to_vec(),
        searched: tried,
    })
}
