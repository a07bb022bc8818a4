#!/usr/bin/env bash
# cairn convert vs qemu-img convert -O raw, same inputs, same run.
#   benches/convert.sh [SIZE_GIB]        (default 4)
# Env: RUNS (default 3: best of 3), CAIRN (use this binary instead of building),
#      BENCH_DIR (work folder; default a fresh /var/tmp/cairn-bench-convert.XXXXXX, deleted at exit)
# Builds a SIZE GiB raw disk that is ~60% written (random, text-like and zero regions, the
# rest never written), converts it with qemu-img to a monolithicSparse VMDK and a dynamic
# VHD, then times `cairn convert -f raw` and `qemu-img convert -O raw` of each, warm page
# cache, `sync` before every run. Prints a Markdown table; "cores used" is CPU seconds / wall
# seconds. cairn fsyncs the output before renaming it into place; qemu-img's default cache
# mode for convert is "unsafe" (no flush at all: the data is still dirty in the page cache
# when it exits), so qemu-img is timed twice: default, and `-t writeback` (flushes at close),
# which is the like-for-like comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
size_gib=${1:-4}
runs=${RUNS:-3}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/cairn-bench-convert.XXXXXX)}
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
cairn=$(cairn_bin)
echo "machine: $(machine_line)"
echo "cairn: $("$cairn" --version), $(qemu-img --version | head -n1)"

python3 - "$work/src.raw" "$size_gib" <<'PY'
import random, sys
path, gib = sys.argv[1], int(sys.argv[2])
size = gib << 30
rnd = random.Random(42)
text = b"".join(b"log line %08d: the quick brown fox jumps over the lazy dog\n" % i for i in range(20000))
block = 64 << 20
textblock = (text * (block // len(text) + 1))[:block]
with open(path, "wb") as f:
    f.truncate(size)
    for off in range(0, size, block):
        r = rnd.random()
        if r < 0.3:
            f.seek(off); f.write(rnd.randbytes(block))       # incompressible data
        elif r < 0.6:
            f.seek(off); f.write(textblock)                  # compressible data
        elif r < 0.7:
            f.seek(off); f.write(bytes(block))               # written zeros
        # else: never written (hole)
PY
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$work/src.raw" "$work/src.vmdk"
qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$work/src.raw" "$work/src.vhd"
written=$(qemu-img map -f raw --output=json "$work/src.raw" | python3 -c \
  'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
echo "input: ${size_gib} GiB virtual, $(mib "$written") MiB allocated in the raw source"
echo

rm_out() { rm -f "$work/out.raw"; sync; }
vsize_mib=$((size_gib * 1024))
echo "| input | tool | wall s (best of $runs) | CPU s user+sys | cores used | MiB/s of virtual size | peak RSS MiB | load | output equals source |"
echo "|---|---|---|---|---|---|---|---|---|"
for fmt in vmdk vhd; do
  src=$work/src.$fmt
  qf=$([ "$fmt" = vhd ] && echo vpc || echo vmdk)
  cat "$src" >/dev/null   # warm the page cache
  best c "$runs" rm_out "$cairn" convert "$src" "$work/out.raw" -f raw
  same_c=$(cmp -s "$work/out.raw" "$work/src.raw" && echo yes || echo NO)
  best q "$runs" rm_out qemu-img convert -f "$qf" -O raw "$src" "$work/out.raw"
  same_q=$(cmp -s "$work/out.raw" "$work/src.raw" && echo yes || echo NO)
  best w "$runs" rm_out qemu-img convert -t writeback -f "$qf" -O raw "$src" "$work/out.raw"
  same_w=$(cmp -s "$work/out.raw" "$work/src.raw" && echo yes || echo NO)
  for t in c q w; do
    v=${t}_wall; cp=${t}_cpu; r=${t}_rss; l=${t}_load; s=same_$t
    case $t in c) name="cairn convert (fsync)";; q) name="qemu-img convert (default: no flush)";;
               w) name="qemu-img convert -t writeback (flush)";; esac
    printf '| %s %d GiB | %s | %s | %s | %s | %.0f | %s | %s | %s |\n' "$fmt" "$size_gib" "$name" \
      "${!v}" "${!cp}" "$(ratio "${!cp}" "${!v}")" "$(echo "$vsize_mib / ${!v}" | bc -l)" \
      "${!r}" "${!l}" "${!s}"
  done
  printf '| %s | **cairn speed-up** | **%sx** wall vs flushing qemu-img (%sx vs default) | %sx CPU | | | | | |\n' \
    "$fmt" "$(ratio "$w_wall" "$c_wall")" "$(ratio "$q_wall" "$c_wall")" "$(ratio "$q_cpu" "$c_cpu")"
done
rm -f "$work/out.raw"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
