//! XML configurations: libvirt domain XML, Hyper-V 2012 R2 `Virtual Machines/<GUID>.xml`,
//! and OVF descriptors. Parsed with `roxmltree` (read-only, no unsafe code) after a size
//! check and with a node limit; rewrites splice the original text at the byte ranges the
//! parser reports, so everything else is kept as written.

use std::collections::BTreeMap;
use std::ops::Range;

use roxmltree::{Document, Node, ParsingOptions};

use crate::vmx::{parse_vmware_uuid, MAX_BUNDLE_DISKS};
use crate::{Error, Result};

/// Largest XML configuration accepted: 16 MiB. libvirt domain XML and OVF descriptors are
/// a few KiB; a Hyper-V 2012 configuration is about 100 KiB.
pub const MAX_XML_BYTES: usize = 16 << 20;
/// Most XML nodes parsed (elements, attributes' owners, text): bounds the parser's memory.
pub const MAX_XML_NODES: u32 = 1_000_000;

/// How an XML file was encoded, so a rewrite writes it back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlEncoding {
    /// UTF-8 (with or without a byte-order mark).
    Utf8 {
        /// Whether the file began with a byte-order mark.
        bom: bool,
    },
    /// UTF-16 little endian with a byte-order mark (Hyper-V writes these).
    Utf16Le,
}

/// Decodes an XML file's bytes to text (UTF-8, or UTF-16 LE with a BOM).
pub fn decode(file: &str, bytes: &[u8]) -> Result<(String, XmlEncoding)> {
    if bytes.len() > MAX_XML_BYTES {
        return Err(Error::Limit {
            file: file.into(),
            what: "XML size",
            value: bytes.len() as u64,
            limit: MAX_XML_BYTES as u64,
        });
    }
    if let Some(rest) = bytes.strip_prefix(b"\xff\xfe") {
        if rest.len() % 2 != 0 {
            return Err(Error::invalid(
                file,
                "UTF-16 text of an odd number of bytes",
            ));
        }
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16(&units)
            .map_err(|_| Error::invalid(file, "invalid UTF-16 (an unpaired surrogate)"))?;
        return Ok((text, XmlEncoding::Utf16Le));
    }
    let (body, bom) = match bytes.strip_prefix(b"\xef\xbb\xbf") {
        Some(b) => (b, true),
        None => (bytes, false),
    };
    let text = std::str::from_utf8(body).map_err(|e| {
        Error::invalid(
            file,
            format!("not UTF-8 at byte offset {}", e.valid_up_to()),
        )
    })?;
    Ok((text.to_string(), XmlEncoding::Utf8 { bom }))
}

fn encode(text: &str, enc: XmlEncoding) -> Vec<u8> {
    match enc {
        XmlEncoding::Utf8 { bom } => {
            let mut out = Vec::with_capacity(text.len() + 3);
            if bom {
                out.extend_from_slice(b"\xef\xbb\xbf");
            }
            out.extend_from_slice(text.as_bytes());
            out
        }
        XmlEncoding::Utf16Le => {
            let mut out = vec![0xff, 0xfe];
            for u in text.encode_utf16() {
                out.extend_from_slice(&u.to_le_bytes());
            }
            out
        }
    }
}

/// Parses XML text with the node limit and no DTD (no entity expansion).
pub fn parse<'a>(file: &str, text: &'a str) -> Result<Document<'a>> {
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_XML_NODES,
    };
    Document::parse_with_options(text, opts).map_err(|e| {
        let pos = e.pos();
        Error::Xml {
            file: file.into(),
            line: pos.row,
            column: pos.col,
            what: e.to_string(),
        }
    })
}

fn line_of(doc: &Document<'_>, n: Node<'_, '_>) -> u32 {
    doc.text_pos_at(n.range().start).row
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn attr_local<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attributes().find(|a| a.name() == name).map(|a| a.value())
}

