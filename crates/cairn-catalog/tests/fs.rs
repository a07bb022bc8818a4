//! Catalogs of real file systems made by mke2fs -d (ext4) and mkfs.fat + mcopy (FAT32),
//! checked against the source tree and TSK `fls -r -p`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_catalog::*;
use cairn_guestfs::GuestFs;
use cairn_io::{FileReader, Limits, ReadAt};

fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} not found (required in CI)"
        );
        eprintln!("skipped: {tool} not found");
    }
    found
}

fn run(cmd: &mut Command) {
    let out = cmd.env("TZ", "UTC").output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// A tree with a deep path, many sibling directories (so one change is small against the
/// whole), music to exclude and a swap file.
fn make_tree(root: &Path) {
    for d in 0..20 {
        for f in 0..4 {
            write(
                root,
                &format!("/proj{d:02}/src/file{f}.txt"),
                &pattern(d * 10 + f, 100 + 700 * f as usize),
            );
        }
    }
    write(root, "/a/b/c/d/e/deep.txt", b"deep version one\n");
    write(root, "/a/b/c/d/e/keep.txt", &pattern(1, 9000));
    write(root, "/old.txt", b"to be deleted\n");
    write(root, "/big.bin", &pattern(7, 300_000));
    write(root, "/home/alice/Music/song.wav", &pattern(8, 5000));
    write(
        root,
        "/home/alice/Music/album/track.flac",
        &pattern(9, 7000),
    );
    write(root, "/home/alice/notes.txt", b"notes\n");
    write(root, "/home/bob/x.mp3", &pattern(10, 3000));
    write(root, "/pagefile.sys", &pattern(11, 20_000));
    std::fs::create_dir_all(root.join("empty")).unwrap();
}

fn sha(b: &[u8]) -> BlobId {
    sha256(b)
}

/// Source tree: path → (is_dir, size, mtime secs, sha of content).
fn source_manifest(root: &Path) -> BTreeMap<String, (bool, u64, i64, BlobId)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = format!("{rel}/{name}");
            let md = e.metadata().unwrap();
            let mtime = md
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let mtime = i64::try_from(mtime).unwrap();
            if md.is_dir() {
                out.insert(path.clone(), (true, 0, mtime, [0; 32]));
                stack.push((e.path(), path));
            } else {
                let bytes = std::fs::read(e.path()).unwrap();
                out.insert(path, (false, md.len(), mtime, sha(&bytes)));
            }
        }
    }
    out
}

/// `fls -r -p` paths (allocated entries, TSK virtual `$` files left out).
fn fls_paths(img: &Path) -> BTreeSet<String> {
    let out = Command::new("fls")
        .args(["-r", "-p"])
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(" * ")) // deleted
        .filter_map(|l| l.split_once('\t').map(|(_, p)| format!("/{p}")))
        .filter(|p| !p.rsplit('/').next().unwrap_or("").starts_with('$'))
        .collect()
}

fn open_fs(img: &Path) -> GuestFs {
    GuestFs::open(Arc::new(FileReader::open(img).unwrap()), &Limits::default()).unwrap()
}

fn all_entries<S: BlobStore>(store: &S, root: BlobId) -> BTreeMap<String, Entry> {
    let cat = Catalog::open(store, root).unwrap();
    let mut out = BTreeMap::new();
    cat.walk(&mut |p, e| {
        out.insert(p.to_string(), e.clone());
        Ok(())
    })
    .unwrap();
    out
}

/// Reads a file's bytes from the volume through its catalog extents.
fn read_extents(vol: &dyn ReadAt, e: &Entry) -> Option<Vec<u8>> {
    let mut out = vec![0u8; usize::try_from(e.size).unwrap()];
    for x in &e.extents {
        if x.encoded {
            return None;
        }
        let start = usize::try_from(x.file_offset).unwrap();
        let end = start + usize::try_from(x.len).unwrap();
        if let Some(off) = x.volume_offset {
            vol.read_exact_at(&mut out[start..end], off).unwrap();
        }
    }
    Some(out)
}

