//! The virtual disk: a descriptor and its extents, read as one `ReadAt` + `DiskLayer`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_io::{
    AllocationMap, DiskIdentity, DiskLayer, FileReader, Limits, ParentExpectation, ParentLink,
    RangeKind, ReadAt,
};

use crate::descriptor::{check_extent_path, Access, Descriptor, ExtentType};
use crate::error::{Error, Result};
use crate::header::SECTOR;
use crate::sparse::{sniff, Magic, SparseExtent, Src};

enum Data {
    Sparse(SparseExtent),
    Flat { file: Arc<dyn ReadAt>, offset: u64 },
    Zero,
}

struct Extent {
    start: u64,
    len: u64,
    data: Data,
}

/// A VMDK virtual disk: monolithicSparse, streamOptimized, twoGbMaxExtentSparse,
/// monolithicFlat, twoGbMaxExtentFlat, vmfs, vmfsSparse or seSparse, optionally a delta
/// whose parent the caller attaches.
pub struct VmdkImage {
    descriptor: Descriptor,
    extents: Vec<Extent>,
    size: u64,
    subformat: String,
    parent: Option<Arc<dyn DiskLayer>>,
}

impl std::fmt::Debug for VmdkImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmdkImage")
            .field("subformat", &self.subformat)
            .field("size", &self.size)
            .field("extents", &self.extents.len())
            .field("has_parent", &self.parent.is_some())
            .finish_non_exhaustive()
    }
}

fn open_file(path: &Path) -> Result<Arc<dyn ReadAt>> {
    let f = FileReader::open(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(f))
}

impl VmdkImage {
    /// Opens a VMDK by its descriptor file, or by a sparse extent that embeds its descriptor
    /// (monolithicSparse, streamOptimized), or a bare COWD / seSparse extent. Extent files
    /// are resolved relative to the descriptor's folder.
    pub fn open(path: &Path, limits: &Limits) -> Result<Self> {
        let file = open_file(path)?;
        if sniff(file.as_ref())?.is_some() {
            return Self::from_reader(file, limits);
        }
        let size = file.size();
        if size > limits.max_descriptor_bytes {
            return Err(Error::DescriptorTooLarge {
                bytes: size,
                max: limits.max_descriptor_bytes,
            });
        }
        let text = file.read_vec_at(0, usize::try_from(size).unwrap_or(usize::MAX))?;
        if !text.starts_with(b"#") && !text.windows(10).any(|w| w == b"createType") {
            return Err(Error::NotVmdk(format!(
                "{}: no sparse magic and not a text descriptor",
                path.display()
            )));
        }
        let descriptor = Descriptor::parse(&text, limits.max_extents)?;
        let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_descriptor(descriptor, &folder, limits)
    }

    /// Opens one sparse file (KDMV with or without an embedded descriptor, streamOptimized,
    /// COWD or seSparse) as the whole disk. Used by the fuzz targets.
    pub fn from_reader(r: Arc<dyn ReadAt>, limits: &Limits) -> Result<Self> {
        let ext = SparseExtent::open(r, limits)?;
        let descriptor = match &ext.embedded_descriptor {
            Some(text) => Descriptor::parse(text, limits.max_extents)?,
            None => Descriptor::default(),
        };
        let subformat = descriptor
            .create_type
            .clone()
            .unwrap_or_else(|| ext.subformat().to_string());
        let size = ext.capacity;
        Ok(VmdkImage {
            descriptor,
            extents: vec![Extent {
                start: 0,
                len: size,
                data: Data::Sparse(ext),
            }],
            size,
            subformat,
            parent: None,
        })
    }

    fn from_descriptor(descriptor: Descriptor, folder: &Path, limits: &Limits) -> Result<Self> {
        if descriptor.extents.is_empty() {
            return Err(Error::BadDescriptor {
                line: 0,
                reason: "no extent lines".into(),
            });
        }
        let mut extents = Vec::with_capacity(descriptor.extents.len());
        let mut start = 0u64;
        for line in &descriptor.extents {
            let len = line
                .sectors
                .checked_mul(SECTOR)
                .filter(|&l| {
                    start
                        .checked_add(l)
                        .is_some_and(|e| e <= limits.max_virtual_size)
                })
                .ok_or(Error::CapacityTooLarge {
                    size: start.saturating_add(line.sectors.saturating_mul(SECTOR)),
                    max: limits.max_virtual_size,
                })?;
            let path = || -> Result<PathBuf> {
                let name = line.file.as_deref().unwrap_or("");
                check_extent_path(name)?;
                // Descriptors written on Windows may separate folders with backslashes.
                Ok(name
                    .split(['/', '\\'])
                    .filter(|c| !c.is_empty() && *c != ".")
                    .fold(folder.to_path_buf(), |p, c| p.join(c)))
            };
            let data = if line.access == Access::NoAccess {
                Data::Zero
            } else {
                match line.kind {
                    ExtentType::Zero => Data::Zero,
                    ExtentType::Flat | ExtentType::Vmfs => {
                        let file = open_file(&path()?)?;
                        let offset = line.offset_sectors.checked_mul(SECTOR).ok_or(
                            Error::BadDescriptor {
                                line: 0,
                                reason: format!("extent offset {} overflows", line.offset_sectors),
                            },
                        )?;
                        if offset.checked_add(len).is_none_or(|e| e > file.size()) {
                            return Err(Error::Truncated {
                                what: "flat extent",
                                offset,
                                need: len,
                                size: file.size(),
                            });
                        }
                        Data::Flat { file, offset }
                    }
                    ExtentType::Sparse | ExtentType::VmfsSparse | ExtentType::SeSparse => {
                        let file = open_file(&path()?)?;
                        let want = match line.kind {
                            ExtentType::Sparse => Magic::Kdmv,
                            ExtentType::VmfsSparse => Magic::Cowd,
                            _ => Magic::SeSparse,
                        };
                        let got = sniff(file.as_ref())?;
                        if got.is_some() && got != Some(want) {
                            return Err(Error::NotVmdk(format!(
                                "extent {:?} is {:?}, descriptor says {}",
                                line.file,
                                got,
                                line.kind.keyword()
                            )));
                        }
                        Data::Sparse(SparseExtent::open(file, limits)?)
                    }
                    ExtentType::VmfsRdm | ExtentType::VmfsRaw => {
                        return Err(Error::Unsupported(format!(
                            "{} extents (raw device mappings)",
                            line.kind.keyword()
                        )))
                    }
                }
            };
            extents.push(Extent { start, len, data });
            start += len;
        }
        let subformat = descriptor.create_type.clone().unwrap_or_else(|| {
            match descriptor.extents[0].kind {
                ExtentType::Flat => "monolithicFlat",
                ExtentType::Vmfs => "vmfs",
                ExtentType::VmfsSparse => "vmfsSparse",
                ExtentType::SeSparse => "seSparse",
                _ => "monolithicSparse",
            }
            .to_string()
        });
        Ok(VmdkImage {
            descriptor,
            extents,
            size: start,
            subformat,
            parent: None,
        })
    }