/// Escapes text for an XML attribute value or element text.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Applies non-overlapping replacements to `text`.
fn splice(file: &str, text: &str, mut edits: Vec<(Range<usize>, String)>) -> Result<String> {
    edits.sort_by_key(|e| std::cmp::Reverse(e.0.start));
    let mut out = text.to_string();
    let mut limit = usize::MAX;
    for (r, s) in edits {
        if r.end > limit || r.start > r.end || r.end > out.len() {
            return Err(Error::invalid(file, "overlapping rewrite ranges"));
        }
        out.replace_range(r.clone(), &s);
        limit = r.start;
    }
    Ok(out)
}

/// A disk found in an XML configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlDisk {
    /// Device reference (`vda`, `controller0/drive1` of a controller class, OVF disk id).
    pub config_ref: String,
    /// The path or file name as written.
    pub path: String,
    /// A disk UUID the configuration records (OVF `vbox:uuid`).
    pub uuid: Option<[u8; 16]>,
    /// Format the configuration names (libvirt driver type, OVF format URI).
    pub format: Option<String>,
    /// 1-based line of the disk's element.
    pub line: u32,
}

/// What an XML configuration says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XmlConfig {
    /// The VM name.
    pub vm_name: Option<String>,
    /// The VM UUID.
    pub vm_uuid: Option<[u8; 16]>,
    /// Disks in document order.
    pub disks: Vec<XmlDisk>,
    /// What was left out and why.
    pub notes: Vec<String>,
}

fn push_disk(file: &str, cfg: &mut XmlConfig, d: XmlDisk) -> Result<()> {
    if cfg.disks.len() >= MAX_BUNDLE_DISKS {
        return Err(Error::Limit {
            file: file.into(),
            what: "disk count",
            value: cfg.disks.len() as u64 + 1,
            limit: MAX_BUNDLE_DISKS as u64,
        });
    }
    cfg.disks.push(d);
    Ok(())
}

fn uuid_text(file: &str, what: &str, s: &str) -> Result<[u8; 16]> {
    parse_vmware_uuid(s.trim())
        .ok_or_else(|| Error::invalid(file, format!("{what} {s:?} is not a UUID")))
}

/// libvirt: `<domain>` with `<name>`, `<uuid>` and `<devices><disk type='file'
/// device='disk'>` entries. CD-ROMs, floppies, network and block-device disks are noted and
/// left out.
pub fn libvirt(file: &str, text: &str) -> Result<XmlConfig> {
    let doc = parse(file, text)?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" {
        return Err(Error::invalid(
            file,
            format!(
                "root element <{}>, expected <domain>",
                root.tag_name().name()
            ),
        ));
    }
    let mut cfg = XmlConfig {
        vm_name: child(root, "name")
            .and_then(|n| n.text())
            .map(|s| s.trim().to_string()),
        ..Default::default()
    };
    if let Some(u) = child(root, "uuid").and_then(|n| n.text()) {
        cfg.vm_uuid = Some(uuid_text(file, "<uuid>", u)?);
    }
    if let Some(id) = attr_local(root, "id") {
        cfg.notes.push(format!(
            "the XML was dumped from a running domain (id {id}); the power state is what --state says"
        ));
    }
    let Some(devices) = child(root, "devices") else {
        return Ok(cfg);
    };
    for disk in devices
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "disk")
    {
        let line = line_of(&doc, disk);
        let target = child(disk, "target")
            .and_then(|t| attr_local(t, "dev"))
            .unwrap_or("")
            .to_string();
        let device = attr_local(disk, "device").unwrap_or("disk");
        let kind = attr_local(disk, "type").unwrap_or("file");
        let source = child(disk, "source");
        if device != "disk" {
            cfg.notes
                .push(format!("{target} (line {line}): a {device}, left out"));
            continue;
        }
        if kind != "file" {
            cfg.notes.push(format!(
                "{target} (line {line}): a disk of type {kind:?} (not an image file), left out"
            ));
            continue;
        }
        let Some(path) = source.and_then(|s| attr_local(s, "file")) else {
            cfg.notes
                .push(format!("{target} (line {line}): no source file, left out"));
            continue;
        };
        if target.is_empty() {
            return Err(Error::invalid(
                file,
                format!("disk at line {line}: no <target dev=...>"),
            ));
        }
        if cfg.disks.iter().any(|d| d.config_ref == target) {
            return Err(Error::invalid(
                file,
                format!("disk at line {line}: target {target} used twice"),
            ));
        }
        let format = child(disk, "driver")
            .and_then(|d| attr_local(d, "type"))
            .map(str::to_string);
        push_disk(
            file,
            &mut cfg,
            XmlDisk {
                config_ref: target,
                path: path.to_string(),
                uuid: None,
                format,
                line,
            },
        )?;
    }
    Ok(cfg)
}