fn check_against_source(
    img: &Path,
    store: &MemStore,
    cat: &VolumeCatalog,
    src: &Path,
    mtime_slack: i64,
    skip: &[&str],
) {
    let entries = all_entries(store, cat.root);
    let manifest = source_manifest(src);
    let vol = FileReader::open(img).unwrap();
    for (path, (is_dir, size, mtime, digest)) in &manifest {
        let e = entries
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from catalog"));
        assert_eq!(
            e.kind,
            if *is_dir { Kind::Dir } else { Kind::File },
            "{path}"
        );
        let got = e.mtime.unwrap().secs;
        assert!(
            (got - mtime).abs() <= mtime_slack,
            "{path}: mtime {got} vs {mtime}"
        );
        if !is_dir {
            assert_eq!(e.size, *size, "{path}");
            let bytes = read_extents(&vol, e).expect("plain extents");
            assert_eq!(
                sha(&bytes),
                *digest,
                "{path}: extents do not reproduce the file"
            );
        }
    }
    let extra: Vec<_> = entries
        .keys()
        .filter(|p| !manifest.contains_key(*p) && !skip.iter().any(|s| p.starts_with(s)))
        .collect();
    assert!(
        extra.is_empty(),
        "catalog has paths not in the source: {extra:?}"
    );
    let fls = fls_paths(img);
    let ours: BTreeSet<String> = entries.keys().cloned().collect();
    assert_eq!(ours, fls, "catalog paths differ from fls -r -p");
}

fn excludes(case_insensitive: bool) -> CatalogOptions {
    let mut ex = vec![
        Glob::with_case("*.mp3", case_insensitive).unwrap(),
        Glob::with_case("/home/*/Music", case_insensitive).unwrap(),
    ];
    ex.extend(CatalogOptions::default_exclusions());
    CatalogOptions::with_exclude(ex)
}

fn check_exclusions(store: &MemStore, cat: &VolumeCatalog) {
    let entries = all_entries(store, cat.root);
    let want: BTreeSet<&str> = [
        "/home/alice/Music",
        "/home/alice/Music/song.wav",
        "/home/alice/Music/album",
        "/home/alice/Music/album/track.flac",
        "/home/bob/x.mp3",
        "/pagefile.sys",
    ]
    .into_iter()
    .collect();
    let got: BTreeSet<&str> = entries
        .iter()
        .filter(|(_, e)| e.excluded)
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(got, want);
    let excluded_files: Vec<&Entry> = entries
        .values()
        .filter(|e| e.excluded && e.kind == Kind::File)
        .collect();
    assert_eq!(cat.stats.excluded_files, 4);
    assert_eq!(
        cat.stats.excluded_bytes,
        excluded_files.iter().map(|e| e.size).sum::<u64>()
    );
    let inside = |off: u64, len: u64| {
        cat.excluded_ranges
            .iter()
            .any(|r| r.offset <= off && off + len <= r.offset + r.len)
    };
    let overlaps = |off: u64, len: u64| {
        cat.excluded_ranges
            .iter()
            .any(|r| off < r.offset + r.len && r.offset < off + len)
    };
    for e in &excluded_files {
        for x in &e.extents {
            assert!(
                inside(x.volume_offset.unwrap(), x.len),
                "{}: extent not reported",
                e.name
            );
        }
    }
    let covered: u64 = cat.excluded_ranges.iter().map(|r| r.len).sum();
    assert_eq!(
        covered,
        excluded_files
            .iter()
            .flat_map(|e| &e.extents)
            .map(|x| x.len)
            .sum::<u64>()
    );
    for e in entries.values().filter(|e| !e.excluded) {
        for x in &e.extents {
            assert!(
                !overlaps(x.volume_offset.unwrap_or(u64::MAX - x.len), x.len),
                "{}: wrongly freed",
                e.name
            );
        }
    }
}