    /// The descriptor (embedded or separate; empty for a bare COWD/seSparse extent).
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The attached parent, if any.
    pub fn parent(&self) -> Option<&Arc<dyn DiskLayer>> {
        self.parent.as_ref()
    }

    /// Reads `buf.len()` bytes of the virtual disk at `off` (the caller clipped to size).
    fn read_inner(&self, buf: &mut [u8], off: u64) -> Result<()> {
        let end = off + buf.len() as u64;
        let mut i = self.extents.partition_point(|e| e.start + e.len <= off);
        let mut pos = off;
        while pos < end {
            let Some(ext) = self.extents.get(i) else {
                break;
            };
            let e_end = (ext.start + ext.len).min(end);
            let bs = usize::try_from(pos - off).unwrap_or(0);
            let be = usize::try_from(e_end - off).unwrap_or(0);
            let part = &mut buf[bs..be];
            let rel = pos - ext.start;
            match &ext.data {
                Data::Zero => part.fill(0),
                Data::Flat { file, offset } => file.read_exact_at(part, offset + rel)?,
                Data::Sparse(s) => {
                    let mut at = 0usize;
                    for (len, src) in s.plan(rel, part.len() as u64)? {
                        let l = usize::try_from(len).unwrap_or(0);
                        let piece = &mut part[at..at + l];
                        match src {
                            Src::Host(h) => s.read_host(piece, h)?,
                            Src::Zero => piece.fill(0),
                            Src::Unalloc => self.read_parent(piece, pos + at as u64)?,
                            Src::Compressed {
                                grain,
                                marker,
                                skip,
                            } => {
                                let g = s.grain(grain, marker)?;
                                let sk = usize::try_from(skip).unwrap_or(0);
                                piece.copy_from_slice(&g[sk..sk + l]);
                            }
                        }
                        at += l;
                    }
                }
            }
            pos = e_end;
            i += 1;
        }
        Ok(())
    }

    /// Fills `buf` from the parent at virtual offset `off`; zeros without a parent or past
    /// its end.
    fn read_parent(&self, buf: &mut [u8], off: u64) -> Result<()> {
        match &self.parent {
            Some(p) => p.read_zero_padded_at(buf, off)?,
            None => buf.fill(0),
        }
        Ok(())
    }

    /// This layer's map (see [`DiskLayer::layer_map`]), with this crate's error type.
    pub fn allocation_map(&self) -> Result<AllocationMap> {
        let mut map = AllocationMap::new(self.size);
        for e in &self.extents {
            match &e.data {
                Data::Zero => map.push(e.start, e.len, RangeKind::Zero)?,
                Data::Flat { .. } => map.push(e.start, e.len, RangeKind::Data)?,
                Data::Sparse(s) => s.map_into(&mut map, e.start, e.len)?,
            }
        }
        Ok(map.finish())
    }
}

impl ReadAt for VmdkImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> cairn_io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = usize::try_from(self.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match self.read_inner(&mut buf[..n], offset) {
            Ok(()) => Ok(n),
            Err(Error::Io(e)) => Err(e),
            Err(other) => Err(cairn_io::Error::io(
                offset,
                std::io::Error::new(std::io::ErrorKind::InvalidData, other),
            )),
        }
    }
}

impl DiskLayer for VmdkImage {
    fn format(&self) -> &'static str {
        "vmdk"
    }

    fn subformat(&self) -> String {
        self.subformat.clone()
    }

    fn identity(&self) -> DiskIdentity {
        DiskIdentity {
            uuid: self.descriptor.image_uuid(),
            content_id: self.descriptor.cid.map(|c| format!("{c:08x}")),
        }
    }

    fn parent_link(&self) -> Option<ParentLink> {
        if !self.descriptor.has_parent() {
            return None;
        }
        let cid = self.descriptor.parent_cid?;
        Some(ParentLink {
            hints: self
                .descriptor
                .parent_file_name_hint
                .iter()
                .cloned()
                .collect(),
            expect: ParentExpectation::ContentId(format!("{cid:08x}")),
        })
    }

    fn attach_parent(
        &mut self,
        parent: Arc<dyn DiskLayer>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.parent = Some(parent);
        Ok(())
    }

    fn layer_map(&self) -> Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.allocation_map()?)
    }
}