/// Rewrites libvirt disk sources: `map` is target dev -> new path; the driver type follows
/// the new file's extension (`.raw`/`.img` raw, `.vmdk` vmdk, `.vhd` vpc, `.qcow2` qcow2).
pub fn rewrite_libvirt(
    file: &str,
    original: &[u8],
    map: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let (text, enc) = decode(file, original)?;
    let cfg = libvirt(file, &text)?;
    let doc = parse(file, &text)?;
    let mut edits = Vec::new();
    for (target, new) in map {
        if !cfg.disks.iter().any(|d| &d.config_ref == target) {
            return Err(Error::invalid(file, format!("no disk {target} to rewrite")));
        }
        let disk = doc
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == "disk")
            .find(|n| {
                child(*n, "target").and_then(|t| attr_local(t, "dev")) == Some(target.as_str())
            })
            .ok_or_else(|| Error::invalid(file, format!("no disk {target} to rewrite")))?;
        let source = child(disk, "source")
            .and_then(|s| s.attributes().find(|a| a.name() == "file"))
            .ok_or_else(|| Error::invalid(file, format!("disk {target}: no source file")))?;
        edits.push((source.range_value(), xml_escape(new)));
        let lower = new.to_ascii_lowercase();
        let ty = if lower.ends_with(".vmdk") {
            Some("vmdk")
        } else if lower.ends_with(".vhd") {
            Some("vpc")
        } else if lower.ends_with(".qcow2") {
            Some("qcow2")
        } else if lower.ends_with(".raw") || lower.ends_with(".img") {
            Some("raw")
        } else {
            None
        };
        if let (Some(ty), Some(driver)) = (ty, child(disk, "driver")) {
            if let Some(a) = driver.attributes().find(|a| a.name() == "type") {
                edits.push((a.range_value(), ty.to_string()));
            }
        }
    }
    Ok(encode(&splice(file, &text, edits)?, enc))
}

/// The Hyper-V controller classes of a 2012 R2 configuration.
const HYPERV_IDE: &str = "_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_";
const HYPERV_SCSI: &str = "_D422512D-2BF2-4752-809D-7B82B5FCB1B4_";

