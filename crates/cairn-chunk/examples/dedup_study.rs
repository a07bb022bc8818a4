//! Dedup study on two generated disk images ("day 1" and "day 2").
//!
//! A guest file system is simulated: files of mixed sizes (text-like and random) laid out on
//! 4 KiB blocks with free space between them. Day 2 rewrites blocks of 3% of the files in
//! place, grows a few files into free blocks and writes a few new files, as a guest does;
//! nothing shifts. For each chunker the study prints the bytes of day-2 chunks absent from
//! day 1 (what an incremental backup must store) and the number of chunks (index entries).
//!
//! Run: `cargo run --release -p cairn-chunk --example dedup_study [image MiB]`

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};

use cairn_chunk::{Chunker, ChunkerParams};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const BLOCK: usize = 4096;

struct File {
    start_block: usize,
    blocks: usize,
    text: bool,
}

fn fill(buf: &mut [u8], rng: &mut Rng, text: bool) {
    const WORDS: [&[u8]; 8] = [
        b"kernel ", b"backup ", b"error ", b"disk ", b"0x7f3a ", b"INFO ", b"user=", b"\n",
    ];
    if text {
        let mut i = 0;
        while i < buf.len() {
            let w = WORDS[usize::try_from(rng.below(8)).unwrap_or(0)];
            let n = w.len().min(buf.len() - i);
            buf[i..i + n].copy_from_slice(&w[..n]);
            i += n;
        }
    } else {
        for c in buf.chunks_mut(8) {
            let r = rng.next().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
    }
}

fn day1(size: usize, rng: &mut Rng) -> (Vec<u8>, Vec<File>, Vec<bool>) {
    let nblocks = size / BLOCK;
    let mut img = vec![0u8; size];
    let mut used = vec![false; nblocks];
    let mut files = Vec::new();
    let mut b = 0;
    while b < nblocks {
        b += usize::try_from(rng.below(16)).unwrap_or(0); // free gap
        let len = {
            let cap = if rng.below(10) == 0 { 1024 } else { 32 };
            1 + usize::try_from(rng.below(cap)).unwrap_or(0)
        };
        if b + len > nblocks * 3 / 4 {
            break; // leave a quarter free
        }
        let text = rng.below(2) == 0;
        fill(&mut img[b * BLOCK..(b + len) * BLOCK], rng, text);
        used[b..b + len].iter_mut().for_each(|u| *u = true);
        files.push(File {
            start_block: b,
            blocks: len,
            text,
        });
        b += len;
    }
    (img, files, used)
}

fn day2(mut img: Vec<u8>, files: &[File], used: &mut [bool], rng: &mut Rng) -> Vec<u8> {
    for f in files {
        if rng.below(100) < 3 {
            // Rewrite a few blocks of the file in place.
            let n = 1 + usize::try_from(rng.below(f.blocks as u64).min(8)).unwrap_or(0);
            for _ in 0..n {
                let blk = f.start_block + usize::try_from(rng.below(f.blocks as u64)).unwrap_or(0);
                fill(&mut img[blk * BLOCK..(blk + 1) * BLOCK], rng, f.text);
            }
        }
    }
    // A few new files in free blocks.
    let nblocks = used.len();
    for _ in 0..20 {
        let start = usize::try_from(rng.below(nblocks as u64)).unwrap_or(0);
        let len = 1 + usize::try_from(rng.below(16)).unwrap_or(0);
        if start + len <= nblocks && used[start..start + len].iter().all(|u| !u) {
            fill(&mut img[start * BLOCK..(start + len) * BLOCK], rng, true);
            used[start..start + len].iter_mut().for_each(|u| *u = true);
        }
    }
    img
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let size = mib << 20;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (img1, files, mut used) = day1(size, &mut rng);
    let img2 = day2(img1.clone(), &files, &mut used, &mut rng);
    println!("image {mib} MiB, {} files", files.len());
    println!(
        "{:<24} {:>14} {:>12}",
        "chunker", "day-2 new MiB", "chunks/GiB"
    );
    let mut params = vec![];
    for kib in [64u32, 256, 1024, 4096] {
        params.push(ChunkerParams::Fixed { size: kib << 10 });
    }
    for kib in [64u32, 256, 1024] {
        params.push(ChunkerParams::FastCdc {
            min: (kib << 10) / 4,
            avg: kib << 10,
            max: (kib << 10) * 4,
        });
    }
    for p in params {
        let c = Chunker::new(p).expect("valid parameters");
        let h = |d: &[u8]| {
            let mut b = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
            b.write(d);
            (b.finish(), d.len())
        };
        let span = |img: &[u8], s: &cairn_chunk::Span| {
            let o = usize::try_from(s.offset).unwrap_or(0);
            img[o..o + s.len].to_vec()
        };
        let s1 = c.split(0, &img1);
        let seen: HashSet<(u64, usize)> = s1.iter().map(|s| h(&span(&img1, s))).collect();
        let s2 = c.split(0, &img2);
        let new: usize = s2
            .iter()
            .filter(|s| !seen.contains(&h(&span(&img2, s))))
            .map(|s| s.len)
            .sum();
        let per_gib = s2.len() as f64 * (1024.0 / mib as f64);
        println!(
            "{:<24} {:>14.1} {:>12.0}",
            format!("{p:?}").replace("ChunkerParams::", ""),
            new as f64 / (1 << 20) as f64,
            per_gib
        );
    }
}