/// Second restore point: deep file rewritten, one file deleted, one added; then diff,
/// dedup and versions across the two.
fn check_second(
    store: &MemStore,
    first: &VolumeCatalog,
    second: &VolumeCatalog,
    bytes_first: u64,
    bytes_second: u64,
) {
    // Only the changed directories' blobs are new: the root, /a .. /a/b/c/d/e.
    assert!(
        bytes_second * 3 < bytes_first,
        "second catalog cost {bytes_second} bytes vs {bytes_first} for the first"
    );
    let changes = diff(store, first.root, second.root).unwrap();
    let files: Vec<(String, ChangeKind)> = changes
        .iter()
        .filter(|c| !matches!(&c.kind, ChangeKind::Changed { .. }) || c.path.ends_with(".txt"))
        .map(|c| (c.path.clone(), c.kind.clone()))
        .collect();
    assert_eq!(files.len(), 3, "{changes:?}");
    assert_eq!(files[0].0, "/a/b/c/d/e/deep.txt");
    let ChangeKind::Changed { what } = &files[0].1 else {
        panic!("{changes:?}")
    };
    assert!(
        what.contains(&What::Size) && what.contains(&What::Content),
        "{what:?}"
    );
    assert_eq!(files[1], ("/new.txt".to_string(), ChangeKind::Added));
    assert_eq!(files[2], ("/old.txt".to_string(), ChangeKind::Removed));
    // Any other change is a directory above a change (its mtime moved).
    for c in &changes {
        if !files.iter().any(|f| f.0 == c.path) {
            assert!(
                c.path == "/a/b/c/d/e" || c.path.starts_with("/a"),
                "unexpected change {c:?}"
            );
        }
    }

    let c1 = Catalog::open(store, first.root).unwrap();
    let c2 = Catalog::open(store, second.root).unwrap();
    let rps = [
        RestorePointRef {
            id: "monday".into(),
            time: Time { secs: 1, nanos: 0 },
            vm_name: "vm1".into(),
            catalog: &c1,
        },
        RestorePointRef {
            id: "tuesday".into(),
            time: Time { secs: 2, nanos: 0 },
            vm_name: "vm1".into(),
            catalog: &c2,
        },
    ];
    let v = find_versions(&rps, &Glob::new("/a/b/c/d/e/*").unwrap(), None, None).unwrap();
    let got: Vec<(&str, u64, Vec<&str>)> = v
        .iter()
        .map(|v| {
            (
                v.path.as_str(),
                v.size,
                v.restore_points.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("/a/b/c/d/e/deep.txt", 17, vec!["monday"]),
            ("/a/b/c/d/e/deep.txt", 33, vec!["tuesday"]),
            ("/a/b/c/d/e/keep.txt", 9000, vec!["monday", "tuesday"]),
        ]
    );
    let v = find_versions(&rps, &Glob::new("*.txt").unwrap(), None, None).unwrap();
    let by_path = |p: &str| {
        v.iter()
            .filter(|x| x.path == p)
            .map(|x| x.restore_points.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(by_path("/new.txt"), vec![vec!["tuesday".to_string()]]);
    assert_eq!(by_path("/old.txt"), vec![vec!["monday".to_string()]]);
    assert_eq!(
        by_path("/proj07/src/file2.txt"),
        vec![vec!["monday".to_string(), "tuesday".to_string()]]
    );
    let hits = c2.find(&Glob::new("deep.txt").unwrap()).unwrap();
    assert_eq!(hits.len(), 1);
    let json = serde_json::to_value(hits[0].1.to_json(&hits[0].0)).unwrap();
    assert_eq!(json["path"], "/a/b/c/d/e/deep.txt");
    assert_eq!(json["type"], "file");
    assert_eq!(json["size"], 33);
    assert!(json["mtime"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn ext4_catalog() {
    if !have("mke2fs") || !have("debugfs") || !have("fls") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let img = tmp.path().join("ext4.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("8M"));
    let store = MemStore::new();
    let opts = excludes(false);
    let first = build_volume_catalog(&open_fs(&img), &store, &opts).unwrap();
    let bytes_first = store.new_bytes();
    assert_eq!(first.stats.files, 89);
    check_against_source(&img, &store, &first, &src, 0, &["/lost+found"]);
    check_exclusions(&store, &first);
    // Building again from the unchanged volume stores nothing new and gives the same root.
    let again = build_volume_catalog(&open_fs(&img), &store, &opts).unwrap();
    assert_eq!(again.root, first.root);
    assert_eq!(store.new_bytes(), bytes_first);

    // Next day: rewrite the deep file, delete one, add one, in place (other blocks stay).
    let new_deep = tmp.path().join("deep2");
    std::fs::write(&new_deep, b"deep version two, a bit longer.\n\n").unwrap();
    let new_file = tmp.path().join("new");
    std::fs::write(&new_file, b"brand new\n").unwrap();
    let script = format!(
        "rm /a/b/c/d/e/deep.txt\ncd /a/b/c/d/e\nwrite {} deep.txt\ncd /\nrm /old.txt\nwrite {} new.txt\n",
        new_deep.display(),
        new_file.display()
    );
    let script_path = tmp.path().join("cmds");
    std::fs::write(&script_path, script).unwrap();
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(&img));
    let second = build_volume_catalog(&open_fs(&img), &store, &opts).unwrap();
    let bytes_second = store.new_bytes() - bytes_first;
    check_second(&store, &first, &second, bytes_first, bytes_second);
}

#[test]
fn fat32_catalog() {
    if !have("mkfs.fat") || !have("mcopy") || !have("mdel") || !have("fls") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src);
    let img = tmp.path().join("fat32.img");
    run(Command::new("mkfs.fat")
        .args(["-C", "-F", "32", "-s", "1", "--invariant", "-i", "12345678"])
        .arg(&img)
        .arg("40000"));
    let mut mcopy = Command::new("mcopy");
    mcopy.args(["-s", "-p", "-m", "-i"]).arg(&img);
    for e in std::fs::read_dir(&src).unwrap() {
        mcopy.arg(e.unwrap().path());
    }
    run(mcopy.arg("::/"));
    let store = MemStore::new();
    let opts = excludes(true);
    let first = build_volume_catalog(&open_fs(&img), &store, &opts).unwrap();
    let bytes_first = store.new_bytes();
    // FAT keeps mtimes to 2 s.
    check_against_source(&img, &store, &first, &src, 2, &[]);
    check_exclusions(&store, &first);

    let new_deep = tmp.path().join("deep.txt");
    std::fs::write(&new_deep, b"deep version two, a bit longer.\n\n").unwrap();
    let new_file = tmp.path().join("new.txt");
    std::fs::write(&new_file, b"brand new\n").unwrap();
    run(Command::new("mcopy")
        .args(["-o", "-i"])
        .arg(&img)
        .arg(&new_deep)
        .arg("::/a/b/c/d/e/deep.txt"));
    run(Command::new("mcopy")
        .arg("-i")
        .arg(&img)
        .arg(&new_file)
        .arg("::/new.txt"));
    run(Command::new("mdel").arg("-i").arg(&img).arg("::/old.txt"));
    let second = build_volume_catalog(&open_fs(&img), &store, &opts).unwrap();
    let bytes_second = store.new_bytes() - bytes_first;
    check_second(&store, &first, &second, bytes_first, bytes_second);
}

#[test]
fn ntfs_catalog_dedups_security_descriptors() {
    if !have("mkntfs") || !have("ntfscp") || !have("fls") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("ntfs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    run(Command::new("mkntfs")
        .args(["-q", "-F", "-Q", "-T", "-c", "4096"])
        .arg(&img));
    let mut sources = BTreeMap::new();
    for i in 0..6u32 {
        let name = format!("file{i}.bin");
        let bytes = pattern(100 + i, 3000 + 5000 * i as usize);
        let p = tmp.path().join(&name);
        std::fs::write(&p, &bytes).unwrap();
        run(Command::new("ntfscp")
            .arg("-q")
            .arg(&img)
            .arg(&p)
            .arg(format!("/{name}")));
        sources.insert(format!("/{name}"), bytes);
    }
    let ads = tmp.path().join("ads");
    std::fs::write(&ads, b"stream via ntfscp -N\n").unwrap();
    run(Command::new("ntfscp")
        .args(["-q", "-N", "ads1"])
        .arg(&img)
        .arg(&ads)
        .arg("/file1.bin"));

    let store = MemStore::new();
    let cat = build_volume_catalog(&open_fs(&img), &store, &CatalogOptions::default()).unwrap();
    let entries = all_entries(&store, cat.root);
    // fls lists named streams as `path:stream`; the catalog keeps them in `streams`.
    let fls: BTreeSet<String> = fls_paths(&img)
        .into_iter()
        .filter(|p| !p.contains(':'))
        .collect();
    let ours: BTreeSet<String> = entries
        .keys()
        .filter(|p| !p.rsplit('/').next().unwrap().starts_with('$'))
        .cloned()
        .collect();
    assert_eq!(ours, fls);
    let vol = FileReader::open(&img).unwrap();
    for (path, bytes) in &sources {
        let e = &entries[path];
        assert_eq!(e.size, bytes.len() as u64);
        if let Some(got) = read_extents(&vol, e) {
            assert_eq!(sha(&got), sha(bytes), "{path}");
        }
    }
    let f1 = &entries["/file1.bin"];
    assert_eq!(f1.streams.len(), 1);
    assert_eq!(
        (f1.streams[0].name.as_str(), f1.streams[0].size),
        ("ads1", 21)
    );

    // Security descriptors: every file has one, the table holds each distinct SD once.
    let sd_id = cat.sd_table.expect("NTFS has security descriptors");
    let table = decode_sd_table(&store.get(&sd_id).unwrap()).unwrap();
    let with_sd: Vec<u32> = entries.values().filter_map(|e| e.sd).collect();
    assert!(with_sd.len() >= sources.len());
    assert!(table.descriptors.len() < with_sd.len(), "SDs not shared");
    let distinct: BTreeSet<&Vec<u8>> = table.descriptors.iter().map(|s| &s.0).collect();
    assert_eq!(distinct.len(), table.descriptors.len());
    let reader = Catalog::open(&store, cat.root)
        .unwrap()
        .with_sd_table(cat.sd_table);
    let sd = reader.security_descriptor(f1.sd.unwrap()).unwrap().unwrap();
    assert_eq!(sd[0], 1, "self-relative SD revision 1");

    // The next build on top of this table reuses its indices: same root, same table.
    let mut opts = CatalogOptions::default();
    opts.base_sd_table = cat.sd_table;
    let again = build_volume_catalog(&open_fs(&img), &store, &opts).unwrap();
    assert_eq!((again.root, again.sd_table), (cat.root, cat.sd_table));
}

#[test]
fn case_insensitivity_follows_the_file_system() {
    if !have("mkfs.fat") || !have("mke2fs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fat = tmp.path().join("fat.img");
    run(Command::new("mkfs.fat")
        .args(["-C", "-F", "12"])
        .arg(&fat)
        .arg("1024"));
    assert!(CatalogOptions::case_insensitive(&open_fs(&fat)));
    let ext = tmp.path().join("ext.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&ext)
        .arg("4M"));
    assert!(!CatalogOptions::case_insensitive(&open_fs(&ext)));
}