/// Hyper-V 2012 R2 configuration: `<configuration><properties><name>`, and for each
/// controller (`_<class GUID>_/controllerN/driveM`) a `pathname` whose `type` is `VHD`.
/// The VM GUID is the file name (`<GUID>.xml`), given as `file_guid`.
pub fn hyperv(file: &str, text: &str, file_guid: Option<[u8; 16]>) -> Result<XmlConfig> {
    let doc = parse(file, text)?;
    let root = doc.root_element();
    if root.tag_name().name() != "configuration" {
        return Err(Error::invalid(
            file,
            format!(
                "root element <{}>, expected <configuration>",
                root.tag_name().name()
            ),
        ));
    }
    let mut cfg = XmlConfig {
        vm_name: child(root, "properties")
            .and_then(|p| child(p, "name"))
            .and_then(|n| n.text())
            .map(|s| s.trim().to_string()),
        vm_uuid: file_guid,
        ..Default::default()
    };
    if let Some(g) = child(root, "properties")
        .and_then(|p| child(p, "global_id"))
        .and_then(|n| n.text())
    {
        cfg.vm_uuid = Some(uuid_text(file, "global_id", g)?);
    }
    // Element names are the controller class GUIDs; files differ in their case.
    for class in root.children().filter(|c| {
        c.is_element()
            && [HYPERV_IDE, HYPERV_SCSI]
                .iter()
                .any(|g| c.tag_name().name().eq_ignore_ascii_case(g))
    }) {
        let bus = if class.tag_name().name().eq_ignore_ascii_case(HYPERV_IDE) {
            "ide"
        } else {
            "scsi"
        };
        for ctl in class
            .children()
            .filter(|c| c.is_element() && c.tag_name().name().starts_with("controller"))
        {
            for drive in ctl
                .children()
                .filter(|c| c.is_element() && c.tag_name().name().starts_with("drive"))
            {
                let config_ref = format!(
                    "{bus}/{}/{}",
                    ctl.tag_name().name(),
                    drive.tag_name().name()
                );
                let line = line_of(&doc, drive);
                let ty = child(drive, "type")
                    .and_then(|t| t.text())
                    .unwrap_or("")
                    .trim();
                let path = child(drive, "pathname")
                    .and_then(|p| p.text())
                    .unwrap_or("")
                    .trim();
                if !ty.eq_ignore_ascii_case("VHD") {
                    if !path.is_empty() {
                        cfg.notes.push(format!(
                            "{config_ref} (line {line}): type {ty:?} ({path}), left out"
                        ));
                    }
                    continue;
                }
                if path.is_empty() {
                    cfg.notes
                        .push(format!("{config_ref} (line {line}): no pathname, left out"));
                    continue;
                }
                push_disk(
                    file,
                    &mut cfg,
                    XmlDisk {
                        config_ref,
                        path: path.to_string(),
                        uuid: None,
                        format: None,
                        line,
                    },
                )?;
            }
        }
    }
    Ok(cfg)
}

fn hyperv_drive<'a, 'i>(doc: &'a Document<'i>, config_ref: &str) -> Option<Node<'a, 'i>> {
    let mut parts = config_ref.split('/');
    let class = match parts.next()? {
        "ide" => HYPERV_IDE,
        "scsi" => HYPERV_SCSI,
        _ => return None,
    };
    let (ctl, drive) = (parts.next()?, parts.next()?);
    let root = doc.root_element();
    let c = root
        .children()
        .find(|c| c.is_element() && c.tag_name().name().eq_ignore_ascii_case(class))?;
    child(child(c, ctl)?, drive)
}

/// Rewrites Hyper-V `pathname`s: `map` is drive reference -> new path.
pub fn rewrite_hyperv(
    file: &str,
    original: &[u8],
    map: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let (text, enc) = decode(file, original)?;
    let doc = parse(file, &text)?;
    let mut edits = Vec::new();
    for (r, new) in map {
        let drive = hyperv_drive(&doc, r)
            .ok_or_else(|| Error::invalid(file, format!("no drive {r} to rewrite")))?;
        let p = child(drive, "pathname")
            .ok_or_else(|| Error::invalid(file, format!("drive {r}: no pathname")))?;
        let range = match p.first_child() {
            Some(t) if t.is_text() => t.range(),
            // `<pathname type="string" />` or `<pathname ...></pathname>`: not a disk.
            _ => return Err(Error::invalid(file, format!("drive {r}: empty pathname"))),
        };
        edits.push((range, xml_escape(new)));
    }
    Ok(encode(&splice(file, &text, edits)?, enc))
}

