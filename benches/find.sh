#!/usr/bin/env bash
# `cairn find` across restore points: 100 restore points of a 100k-file volume, each
# changing 1% of the files of the previous one (random files: ~63% of the leaf directory
# blobs change every time), in an encrypted repository.
#   benches/find.sh [POINTS] [FILES]          (defaults 100 and 100000)
# Env: RUNS (default 3: best of 3), CAIRN (binary to use instead of building), FIND_REPO
#      (the find_repo example binary), BENCH_DIR (work folder; default a fresh
#      /var/tmp/cairn-bench-find.XXXXXX, deleted at exit).
# The repository is built once through the library (crates/cairn-catalog/examples/
# find_repo.rs: catalogs and manifests only, no disk data). Timed, for a name glob, a path
# glob, one exact name and a pattern that matches nothing, output to /dev/null:
#   walk    `cairn find --no-index`: reads every directory blob of every restore point
#   first   `cairn find` with no index yet: walks once, saves the find index
#   index   `cairn find` with the index up to date
#   +1 rp   `cairn find` after one more restore point (index updated incrementally)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
points=${1:-100}
files=${2:-100000}
runs=${RUNS:-3}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/cairn-bench-find.XXXXXX)}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
cairn=$(cairn_bin)
if [ -z "${FIND_REPO:-}" ]; then
  cargo build --release -q -p cairn-catalog --example find_repo -j "$(nproc)" >&2
  FIND_REPO=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/find_repo
fi
export CAIRN_PASSWORD=find-bench
echo "machine: $(machine_line)"
repo=$work/repo
"$cairn" init --repo "$repo" >/dev/null 2>&1
t0=$SECONDS
"$FIND_REPO" "$repo" "$((points - 1))" "$files"
echo "repository: $((points - 1)) restore points of $files files built in $((SECONDS - t0)) s," \
  "$(mib "$(du -sb "$repo" | cut -f1)") MiB"

patterns=("*.doc" "/p00001/d00040/*" "file0000042.dat" "*.nomatch")
drop_index() { rm -f "$repo/cache/find-index"; }

printf '%-18s %10s %10s %10s %10s %8s\n' pattern "walk s" "walk CPU s" "index s" "CPU s" "lines"
for p in "${patterns[@]}"; do
  best w "$runs" noop "$cairn" find --repo "$repo" "$p" --no-index
  best i "$runs" noop "$cairn" find --repo "$repo" "$p"
  printf '%-18s %10s %10s %10s %10s %8s\n' "$p" "$w_wall" "$w_cpu" "$i_wall" "$i_cpu" "$(wc -l <"$work/last.out")"
done
# The last walk above is `*.nomatch`: the first find is compared with it in CPU seconds.
best f "$runs" drop_index "$cairn" find --repo "$repo" "*.nomatch"
echo "first find (no index: walk every catalog once, save the index): ${f_wall} s wall, ${f_cpu} s CPU" \
  "($(echo "scale=2; $f_cpu / $w_cpu" | bc -l) walks), ${f_rss} MiB RSS"
best s "$runs" noop "$cairn" find --repo "$repo" "*.nomatch"
echo "find with the index up to date: ${s_wall} s wall, ${s_cpu} s CPU, ${s_rss} MiB RSS"
# One more restore point (the example appends to the same series), then the incremental update.
"$FIND_REPO" "$repo" "$points" "$files" "$((points - 1))" >/dev/null
best u 1 noop "$cairn" find --repo "$repo" "*.nomatch"
echo "find after one more restore point (index updated by one point): ${u_wall} s wall, ${u_cpu} s CPU"
best s "$runs" noop "$cairn" find --repo "$repo" "*.doc"
echo "then *.doc: ${s_wall} s wall ($(wc -l <"$work/last.out") versions)"
echo "index: $(du -b "$repo/cache/find-index" | cut -f1) bytes pointer; repository $(mib "$(du -sb "$repo" | cut -f1)") MiB"
