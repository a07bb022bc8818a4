#!/usr/bin/env bash
# Walking and reading a many-file guest volume: cairn vs The Sleuth Kit.
#   benches/walk.sh [EXT4_FILES] [NTFS_FILES]     (defaults 100000 and 20000; 0 skips NTFS)
# Env: RUNS (default 3: best of 3 for listing), RUNS_EXTRACT (default 1: writing 100k files
#      takes minutes on a loaded box), CAIRN (binary to use instead of building), BENCH_DIR
#      (work folder; default a fresh /var/tmp/cairn-bench-walk.XXXXXX, deleted at exit).
# Inputs: a bare ext4 volume made with `mke2fs -d` from a generated tree of small files
# (0-16 KiB, 3 directory levels), and an NTFS volume made with mkntfs and filled through the
# ntfs-3g FUSE driver (slow to build, hence fewer files; skipped without /dev/fuse or root).
# Compared: `cairn ls IMG -r --json` vs `fls -r -p IMG` (listing, output to /dev/null) and
# `cairn extract IMG / --to DIR` vs `tsk_recover -a IMG DIR` (every file read and written).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ext_files=${1:-100000}
ntfs_files=${2:-20000}
runs=${RUNS:-3}
runs_x=${RUNS_EXTRACT:-1}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/cairn-bench-walk.XXXXXX)}
mkdir -p "$work"
mnt=$work/mnt
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then fusermount -u "$mnt" || umount "$mnt" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cairn=$(cairn_bin)
for t in fls tsk_recover mke2fs; do command -v $t >/dev/null || { echo "missing $t (apt-get install -y sleuthkit e2fsprogs)"; exit 1; }; done
export E2FSPROGS_FAKE_TIME=1700000000
echo "machine: $(machine_line)"
echo "versions: $("$cairn" --version); $(fls -V)"

t0=$SECONDS
python3 benches/bench_helper.py small-tree "$work/tree" "$ext_files"
tree_bytes=$(du -sb "$work/tree" | cut -f1)
truncate -s $(( (tree_bytes * 2 + ext_files * 8192 + (256 << 20)) >> 20 ))M "$work/ext4.img"
mke2fs -q -F -t ext4 -b 4096 -N $((ext_files + 20000)) -E root_owner=0:0 -d "$work/tree" "$work/ext4.img"
echo "ext4 input: $ext_files files, $(mib "$tree_bytes") MiB, image $(mib "$(du -b "$work/ext4.img" | cut -f1)") MiB; built in $((SECONDS - t0)) s"
images=("ext4:$work/ext4.img")

if [ "$ntfs_files" -gt 0 ]; then
  if [ -c /dev/fuse ] && [ "$(id -u)" = 0 ] && command -v mkntfs >/dev/null && command -v ntfs-3g >/dev/null; then
    t0=$SECONDS
    python3 benches/bench_helper.py small-tree "$work/ntree" "$ntfs_files"
    nbytes=$(du -sb "$work/ntree" | cut -f1)
    truncate -s $(( (nbytes * 2 + ntfs_files * 8192 + (256 << 20)) >> 20 ))M "$work/ntfs.img"
    mkntfs -q -F -f "$work/ntfs.img" >/dev/null 2>&1
    mkdir -p "$mnt"
    ntfs-3g -o big_writes "$work/ntfs.img" "$mnt"
    cp -r "$work/ntree/." "$mnt/"
    fusermount -u "$mnt"
    rm -rf "$work/ntree"
    echo "ntfs input: $ntfs_files files, $(mib "$nbytes") MiB (written through ntfs-3g in $((SECONDS - t0)) s)"
    images+=("ntfs:$work/ntfs.img")
  else
    echo "ntfs: skipped (needs root, /dev/fuse, mkntfs and ntfs-3g)"
  fi
fi
rm -rf "$work/tree"
echo

rm_out() { rm -rf "$work/out"; }
echo "| volume | task | tool | wall s (best of $runs listing, $runs_x reading) | CPU s user+sys | peak RSS MiB | load | entries / files |"
echo "|---|---|---|---|---|---|---|---|"
for spec in "${images[@]}"; do
  kind=${spec%%:*}; img=${spec#*:}
  cat "$img" >/dev/null
  best cl "$runs" noop "$cairn" ls "$img" -r --json
  n_c=$(wc -l <"$work/last.out")
  best fl "$runs" noop fls -r -p "$img"
  n_f=$(wc -l <"$work/last.out")
  best ce "$runs_x" rm_out "$cairn" extract "$img" / --to "$work/out"
  f_c=$(find "$work/out" -type f | wc -l)
  best te "$runs_x" rm_out tsk_recover -a "$img" "$work/out"
  f_t=$(find "$work/out" -type f | wc -l)
  rm -rf "$work/out"
  printf '| %s | list all (-r, to /dev/null) | cairn ls --json | %s | %s | %s | %s | %s lines |\n' "$kind" "$cl_wall" "$cl_cpu" "$cl_rss" "$cl_load" "$n_c"
  printf '| %s | list all (-r, to /dev/null) | fls -r -p | %s | %s | %s | %s | %s lines |\n' "$kind" "$fl_wall" "$fl_cpu" "$fl_rss" "$fl_load" "$n_f"
  printf '| %s | list all | **cairn speed-up** | **%sx** | %sx | | | |\n' "$kind" "$(ratio "$fl_wall" "$cl_wall")" "$(ratio "$fl_cpu" "$cl_cpu")"
  printf '| %s | read every file | cairn extract | %s | %s | %s | %s | %s files |\n' "$kind" "$ce_wall" "$ce_cpu" "$ce_rss" "$ce_load" "$f_c"
  printf '| %s | read every file | tsk_recover -a | %s | %s | %s | %s | %s files |\n' "$kind" "$te_wall" "$te_cpu" "$te_rss" "$te_load" "$f_t"
  printf '| %s | read every file | **cairn speed-up** | **%sx** | %sx | | | |\n' "$kind" "$(ratio "$te_wall" "$ce_wall")" "$(ratio "$te_cpu" "$ce_cpu")"
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