/// OVF: `References/File` (`href`, `id`), `DiskSection/Disk` (`diskId`, `fileRef`,
/// `capacity`, `format`, VirtualBox's `uuid`), `VirtualSystem` (`id`, `Name`, VirtualBox's
/// `Machine uuid`). Namespaces are matched by local name, as exporters differ in prefixes.
pub fn ovf(file: &str, text: &str) -> Result<XmlConfig> {
    let doc = parse(file, text)?;
    let root = doc.root_element();
    if root.tag_name().name() != "Envelope" {
        return Err(Error::invalid(
            file,
            format!(
                "root element <{}>, expected <Envelope>",
                root.tag_name().name()
            ),
        ));
    }
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    if let Some(refs) = child(root, "References") {
        for f in refs
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "File")
        {
            let (Some(id), Some(href)) = (attr_local(f, "id"), attr_local(f, "href")) else {
                return Err(Error::invalid(
                    file,
                    format!("<File> at line {}: needs id and href", line_of(&doc, f)),
                ));
            };
            files.insert(id.to_string(), href.to_string());
        }
    }
    let vs = root
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "VirtualSystem");
    let mut cfg = XmlConfig {
        vm_name: vs
            .and_then(|v| child(v, "Name"))
            .and_then(|n| n.text())
            .map(|s| s.trim().to_string())
            .or_else(|| vs.and_then(|v| attr_local(v, "id")).map(str::to_string)),
        ..Default::default()
    };
    if let Some(m) = vs.and_then(|v| {
        v.descendants()
            .find(|n| n.is_element() && n.tag_name().name() == "Machine")
    }) {
        if let Some(u) = attr_local(m, "uuid") {
            cfg.vm_uuid = Some(uuid_text(file, "Machine uuid", u)?);
        }
    }
    let disks = root
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Disk");
    for d in disks {
        let line = line_of(&doc, d);
        let Some(id) = attr_local(d, "diskId") else {
            return Err(Error::invalid(
                file,
                format!("<Disk> at line {line}: no diskId"),
            ));
        };
        let Some(file_ref) = attr_local(d, "fileRef") else {
            cfg.notes.push(format!(
                "disk {id} (line {line}): no fileRef (an empty disk created on import), left out"
            ));
            continue;
        };
        let href = files.get(file_ref).ok_or_else(|| {
            Error::invalid(
                file,
                format!("<Disk> {id} at line {line}: fileRef {file_ref:?} names no <File>"),
            )
        })?;
        let uuid = match attr_local(d, "uuid") {
            Some(u) => Some(uuid_text(file, "Disk uuid", u)?),
            None => None,
        };
        push_disk(
            file,
            &mut cfg,
            XmlDisk {
                config_ref: id.to_string(),
                path: href.clone(),
                uuid,
                format: attr_local(d, "format").map(str::to_string),
                line,
            },
        )?;
    }
    Ok(cfg)
}

