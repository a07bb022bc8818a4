#!/usr/bin/env bash
# cairn convert vs qemu-img convert, same input, same run.
#   benches/convert.sh [SIZE_GIB]   (default 4)
# Builds a SIZE GiB raw disk that is ~60% written (random, text-like and zero regions, the
# rest never written), converts it with qemu-img to a monolithicSparse VMDK and a dynamic
# VHD, then times `cairn convert -f raw` and `qemu-img convert -O raw` of each, warm cache,
# best of 3. Prints a Markdown table row per input.
set -euo pipefail
cd "$(dirname "$0")/.."
size_gib=${1:-4}
work=${BENCH_DIR:-$(mktemp -d /var/tmp/cairn-bench.XXXXXX)}
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p cairn
cairn=$PWD/target/release/cairn

python3 - "$work/src.raw" "$size_gib" <<'PY'
import os, random, sys
path, gib = sys.argv[1], int(sys.argv[2])
size = gib << 30
rnd = random.Random(42)
text = b"".join(b"log line %08d: the quick brown fox jumps over the lazy dog\n" % i for i in range(20000))
with open(path, "wb") as f:
    f.truncate(size)
    block = 64 << 20
    for off in range(0, size, block):
        r = rnd.random()
        if r < 0.3:
            f.seek(off); f.write(rnd.randbytes(block))       # incompressible data
        elif r < 0.6:
            f.seek(off); f.write((text * (block // len(text) + 1))[:block])
        elif r < 0.7:
            f.seek(off); f.write(bytes(block))               # written zeros
        # else: never written (hole)
PY
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$work/src.raw" "$work/src.vmdk"
qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$work/src.raw" "$work/src.vhd"

best() { # best wall seconds of 3 runs of "$@"
  local b=999999 s e t
  for _ in 1 2 3; do
    rm -f "$work/out.raw"
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc -l); if (( $(echo "$t < $b" | bc -l) )); then b=$t; fi
  done
  printf '%.2f' "$b"
}

echo "| input | virtual size | cairn convert -> raw (s) | qemu-img convert -> raw (s) | cairn MiB/s | qemu-img MiB/s | outputs equal |"
echo "|---|---|---|---|---|---|---|"
for fmt in vmdk vhd; do
  src=$work/src.$fmt
  qf=$([ $fmt = vhd ] && echo vpc || echo vmdk)
  cat "$src" > /dev/null   # warm the page cache
  tc=$(best "$cairn" convert "$src" "$work/out.raw" -f raw)
  cp --sparse=always "$work/out.raw" "$work/cairn.raw" 2>/dev/null || true
  "$cairn" convert "$src" "$work/cairn.raw" -f raw
  tq=$(best qemu-img convert -f "$qf" -O raw "$src" "$work/out.raw")
  same=$(cmp -s "$work/cairn.raw" "$work/out.raw" && echo yes || echo NO)
  mib=$(( size_gib * 1024 ))
  printf '| %s | %d GiB | %s | %s | %.0f | %.0f | %s |\n' "$fmt" "$size_gib" "$tc" "$tq" \
    "$(echo "$mib / $tc" | bc -l)" "$(echo "$mib / $tq" | bc -l)" "$same"
done
