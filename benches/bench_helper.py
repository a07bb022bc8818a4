#!/usr/bin/env python3
"""Input generators for benches/*.sh (deterministic: fixed seeds, fixed times).

  vm-tree ROOT BUDGET_MIB       a guest-like tree: part of /usr, random, log and zero files
  mutate RAW PART_OFF TREE FSIMG PERCENT CHANGED.TSV
                                overwrite, in place inside the raw disk, all the blocks
                                of about PERCENT % of the files (their own data blocks,
                                found with debugfs), and write the changed ranges to CHANGED.TSV
  delta NEW_RAW CHANGED.TSV CHILD FMT WORKDIR [GRAIN]
                                write into CHILD (an empty overlay on the day-1 base) only the
                                GRAIN-sized (64 KiB) grains that changed, with qemu-io
                                `write -s FILE OFF LEN` (same method as
                                /work/shared/oracles/make-corpus.sh apply-delta)
  small-tree ROOT COUNT         COUNT small files (0-16 KiB), 100 per folder, 3 folder levels
"""
import os
import random
import subprocess
import sys

EPOCH = 1700000000


def fix_times(root):
    for dp, dns, fns in os.walk(root, topdown=False):
        for n in fns + dns:
            p = os.path.join(dp, n)
            os.utime(p, (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))


