#!/usr/bin/env bash
# cairn vs restic vs borg on one VM disk image, encryption and compression on for all three.
#   benches/backup-peers.sh [SIZE_GIB]        (default 2; PERF-NOTES used 4)
# Env: CAIRN (binary to use instead of building), BENCH_DIR (work folder; default a fresh
#      /var/tmp/cairn-bench-peers.XXXXXX, deleted at exit; a BENCH_DIR you name is kept, and
#      its input disks are reused when they are already there), CAIRN_RAW=0 to skip the extra
#      cairn run on the flattened raw images, INPUT_ONLY=1 to stop once the input is built.
#
# Input (built here, deterministic): a SIZE GiB raw disk, GPT, one ext4 partition made with
# `mke2fs -d` from a tree of part of /usr + random + log + zero files filling ~60% of it,
# plus 256 MiB of "deleted leftovers" (random bytes in free space). The "next day" rewrites
# in place (same blocks, new random bytes) 3% of the files, picked uniformly. Day 1 is also
# a monolithicSparse VMDK (base.vmdk); day 2 is a VMDK child (child.vmdk) holding only the
# changed 64 KiB grains, written with qemu-io. cairn backs up base.vmdk then child.vmdk (it
# reads only the child's grains); restic and borg back up the flattened raw image (disk.raw,
# same path both days) and must re-read all of it. Restore = the day-2 disk, written as a raw file.
# RUNS=N (default 1) repeats the whole sequence (fresh repositories) and keeps the best of N
# per figure (a sequence of all three tools is ~3-5 min on 2 loaded cores); the load average
# is printed with every row: trust CPU seconds more than wall seconds.
# "durable s" = the command's wall time + a `sync` run right after it: cairn fsyncs its packs,
# index, manifest and restored disk before it returns; restic and borg return with their data
# still dirty in the page cache, so wall seconds alone flatter them. Restore runs twice for
# cairn: as it ships (durable) and with --no-fsync (page cache only, like the peers), so each
# comparison can be made like for like.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
size_gib=${1:-2}
if [ -n "${BENCH_DIR:-}" ]; then
  work=$BENCH_DIR
