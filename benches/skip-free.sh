#!/usr/bin/env bash
# Free-block skipping: what reading only the blocks the guest file systems use saves, on a
# disk whose file systems are about half free and whose free space holds old data.
#   benches/skip-free.sh [SIZE_GIB]        (default 3)
# Env: RUNS (default 3: best of RUNS per mode, each into a fresh repository), CAIRN (binary
#      to use instead of building), BENCH_DIR (work folder; default a fresh
#      /var/tmp/cairn-bench-skip.XXXXXX, deleted at exit).
#
# Input (built here, deterministic trees, random leftovers): a SIZE GiB raw disk, GPT, with
# ext4 (45%), NTFS (40%) and FAT32 (the rest) partitions. Each partition is first filled
# with random bytes (the "old data" of files deleted long ago), then formatted without
# discarding or zeroing (mke2fs -E nodiscard, mkntfs -Q; mkfs.fat never clears the data
# area), then about half filled with files: 45% random (media, packages), 40% logs, 15%
# written zeros. ext4 is filled by mke2fs -d, NTFS through ntfs-3g (FUSE, needs root), FAT32
# with mtools. The disk is backed up as a raw image (everything is allocated in the image's
# own map, so only the guest file systems can tell what is free), with encryption on:
# `cairn backup` (skipping free blocks, the default) vs `cairn backup --no-skip-free`.
# Reported per mode: bytes read and skipped (from --json), repository size (du -sb), wall
# and CPU seconds (best of RUNS), peak RSS. The skipping repository is then checked with
# `cairn verify --recoverable` (every file of every volume read back through its catalog).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
size_gib=${1:-3}
runs=${RUNS:-3}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/cairn-bench-skip.XXXXXX)}
mkdir -p "$work"
mnt=$work/mnt
ntfs_pid=
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || fusermount -u "$mnt" || true; fi
  if [ -n "$ntfs_pid" ]; then wait "$ntfs_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export PATH="$PATH:/usr/sbin:/sbin"
for t in mke2fs mkntfs ntfs-3g mkfs.fat mcopy sgdisk bc python3; do
  command -v $t >/dev/null || { echo "missing $t (apt-get install -y e2fsprogs ntfs-3g dosfstools mtools gdisk bc)"; exit 1; }
done
[ -e /dev/fuse ] && [ "$(id -u)" = 0 ] || { echo "needs root and /dev/fuse (the NTFS partition is filled through ntfs-3g)"; exit 1; }
cairn=$(cairn_bin)
export CAIRN_PASSWORD=bench-passphrase E2FSPROGS_FAKE_TIME=1700000000 TZ=UTC LC_ALL=C.UTF-8
echo "machine: $(machine_line)"
echo "versions: $("$cairn" --version)"

# ------------------------------------------------------------------ the disk
t0=$SECONDS
size=$((size_gib << 30))
mib_total=$((size >> 20))
ext_mib=$((mib_total * 45 / 100)); ntfs_mib=$((mib_total * 40 / 100))
fat_mib=$((mib_total - 1 - ext_mib - ntfs_mib - 1))   # 1 MiB before (GPT), 1 MiB after (backup GPT)
truncate -s "$size" "$work/disk.raw"
start=2048
args=()
declare -A part_start part_mib
n=1
for spec in "ext4:$ext_mib:8300" "ntfs:$ntfs_mib:0700" "fat32:$fat_mib:0700"; do
  IFS=: read -r fs mib code <<<"$spec"
  end=$((start + (mib << 11) - 1))
  args+=(-n "$n:$start:$end" -t "$n:$code" -c "$n:$fs")
  part_start[$fs]=$start; part_mib[$fs]=$mib
  start=$((end + 1)); n=$((n + 1))
done
sgdisk -o "${args[@]}" "$work/disk.raw" >/dev/null 2>&1   # (-q would write nothing)

# Deterministic trees, one per file system (different seeds: no dedup between partitions).
tree() { # DIR SEED BUDGET_MIB
  python3 - "$@" <<'PY'
import os, random, sys
root, seed, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
rnd = random.Random(seed)
words = b"GET POST /api/v1/items /login 200 404 500 user=alice user=bob latency_ms= ok error retry".split()
def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
for kind, share in (("media", 45), ("logs", 40), ("db", 15)):
    left, i = budget * share // 100, 0
    while left > 0:
        n = min(left, rnd.choice([65536, 300_000, 1 << 20, 8 << 20, 24 << 20]))
        if kind == "media":
            data = rnd.randbytes(n)
        elif kind == "logs":
            lines, total = [], 0
            while total < n:
                line = b"2026-11-%02d %02d:%02d:%02d host%d %s %s %d\n" % (
                    rnd.randint(1, 30), rnd.randint(0, 23), rnd.randint(0, 59), rnd.randint(0, 59),
                    rnd.randint(1, 9), rnd.choice(words), rnd.choice(words), rnd.randint(0, 99999))
                lines.append(line); total += len(line)
            data = b"".join(lines)[:n]
        else:
            data = bytes(n)   # written zeros, not holes
        put(f"{root}/{kind}/d{i % 7}/f{i:05d}.bin", data)
        left -= n; i += 1
for dp, dns, fns in os.walk(root, topdown=False):
    for x in fns + dns:
        os.utime(os.path.join(dp, x), (1700000000, 1700000000))
PY
}
# Old data first: random bytes over the whole partition, then a file system that keeps them.
old_data() { head -c "$(($2 << 20))" /dev/urandom >"$1"; }
half() { echo $(($1 * 48 / 100)); }   # tree budget: a little under half (metadata, slack)

