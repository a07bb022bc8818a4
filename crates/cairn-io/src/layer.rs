use std::fmt;
use std::sync::Arc;

use crate::{AllocationMap, ReadAt, Result};

/// Who a disk is, as its own metadata says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskIdentity {
    /// A stable id of the disk, where the format has one: VMDK `ddb.uuid.image`, VHD footer
    /// unique id, VHDX virtual disk id. Big-endian/RFC 4122 byte order as printed.
    pub uuid: Option<[u8; 16]>,
    /// An id of the disk's current content, which a child names to pin its parent: VMDK
    /// `CID` (8 hex digits), VHDX `DataWriteGuid` (lower-case hyphenated GUID).
    pub content_id: Option<String>,
}

/// What a child layer must find in its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentExpectation {
    /// The format records nothing to check (qcow2 backing files).
    Nothing,
    /// The parent's [`DiskIdentity::uuid`] must equal this (VHD differencing).
    Uuid([u8; 16]),
    /// The parent's [`DiskIdentity::content_id`] must equal this (VMDK parentCID, VHDX
    /// parent_linkage).
    ContentId(String),
}

/// A child's reference to its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLink {
    /// Where the parent may be, best first, as written in the child (relative or absolute
    /// paths, possibly Windows-style).
    pub hints: Vec<String>,
    /// What the parent must be.
    pub expect: ParentExpectation,
}

/// One layer of a virtual disk: an image file (or set of extent files) of some format.
///
/// Reading a layer that has a parent attached reads through to the parent wherever this
/// layer is [`Unallocated`](crate::RangeKind::Unallocated); with no parent those ranges read
/// as zeros.
pub trait DiskLayer: ReadAt + fmt::Debug {
    /// Short lower-case format name: `vmdk`, `vhd`, `vhdx`, `qcow2`, `raw`.
    fn format(&self) -> &'static str;
    /// Subformat as the format names it (`monolithicSparse`, `dynamic`, `v3`...).
    fn subformat(&self) -> String;
    /// Identity from this layer's metadata.
    fn identity(&self) -> DiskIdentity;
    /// The parent this layer needs, if it is a delta / differencing / backed image.
    fn parent_link(&self) -> Option<ParentLink>;
    /// Attaches the parent. The caller (`cairn-vdisk`) has checked identity and size; the
    /// layer may check format-specific rules and refuse.
    fn attach_parent(
        &mut self,
        parent: Arc<dyn DiskLayer>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// This layer's own allocation (no parent): `Data`, `Zero` and `Unallocated` runs.
    fn layer_map(&self) -> Result<AllocationMap, Box<dyn std::error::Error + Send + Sync>>;
    /// Bytes of host storage the layer's data occupies (as near as the format tells).
    fn allocated_bytes(&self) -> u64 {
        self.layer_map()
            .map(|m| m.bytes_of(crate::RangeKind::Data))
            .unwrap_or(0)
    }
}
