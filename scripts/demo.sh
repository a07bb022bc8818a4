#!/usr/bin/env bash
# The main job, end to end, on the sample VM shipped in samples/: create an encrypted
# local-directory repository, back the VM up, list restore points, restore the disk,
# check it is bit-exact, verify every blob, and list and restore one guest file.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p cairn
cairn=${CARGO_TARGET_DIR:-$PWD/target}/release/cairn
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-correct horse battery staple}
repo=$work/repo
image=samples/demo-vm.vmdk

set -x
"$cairn" inspect "$image"
"$cairn" init --repo "$repo" --encryption aes-256-gcm
"$cairn" backup --repo "$repo" "$image" --name demo-vm --tag first
"$cairn" snapshots --repo "$repo"
"$cairn" restore --repo "$repo" latest --to "$work/restored.raw"
"$cairn" restore --repo "$repo" latest --to "$work/restored.vmdk" --format vmdk
"$cairn" verify --repo "$repo" --read-data
"$cairn" ls "$image" --partition 2 --recursive
"$cairn" extract "$image" --partition 2 /home/alice/docs --to "$work/files"
set +x
want=$(cat samples/demo-vm.raw.sha256)
got=$(sha256sum "$work/restored.raw" | cut -d' ' -f1)
echo "restored disk sha256: $got"
echo "source disk sha256:   $want"
[ "$got" = "$want" ] || { echo "MISMATCH"; exit 1; }
if command -v qemu-img >/dev/null; then
  qemu-img compare -q "$image" "$work/restored.vmdk" && echo "restored VMDK equals the source (qemu-img compare)"
fi
echo "OK: backup and restore are bit-exact"