old_data "$work/ext4.img" "$ext_mib"
tree "$work/t-ext4" 1 "$(half "$ext_mib")"
mke2fs -q -F -t ext4 -b 4096 -E nodiscard,root_owner=0:0 -d "$work/t-ext4" "$work/ext4.img"
rm -rf "$work/t-ext4"

old_data "$work/ntfs.img" "$ntfs_mib"
mkntfs -F -Q -q -L skipfree -p "${part_start[ntfs]}" -H 255 -S 63 "$work/ntfs.img" >/dev/null 2>&1
tree "$work/t-ntfs" 2 "$(half "$ntfs_mib")"
mkdir -p "$mnt"
ntfs-3g -o no_detach "$work/ntfs.img" "$mnt" >/dev/null 2>&1 & ntfs_pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
mountpoint -q "$mnt" || { echo "ntfs-3g mount failed"; exit 1; }
cp -r "$work/t-ntfs/." "$mnt/"
umount "$mnt"; wait "$ntfs_pid"; ntfs_pid=   # the driver has written everything when it exits
rm -rf "$work/t-ntfs"

old_data "$work/fat32.img" "$fat_mib"
mkfs.fat -F 32 -n SKIPFREE -h "${part_start[fat32]}" "$work/fat32.img" >/dev/null
tree "$work/t-fat" 3 "$(half "$fat_mib")"
mcopy -s -i "$work/fat32.img" "$work/t-fat"/* ::/
rm -rf "$work/t-fat"

for fs in ext4 ntfs fat32; do
  dd if="$work/$fs.img" of="$work/disk.raw" bs=1M seek=$((part_start[$fs] >> 11)) conv=notrunc status=none
  rm -f "$work/$fs.img"
done
echo "input: ${size_gib} GiB raw disk (ext4 ${ext_mib} MiB, NTFS ${ntfs_mib} MiB, FAT32 ${fat_mib} MiB), built in $((SECONDS - t0)) s"
"$cairn" df "$work/disk.raw" | sed 's/^/  /'

# ------------------------------------------------------------------ runs
prime() { rm -rf "$work/repo"; "$cairn" init --repo "$work/repo" >/dev/null 2>&1; cat "$work/disk.raw" >/dev/null; }
declare -A read skipped stored repo
for mode in skip noskip; do
  extra=(); [ $mode = noskip ] && extra=(--no-skip-free)
  best "$mode" "$runs" prime "$cairn" backup --repo "$work/repo" "$work/disk.raw" --name vm --json "${extra[@]}"
  j=$(cat "$work/last.out")
  read[$mode]=$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_read"])')
  skipped[$mode]=$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_skipped"])')
  stored[$mode]=$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_stored"])')
  repo[$mode]=$(du -sb "$work/repo" | cut -f1)
  if [ $mode = skip ]; then
    "$cairn" verify --repo "$work/repo" --recoverable latest >"$work/verify.txt" 2>&1 \
      && verified="verify --recoverable: all volumes recoverable" \
      || verified="**verify --recoverable FAILED**: $(tr '\n' ' ' <"$work/verify.txt")"
    sed 's/^/  /' "$work/verify.txt"
  fi
done

echo
echo "| backup (raw, aes-256-gcm) | read MiB | skipped MiB | stored MiB | repository MiB (du -sb) | wall s | CPU s | peak RSS MiB | load (1 min) |"
echo "|---|---|---|---|---|---|---|---|---|"
for mode in skip noskip; do
  w=${mode}_wall c=${mode}_cpu r=${mode}_rss l=${mode}_load
  label="skipping free blocks (default)"; [ $mode = noskip ] && label="--no-skip-free"
  echo "| $label | $(mib "${read[$mode]}") | $(mib "${skipped[$mode]}") | $(mib "${stored[$mode]}") | $(mib "${repo[$mode]}") | ${!w} | ${!c} | ${!r} | ${!l} |"
done
echo
echo "skipping: repository $(ratio "${repo[noskip]}" "${repo[skip]}")x smaller, $(ratio "$noskip_wall" "$skip_wall")x less wall, $(ratio "$noskip_cpu" "$skip_cpu")x less CPU; $verified"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