else
  work=$(mktemp -d /var/tmp/cairn-bench-peers.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
cairn=$(cairn_bin)
for t in restic borg qemu-img qemu-io mke2fs debugfs sgdisk; do
  command -v $t >/dev/null || { echo "missing $t (apt-get install -y restic borgbackup qemu-utils e2fsprogs gdisk)"; exit 1; }
done
export CAIRN_PASSWORD=bench-passphrase RESTIC_PASSWORD=bench-passphrase BORG_PASSPHRASE=bench-passphrase
export RESTIC_CACHE_DIR=$work/restic-cache BORG_BASE_DIR=$work/borg-home
export E2FSPROGS_FAKE_TIME=1700000000
echo "machine: $(machine_line)"
echo "versions: $("$cairn" --version); $(restic version | cut -d' ' -f1-2); $(borg --version)"

# ------------------------------------------------------------------ the day-1 and day-2 disks
t0=$SECONDS
size=$((size_gib << 30))
part_off=$((1 << 20))
fs_size=$((size - part_off - (1 << 20)))     # leave room for the backup GPT
left_off=$((part_off + (((fs_size >> 20) - 300) << 20))) left_len=$((256 << 20))
if [ -f "$work/input-done" ] && [ "$(cat "$work/input-done")" = "$size_gib" ]; then
  echo "reusing the input in $work"
else
  mkdir -p "$work/tree" "$work/vm"
  python3 benches/bench_helper.py vm-tree "$work/tree" $((size_gib * 1024 * 60 / 100 - 256))
  # Deleted leftovers: random bytes at the end of the partition, in blocks mke2fs leaves free
  # (-E nodiscard keeps them).
  truncate -s "$fs_size" "$work/fs.img"
  head -c 256M /dev/urandom | dd of="$work/fs.img" bs=1M seek=$(((fs_size >> 20) - 300)) conv=notrunc status=none
  mke2fs -q -F -t ext4 -b 4096 -U 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 \
    -E nodiscard,root_owner=0:0 -d "$work/tree" "$work/fs.img"
  truncate -s "$size" "$work/day1.raw"
  sgdisk -o -n 1:2048:$(((part_off + fs_size) / 512 - 1)) -t 1:8300 "$work/day1.raw" >/dev/null 2>&1  # (-q writes nothing)
  dd if="$work/fs.img" of="$work/day1.raw" bs=1M seek=$((part_off >> 20)) conv=notrunc,sparse status=none
  du -sb "$work/tree" | cut -f1 >"$work/used-bytes"
  cp --sparse=always "$work/day1.raw" "$work/day2.raw"
  python3 benches/bench_helper.py mutate "$work/day2.raw" "$part_off" "$work/tree" "$work/fs.img" 3 "$work/changed.tsv"
  rm -rf "$work/tree" "$work/fs.img"
  qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$work/day1.raw" "$work/vm/base.vmdk"
  qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$work/vm/child.vmdk"
  python3 benches/bench_helper.py delta "$work/day2.raw" "$work/changed.tsv" "$work/vm/child.vmdk" vmdk "$work"
  "$cairn" inspect "$work/day1.raw" | grep -q "partition table: *gpt" || { echo "no GPT in day1.raw"; "$cairn" inspect "$work/day1.raw"; exit 1; }
  qemu-img compare -q "$work/vm/child.vmdk" "$work/day2.raw" || { echo "child.vmdk != day2.raw"; exit 1; }
  echo "$size_gib" >"$work/input-done"
fi
used=$(cat "$work/used-bytes")
echo "input: ${size_gib} GiB disk, $(mib "$used") MiB of files + 256 MiB leftovers; base.vmdk $(mib "$(du -b "$work/vm/base.vmdk" | cut -f1)") MiB, child.vmdk $(mib "$(du -b "$work/vm/child.vmdk" | cut -f1)") MiB; built in $((SECONDS - t0)) s"
[ "${INPUT_ONLY:-0}" = 1 ] && exit 0

# ------------------------------------------------------------------ runs
rows=()
row() { # tool step var [extra]
  local w=${3}_wall c=${3}_cpu r=${3}_rss l=${3}_load
  local d=${3}_dur
  rows+=("| $1 | $2 | ${!w} | ${!d} | ${!c} | ${!r} | ${!l} | ${4:-} |")
}
raw_day() { # put day N's flattened image at the fixed path vm/disk.raw
  rm -f "$work/vm/disk.raw"; cp --sparse=always "$work/day$1.raw" "$work/vm/disk.raw"; cat "$work/vm/disk.raw" >/dev/null
}
check_restore() { # file -> "equal" or "DIFFERENT"
  cmp -s "$1" "$work/day2.raw" && echo "restored disk equals day 2" || echo "**restored disk DIFFERS**"
}
# cairn skips free guest blocks by design: compare everything except the leftovers' range
# (which must then be the only difference), and say how much of it came back as zeros.
check_restore_skip() {
  local end=$((left_off + left_len))
  if cmp -s -n "$left_off" "$1" "$work/day2.raw" && cmp -s -i "$end" "$1" "$work/day2.raw"; then
    if cmp -s -i "$left_off" -n "$left_len" "$1" /dev/zero; then
      echo "equals day 2 outside the 256 MiB of free-block leftovers (restored as zeros)"
    else
      echo "equals day 2 outside the free-block leftovers"
    fi
  else
    echo "**restored disk DIFFERS from day 2 outside the free-block leftovers**"
  fi
}
declare -A size1 size2
# keep_diff OLD NEW -> NEW unless OLD already reports a difference (a difference in any run
# stays in the table)
keep_diff() { case $1 in *DIFFER*) echo "$1" ;; *) echo "$2" ;; esac; }
runs=${RUNS:-1}
for ((run = 1; run <= runs; run++)); do
  echo "run $run of $runs, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  rm -rf "$work/r-cairn" "$work/r-cairn-raw" "$work/r-restic" "$work/r-borg" "$RESTIC_CACHE_DIR" "$BORG_BASE_DIR"

  # cairn, VMDK base then delta child
  "$cairn" init --repo "$work/r-cairn" --encryption aes-256-gcm >/dev/null
  cat "$work/vm/base.vmdk" >/dev/null
  measure_best cf "$cairn" backup --repo "$work/r-cairn" "$work/vm/base.vmdk" --name vm --json
  cf_json=$(cat "$work/last.out"); size1[cairn]=$(du -sb "$work/r-cairn" | cut -f1)
  cat "$work/vm/child.vmdk" >/dev/null
  measure_best cn "$cairn" backup --repo "$work/r-cairn" "$work/vm/child.vmdk" --name vm --json
  cn_json=$(cat "$work/last.out"); size2[cairn]=$(du -sb "$work/r-cairn" | cut -f1)
  rm -f "$work/out.raw"
  measure_best cr "$cairn" restore --repo "$work/r-cairn" latest --to "$work/out.raw"
  cr_eq=$(keep_diff "${cr_eq:-}" "$(check_restore_skip "$work/out.raw")"); rm -f "$work/out.raw"
  # The same restore returning once the data is in the page cache, as the peers do.
  measure_best cq "$cairn" restore --repo "$work/r-cairn" latest --to "$work/out.raw" --no-fsync
  cq_eq=$(keep_diff "${cq_eq:-}" "$(check_restore_skip "$work/out.raw")"); rm -f "$work/out.raw"

  if [ "${CAIRN_RAW:-1}" = 1 ]; then   # same tool on the flattened raw images, like the peers
    "$cairn" init --repo "$work/r-cairn-raw" --encryption aes-256-gcm >/dev/null
    raw_day 1
    measure_best xf "$cairn" backup --repo "$work/r-cairn-raw" "$work/vm/disk.raw" --name vm --json
    size1[cairn-raw]=$(du -sb "$work/r-cairn-raw" | cut -f1)
    raw_day 2
    measure_best xn "$cairn" backup --repo "$work/r-cairn-raw" "$work/vm/disk.raw" --name vm --json
    size2[cairn-raw]=$(du -sb "$work/r-cairn-raw" | cut -f1)
    rm -rf "$work/r-cairn-raw"
  fi

  # restic (repository format 2: compression auto, AES-256-CTR + Poly1305)
  restic init -q -r "$work/r-restic" --repository-version 2 >/dev/null
  raw_day 1
  measure_best rf restic -q -r "$work/r-restic" backup "$work/vm/disk.raw"
  size1[restic]=$(du -sb "$work/r-restic" | cut -f1)
  raw_day 2
  measure_best rn restic -q -r "$work/r-restic" backup "$work/vm/disk.raw"
  size2[restic]=$(du -sb "$work/r-restic" | cut -f1)
  rm -rf "$work/restore"; mkdir -p "$work/restore"
  measure_best rr restic -q -r "$work/r-restic" restore latest --target "$work/restore"
  rr_eq=$(keep_diff "${rr_eq:-}" "$(check_restore "$work/restore$work/vm/disk.raw")"); rm -rf "$work/restore" "$work/r-restic" "$RESTIC_CACHE_DIR"

  # borg (repokey: AES-256-CTR + HMAC-SHA256; lz4)
  borg init -e repokey "$work/r-borg" 2>/dev/null
  raw_day 1
  measure_best bf borg create --compression lz4 "$work/r-borg::day1" "$work/vm/disk.raw"
  size1[borg]=$(du -sb "$work/r-borg" | cut -f1)
  raw_day 2
  measure_best bn borg create --compression lz4 "$work/r-borg::day2" "$work/vm/disk.raw"
  size2[borg]=$(du -sb "$work/r-borg" | cut -f1)
  rm -rf "$work/restore"; mkdir -p "$work/restore"
  measure_best br bash -c 'cd "$1/restore" && borg extract "$1/r-borg::day2"' _ "$work"
  br_eq=$(keep_diff "${br_eq:-}" "$(check_restore "$work/restore$work/vm/disk.raw")"); rm -rf "$work/restore" "$work/r-borg"
