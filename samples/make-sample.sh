#!/usr/bin/env bash
# Builds samples/demo-vm.vmdk: a 48 MiB GPT disk with a FAT16 partition and an ext4
# partition holding a small file tree, as a monolithicSparse VMDK made by qemu-img.
# Tools: qemu-img, sgdisk, mkfs.fat, mtools, mke2fs (e2fsprogs). Deterministic except the
# VMDK CID, which qemu-img draws at random.
set -euo pipefail
cd "$(dirname "$0")"
export SOURCE_DATE_EPOCH=1700000000 E2FSPROGS_FAKE_TIME=1700000000 MTOOLS_SKIP_CHECK=1 TZ=UTC
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A small tree: text, a binary with a repeated pattern, a nested folder.
mkdir -p "$work/tree/etc" "$work/tree/home/alice/docs"
printf 'hello from cairn\n' > "$work/tree/hello.txt"
printf 'demo-vm\n' > "$work/tree/etc/hostname"
for i in $(seq 1 200); do printf 'line %04d of a report that compresses well\n' "$i"; done > "$work/tree/home/alice/docs/report.txt"
python3 -c 'import random,sys; sys.stdout.buffer.write(random.Random(7).randbytes(300000))' > "$work/tree/home/alice/random.bin"
find "$work/tree" -exec touch -h -d @1700000000 {} +

# Partition 1: FAT16, 16 MiB at 1 MiB.  Partition 2: ext4, 30 MiB after it.
truncate -s 16M "$work/fat.img"
mkfs.fat -F 16 --invariant -i 0badcafe -n DEMOBOOT "$work/fat.img" >/dev/null
mcopy -s -p -m -i "$work/fat.img" "$work/tree/hello.txt" "$work/tree/etc" ::/
truncate -s 30M "$work/ext4.img"
mke2fs -q -t ext4 -b 4096 -U 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 -E hash_seed=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 -L demoroot -d "$work/tree" "$work/ext4.img"

truncate -s 48M "$work/disk.raw"
sgdisk -o -U 5ca1ab1e-0000-4000-8000-000000000001 \
  -n 1:2048:34815 -t 1:0700 -c 1:boot -u 1:5ca1ab1e-0000-4000-8000-000000000002 \
  -n 2:34816:96255 -t 2:8300 -c 2:root -u 2:5ca1ab1e-0000-4000-8000-000000000003 \
  "$work/disk.raw" >/dev/null
dd if="$work/fat.img" of="$work/disk.raw" bs=512 seek=2048 conv=notrunc,sparse status=none
dd if="$work/ext4.img" of="$work/disk.raw" bs=512 seek=34816 conv=notrunc,sparse status=none
qemu-img convert -f raw -O vmdk -o subformat=monolithicSparse "$work/disk.raw" demo-vm.vmdk
sha256sum "$work/disk.raw" | cut -d' ' -f1 > demo-vm.raw.sha256
ls -l demo-vm.vmdk