def vm_tree(root, budget_mib):
    budget = budget_mib << 20
    rnd = random.Random(1)
    # 45% system files copied from /usr, 25% random (already compressed media, packages),
    # 20% logs (compressible text), 10% zero-filled files (preallocated databases, swap files)
    usr_budget, rand_budget, log_budget = budget * 45 // 100, budget * 25 // 100, budget * 20 // 100
    zero_budget = budget - usr_budget - rand_budget - log_budget
    used = 0
    for top in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib/python3", "/usr/lib/jvm"):
        for dp, dns, fns in os.walk(top):
            dns.sort()
            for n in sorted(fns):
                src = os.path.join(dp, n)
                if os.path.islink(src) or not os.path.isfile(src):
                    continue
                size = os.path.getsize(src)
                if used + size > usr_budget or size > 64 << 20:
                    continue
                dst = os.path.join(root, "usr", os.path.relpath(src, "/usr"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                try:
                    with open(src, "rb") as f, open(dst, "wb") as g:
                        g.write(f.read())
                except OSError:
                    continue
                used += size
    os.makedirs(f"{root}/srv/data", exist_ok=True)
    left, i = rand_budget, 0
    while left > 0:
        n = min(left, rnd.choice([4096, 65536, 300_000, 1 << 20, 8 << 20, 32 << 20]))
        with open(f"{root}/srv/data/blob{i:05d}.bin", "wb") as f:
            f.write(rnd.randbytes(n))
        left -= n
        i += 1
    os.makedirs(f"{root}/var/log/app", exist_ok=True)
    left, i = log_budget, 0
    words = b"GET POST /api/v1/items /login 200 404 500 user=alice user=bob latency_ms= ok error retry".split()
    while left > 0:
        n = min(left, rnd.choice([20_000, 500_000, 4 << 20, 16 << 20]))
        lines, total = [], 0
        while total < n:
            line = b"2026-11-%02d %02d:%02d:%02d host%d %s %s %d\n" % (
                rnd.randint(1, 30), rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59),
                rnd.randint(1, 9), rnd.choice(words), rnd.choice(words), rnd.randint(0, 99999))
            lines.append(line)
            total += len(line)
        with open(f"{root}/var/log/app/app{i:04d}.log", "wb") as f:
            f.write(b"".join(lines)[:n])
        left -= n
        i += 1
    os.makedirs(f"{root}/var/lib/db", exist_ok=True)
    left, i = zero_budget, 0
    while left > 0:
        n = min(left, 64 << 20)
        with open(f"{root}/var/lib/db/prealloc{i:03d}.dat", "wb") as f:
            f.write(bytes(n))   # written zeros, not holes: mke2fs -d stores the blocks
        left -= n
        i += 1
    fix_times(root)


def mutate(raw, part_off, tree, fsimg, percent, changed_tsv, block=4096):
    """Overwrite in place, inside the raw disk, every data block of about PERCENT % of
    the regular files of TREE (blocks found with debugfs on FSIMG, the
    day-1 file system that sits at PART_OFF in RAW)."""
    part_off, percent, block = int(part_off), float(percent), int(block)
    rnd = random.Random(2)
    files = []
    for dp, dns, fns in os.walk(tree):
        dns.sort()
        for n in sorted(fns):
            p = os.path.join(dp, n)
            if not os.path.islink(p) and os.path.getsize(p) > 0:
                files.append("/" + os.path.relpath(p, tree))
    chosen = rnd.sample(files, max(1, int(len(files) * percent / 100)))
    cmds = os.path.join(os.path.dirname(changed_tsv), "debugfs.cmds")
    with open(cmds, "w") as f:
        for p in chosen:
            f.write(f'blocks "{p}"\n')
    out = subprocess.run(["debugfs", "-f", cmds, fsimg], check=True, capture_output=True,
                         text=True).stdout
    lists = [[int(b) for b in line.split()] for line in out.splitlines()
             if line and not line.startswith("debugfs")]
    ranges = set()
    with open(raw, "r+b") as f:
        for bl in lists:
            if not bl:
                continue
            for b in bl:   # the whole file is rewritten in place (same blocks)
                off = part_off + b * block
                f.seek(off)
                f.write(rnd.randbytes(block))
                ranges.add(off)
    with open(changed_tsv, "w") as g:
        for off in sorted(ranges):
            g.write(f"{off}\t{block}\n")
    print(f"mutate: {len(chosen)} of {len(files)} files, {len(ranges)} blocks "
          f"({len(ranges) * block >> 20} MiB) rewritten in place")


def delta(new_raw, changed_tsv, child, fmt, workdir, grain=65536):
    grain = int(grain)
    grains = set()
    with open(changed_tsv) as f:
        for line in f:
            off, n = map(int, line.split("\t"))
            for g in range(off // grain, (off + n - 1) // grain + 1):
                grains.add(g)
    runs = []   # (first grain, count)
    for g in sorted(grains):
        if runs and runs[-1][0] + runs[-1][1] == g:
            runs[-1][1] += 1
        else:
            runs.append([g, 1])
    total = 0
    with open(new_raw, "rb") as src:
        for batch in range(0, len(runs), 500):
            args, files = ["qemu-io", "-f", fmt], []
            for i, (g, n) in enumerate(runs[batch:batch + 500]):
                src.seek(g * grain)
                data = src.read(n * grain)
                fn = os.path.join(workdir, f"grain{i}.bin")
                with open(fn, "wb") as out:
                    out.write(data)
                files.append(fn)
                args += ["-c", f"write -q -s {fn} {g * grain} {len(data)}"]
                total += len(data)
            subprocess.run(args + [child], check=True)
            for fn in files:
                os.unlink(fn)
    print(f"delta: {len(runs)} runs, {len(grains)} grains of {grain >> 10} KiB, "
          f"{total >> 20} MiB into {os.path.basename(child)}")


def small_tree(root, count):
    count = int(count)
    rnd = random.Random(3)
    text = b"small file payload line, repeated to look like a config or source file\n" * 256
    for i in range(count):
        # 100 files per leaf folder, 10 x 10 leaves per top folder
        d = f"{root}/d{i // 10000}/e{(i // 1000) % 10}/f{(i // 100) % 10}"
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        n = rnd.choice([0, 100, 700, 1500, 3000, 5000, 9000, 16000])
        with open(f"{d}/file{i:06d}.txt", "wb") as f:
            f.write(text[:n] if i % 3 else rnd.randbytes(n))
    fix_times(root)


if __name__ == "__main__":
    cmd, *a = sys.argv[1:]
    {"vm-tree": lambda: vm_tree(a[0], int(a[1])),
     "mutate": lambda: mutate(*a),
     "delta": lambda: delta(*a),
     "small-tree": lambda: small_tree(*a)}[cmd]()