done

row "cairn (vmdk + delta child)" "full backup" cf "$(echo "$cf_json" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("read %d MiB, skipped %d MiB, stored %d MiB" % (j["bytes_read"]>>20, j.get("bytes_skipped",0)>>20, j["bytes_stored"]>>20))')"
row "cairn (vmdk + delta child)" "next-day backup" cn "$(echo "$cn_json" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("read %d MiB, new %d MiB, stored %d MiB" % (j["bytes_read"]>>20, j["bytes_new"]>>20, j["bytes_stored"]>>20))')"
row "cairn (vmdk + delta child)" "restore day 2" cr "$cr_eq"
row "cairn (vmdk + delta child)" "restore day 2 --no-fsync" cq "$cq_eq"
if [ "${CAIRN_RAW:-1}" = 1 ]; then
  row "cairn (flattened raw)" "full backup" xf
  row "cairn (flattened raw)" "next-day backup (re-reads all)" xn
fi
row "restic $(restic version | cut -d' ' -f2) (raw)" "full backup" rf
row "restic (raw)" "next-day backup" rn
row "restic (raw)" "restore day 2" rr "$rr_eq"
row "borg $(borg --version | cut -d' ' -f2) lz4 (raw)" "full backup" bf
row "borg (raw)" "next-day backup" bn
row "borg (raw)" "restore day 2" br "$br_eq"
echo
echo "| tool | step | wall s | durable s (wall + sync) | CPU s (user+sys) | peak RSS MiB | load (1 min) | notes |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| repository (du -sb) | after full MiB | after next day MiB |"
echo "|---|---|---|"
for t in cairn cairn-raw restic borg; do
  [ -n "${size1[$t]:-}" ] && echo "| $t | $(mib "${size1[$t]}") | $(mib "${size2[$t]}") |"
