/// Caps that every number read from an untrusted image, volume or repository is checked
/// against before it sizes an allocation or a loop. The defaults are generous for real
/// disks and small enough that hostile input cannot exhaust memory; a caller may raise them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest virtual disk accepted (bytes). 64 TiB: VHDX's own maximum, above VMDK's 62 TiB.
    pub max_virtual_size: u64,
    /// Largest single metadata table read into memory at once (grain directory, BAT, L1
    /// table, MFT record run list, group descriptor table...), in bytes.
    pub max_table_bytes: u64,
    /// Largest text descriptor (VMDK) or configuration read, in bytes.
    pub max_descriptor_bytes: u64,
    /// Deepest parent chain followed (base + deltas).
    pub max_chain_depth: u32,
    /// Most extents (files) one image may be split into.
    pub max_extents: u32,
    /// Largest allocation unit (grain, block, cluster) accepted, in bytes.
    pub max_unit_bytes: u64,
    /// Most steps of any linked walk (EBR chain, cluster chain, run list, index nodes)
    /// before it is declared a loop.
    pub max_walk_steps: u64,
    /// Deepest directory nesting walked.
    pub max_dir_depth: u32,
    /// Most entries accepted in one directory.
    pub max_dir_entries: u64,
    /// Most symbolic links followed while resolving one path.
    pub max_symlink_follows: u32,
    /// Deepest on-disk tree (extent tree, B-tree index) descended.
    pub max_tree_depth: u32,
}

impl Limits {
    /// The defaults described on each field.
    pub const DEFAULT: Limits = Limits {
        max_virtual_size: 64 << 40,
        max_table_bytes: 256 << 20,
        max_descriptor_bytes: 1 << 20,
        max_chain_depth: 64,
        max_extents: 4096,
        max_unit_bytes: 256 << 20,
        max_walk_steps: 1 << 32,
        max_dir_depth: 256,
        max_dir_entries: 10_000_000,
        max_symlink_follows: 40,
        max_tree_depth: 32,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
