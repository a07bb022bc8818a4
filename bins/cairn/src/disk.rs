//! Image commands: inspect, map, convert.
use std::path::PathBuf;

use anyhow::{Context, Result};
use cairn_io::{RangeKind, ReadAt};
use cairn_vdisk::{ConvertOptions, OpenOptions, TargetFormat, VirtualDisk};
use clap::Args;
use serde_json::json;

/// Options shared by commands that open an image.
#[derive(Debug, Args)]
pub struct OpenArgs {
    /// Folder searched for parent images after the image's own folder (repeatable).
    #[arg(long = "search-path", value_name = "DIR")]
    pub search_paths: Vec<PathBuf>,
}

impl OpenArgs {
    pub fn options(&self) -> OpenOptions {
        OpenOptions {
            search_paths: self.search_paths.clone(),
            ..OpenOptions::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image (VMDK descriptor or extent, VHD, VHDX, qcow2, raw).
    pub image: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub open: OpenArgs,
}

#[derive(Debug, Args)]
pub struct MapArgs {
    /// The image.
    pub image: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub open: OpenArgs,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The source image.
    pub image: PathBuf,
    /// The file to write.
    pub output: PathBuf,
    /// Target format: raw, vmdk or vhd.
    #[arg(long, short = 'f')]
    pub format: String,
    /// Target subformat: monolithicSparse or streamOptimized (vmdk), dynamic or fixed (vhd).
    #[arg(long)]
    pub subformat: Option<String>,
    #[command(flatten)]
    pub open: OpenArgs,
}

pub fn open(path: &PathBuf, args: &OpenArgs) -> Result<VirtualDisk> {
    // vdisk errors name the file (and the parent when a chain breaks) themselves.
    Ok(VirtualDisk::open(path, &args.options())?)
}

fn kind_name(k: RangeKind) -> &'static str {
    match k {
        RangeKind::Data => "data",
        RangeKind::Zero => "zero",
        RangeKind::Unallocated => "unallocated",
        RangeKind::FromParent => "parent",
    }
}

pub fn inspect(a: &InspectArgs) -> Result<()> {
    let disk = open(&a.image, &a.open)?;
    let allocated = disk.allocated_bytes()?;
    let table = cairn_part::read_partition_table(&disk)
        .with_context(|| format!("{}: reading the partition table", a.image.display()))?;
    let mut parts = Vec::new();
    for p in &table.partitions {
        let fs = p
            .open(&disk)
            .map(|v| cairn_part::probe_filesystem(&v).as_str())
            .unwrap_or("unknown");
        parts.push((p, fs));
    }
    let whole_disk_fs = if table.scheme == cairn_part::Scheme::None {
        Some(cairn_part::probe_filesystem(&disk).as_str())
    } else {
        None
    };
    if a.json {
        let chain: Vec<_> = disk
            .layers()
            .iter()
            .map(|l| {
                json!({
                    "path": l.path.display().to_string(),
                    "format": l.format,
                    "subformat": l.subformat,
                    "virtual_size": l.virtual_size,
                    "uuid": l.identity.uuid.map(|u| cairn_vdisk::hex(&u)),
                    "content_id": l.identity.content_id,
                })
            })
            .collect();
        let partitions: Vec<_> = parts
            .iter()
            .map(|(p, fs)| {
                json!({
                    "index": p.index,
                    "start": p.start,
                    "size": p.size,
                    "type": p.type_name,
                    "name": p.name,
                    "filesystem": fs,
                })
            })
            .collect();
        let v = json!({
            "format": disk.format(),
            "subformat": disk.subformat(),
            "virtual_size": disk.size(),
            "allocated_bytes": allocated,
            "chain": chain,
            "partition_table": table.scheme.as_str(),
            "partitions": partitions,
            "filesystem": whole_disk_fs,
            "warnings": table.warnings,
        });
        outln!("{v}");
        return Ok(());
    }
    outln!("image:          {}", a.image.display());
    outln!("format:         {} ({})", disk.format(), disk.subformat());
    outln!("virtual size:   {} bytes", disk.size());
    outln!("allocated:      {allocated} bytes");
    if let Some(u) = disk.identity().uuid {
        outln!("uuid:           {}", cairn_vdisk::hex(&u));
    }
    if disk.layers().len() > 1 {
        outln!("chain:");
        for (i, l) in disk.layers().iter().enumerate() {
            outln!("  {i}: {} ({} {})", l.path.display(), l.format, l.subformat);
        }
    }
    outln!("partition table: {}", table.scheme.as_str());
    for (p, fs) in &parts {
        outln!(
            "  {:>3}  start {:>14}  size {:>14}  {:<28} {}",
            p.index,
            p.start,
            p.size,
            p.type_name,
            fs
        );
    }
    if let Some(fs) = whole_disk_fs {
        outln!("file system:    {fs}");
    }
    for w in &table.warnings {
        outln!("warning: {w}");
    }
    Ok(())
}

pub fn map(a: &MapArgs) -> Result<()> {
    let disk = open(&a.image, &a.open)?;
    let combined = disk.map()?;
    let changed = disk.changed_ranges()?;
    if a.json {
        let runs: Vec<_> = combined
            .runs()
            .iter()
            .map(|r| json!({"start": r.offset, "length": r.len, "kind": kind_name(r.kind), "depth": r.depth}))
            .collect();
        let changed: Option<Vec<_>> = changed.map(|c| {
            c.runs()
                .iter()
                .filter(|r| r.kind != RangeKind::Unallocated)
                .map(|r| json!({"start": r.offset, "length": r.len, "kind": kind_name(r.kind)}))
                .collect()
        });
        outln!(
            "{}",
            json!({"virtual_size": disk.size(), "map": runs, "changed": changed})
        );
        return Ok(());
    }
    outln!("{:>16} {:>16} {:>6}  kind", "start", "length", "depth");
    for r in combined.runs() {
        outln!(
            "{:>16} {:>16} {:>6}  {}",
            r.offset,
            r.len,
            r.depth,
            kind_name(r.kind)
        );
    }
    if let Some(c) = changed {
        outln!("changed relative to the parent:");
        for r in c.runs().iter().filter(|r| r.kind != RangeKind::Unallocated) {
            outln!(
                "{:>16} {:>16}         {}",
                r.offset,
                r.len,
                kind_name(r.kind)
            );
        }
    }
    Ok(())
}

pub fn convert(a: &ConvertArgs) -> Result<()> {
    let target = TargetFormat::parse(&a.format, a.subformat.as_deref())?;
    let disk = open(&a.image, &a.open)?;
    let map = disk.map()?;
    let report = cairn_vdisk::convert(&disk, &map, &a.output, target, &ConvertOptions::default())
        .with_context(|| {
        format!("converting {} to {}", a.image.display(), a.output.display())
    })?;
    eprintln!(
        "read {} bytes, wrote {} bytes of data",
        report.bytes_read, report.bytes_written
    );
    Ok(())
}