done
echo
fastest() { python3 -c 'import sys; print(min(float(x) for x in sys.argv[1:]))' "$@"; }
pf=$(fastest "$rf_wall" "$bf_wall"); pn=$(fastest "$rn_wall" "$bn_wall"); pr=$(fastest "$rr_wall" "$br_wall")
pfc=$(fastest "$rf_cpu" "$bf_cpu"); pnc=$(fastest "$rn_cpu" "$bn_cpu"); prc=$(fastest "$rr_cpu" "$br_cpu")
pfd=$(fastest "$rf_dur" "$bf_dur"); pnd=$(fastest "$rn_dur" "$bn_dur"); prd=$(fastest "$rr_dur" "$br_dur")
maxrss=$(printf '%s\n' "$cf_rss" "$cn_rss" "$cr_rss" "$cq_rss" | sort -n | tail -n1)
echo "| goal | measured (best of $runs) | met (wall) |"
echo "|---|---|---|"
met() { (( $(echo "$1" | bc -l) )) && echo yes || echo **no**; }
echo "| full backup >= 4x faster than the faster peer | $(ratio "$pf" "$cf_wall")x wall, $(ratio "$pfd" "$cf_dur")x until durable, $(ratio "$pfc" "$cf_cpu")x CPU | $(met "$pf / $cf_wall >= 4") |"
echo "| restore >= 4x faster than the faster peer (default: durable when it returns) | $(ratio "$pr" "$cr_wall")x wall, $(ratio "$prd" "$cr_dur")x until durable (like for like), $(ratio "$prc" "$cr_cpu")x CPU | $(met "$pr / $cr_wall >= 4") (wall), $(met "$prd / $cr_dur >= 4") (until durable) |"
echo "| restore >= 4x faster than the faster peer (--no-fsync: page cache, as the peers) | $(ratio "$pr" "$cq_wall")x wall (like for like), $(ratio "$prd" "$cq_dur")x until durable, $(ratio "$prc" "$cq_cpu")x CPU | $(met "$pr / $cq_wall >= 4") |"
echo "| next-day backup of a delta disk >= 10x faster | $(ratio "$pn" "$cn_wall")x wall, $(ratio "$pnd" "$cn_dur")x until durable, $(ratio "$pnc" "$cn_cpu")x CPU | $(met "$pn / $cn_wall >= 10") |"
echo "| repository <= borg lz4 (after next day) | $(mib "${size2[cairn]}") vs $(mib "${size2[borg]}") MiB | $(met "${size2[cairn]} <= ${size2[borg]}") |"
echo "| peak RSS < 64 MiB | $maxrss MiB | $(met "$maxrss < 64") |"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