/// Rewrites OVF file references: `map` is disk id -> new file name. The `href` of the
/// disk's `<File>` changes and its `size` attribute (optional in OVF) is removed, since the
/// new file's size differs.
pub fn rewrite_ovf(file: &str, original: &[u8], map: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let (text, enc) = decode(file, original)?;
    let doc = parse(file, &text)?;
    let root = doc.root_element();
    let mut edits = Vec::new();
    for (id, new) in map {
        let disk = root
            .descendants()
            .find(|n| {
                n.is_element()
                    && n.tag_name().name() == "Disk"
                    && attr_local(*n, "diskId") == Some(id.as_str())
            })
            .ok_or_else(|| Error::invalid(file, format!("no disk {id} to rewrite")))?;
        let file_ref = attr_local(disk, "fileRef")
            .ok_or_else(|| Error::invalid(file, format!("disk {id}: no fileRef")))?;
        let f = root
            .descendants()
            .find(|n| {
                n.is_element()
                    && n.tag_name().name() == "File"
                    && attr_local(*n, "id") == Some(file_ref)
            })
            .ok_or_else(|| Error::invalid(file, format!("disk {id}: no <File> {file_ref}")))?;
        for a in f.attributes() {
            if a.name() == "href" {
                edits.push((a.range_value(), xml_escape(new)));
            } else if a.name() == "size" {
                // Drop ` ovf:size="..."` with the blank before it.
                let r = a.range();
                let start = text[..r.start].trim_end().len();
                edits.push((start..r.end, String::new()));
            }
        }
    }
    Ok(encode(&splice(file, &text, edits)?, enc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBVIRT: &str = r#"<domain type='kvm' id='4'>
  <name>web01</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/x.iso'/>
      <target dev='sda' bus='sata'/>
    </disk>
    <disk type='network' device='disk'>
      <source protocol='rbd' name='pool/img'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>
"#;

    #[test]
    fn libvirt_domain() {
        let c = libvirt("d.xml", LIBVIRT).unwrap();
        assert_eq!(c.vm_name.as_deref(), Some("web01"));
        assert_eq!(c.vm_uuid.unwrap()[..2], [0x4d, 0xea]);
        assert_eq!(c.disks.len(), 1);
        assert_eq!(c.disks[0].config_ref, "vda");
        assert_eq!(c.disks[0].line, 5);
        assert_eq!(c.notes.len(), 3, "{:?}", c.notes);
        let mut m = BTreeMap::new();
        m.insert("vda".to_string(), "/restored/web01 & co.raw".to_string());
        let out = rewrite_libvirt("d.xml", LIBVIRT.as_bytes(), &m).unwrap();
        let text = String::from_utf8(out).unwrap();
        let c2 = libvirt("d.xml", &text).unwrap();
        assert_eq!(c2.disks[0].path, "/restored/web01 & co.raw");
        assert_eq!(c2.disks[0].format.as_deref(), Some("raw"));
        assert_eq!(text.lines().count(), LIBVIRT.lines().count());
    }

    #[test]
    fn xml_errors() {
        let e = libvirt("d.xml", "<domain>\n<name>x</nam>\n</domain>").unwrap_err();
        assert!(matches!(e, Error::Xml { line: 2, .. }), "{e}");
        let e = libvirt("d.xml", "<other/>").unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
        let e = libvirt(
            "d.xml",
            "<!DOCTYPE d [<!ENTITY a 'aaaa'>]><domain><name>&a;</name></domain>",
        )
        .unwrap_err();
        assert!(matches!(e, Error::Xml { .. }), "{e}");
        let big = vec![b' '; MAX_XML_BYTES + 1];
        assert!(matches!(decode("d.xml", &big), Err(Error::Limit { .. })));
        let e = libvirt("d.xml", "<domain><uuid>nope</uuid></domain>").unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
    }

    #[test]
    fn utf16_round_trip() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><configuration><properties><name type=\"string\">vm é</name></properties><_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_><controller0><drive0><pathname type=\"string\">C:\\VMs\\a.vhdx</pathname><type type=\"string\">VHD</type></drive0></controller0></_83F8638B-8DCA-4152-9EDA-2CA8B33039B4_></configuration>";
        let bytes = encode(xml, XmlEncoding::Utf16Le);
        let (text, enc) = decode("h.xml", &bytes).unwrap();
        assert_eq!(enc, XmlEncoding::Utf16Le);
        let c = hyperv("h.xml", &text, None).unwrap();
        assert_eq!(c.vm_name.as_deref(), Some("vm é"));
        assert_eq!(c.disks[0].config_ref, "ide/controller0/drive0");
        let mut m = BTreeMap::new();
        m.insert("ide/controller0/drive0".to_string(), "b.vhd".to_string());
        let out = rewrite_hyperv("h.xml", &bytes, &m).unwrap();
        let (t2, e2) = decode("h.xml", &out).unwrap();
        assert_eq!(e2, XmlEncoding::Utf16Le);
        assert_eq!(hyperv("h.xml", &t2, None).unwrap().disks[0].path, "b.vhd");
        // Lower-case class names (as some tools write them) read the same.
        let lower = xml.replace(HYPERV_IDE, &HYPERV_IDE.to_ascii_lowercase());
        let c = hyperv("h.xml", &lower, None).unwrap();
        assert_eq!(c.disks[0].config_ref, "ide/controller0/drive0");
        let out = rewrite_hyperv("h.xml", lower.as_bytes(), &m).unwrap();
        let (t3, _) = decode("h.xml", &out).unwrap();
        assert_eq!(hyperv("h.xml", &t3, None).unwrap().disks[0].path, "b.vhd");
    }
}
