#!/usr/bin/env bash
# Prepares this machine for tests/test_container.py (idempotent; a second run takes ~1 s):
#   1. installs buildah + debootstrap with apt-get when they are missing (needs root, Debian/Ubuntu);
#   2. makes a local Debian bookworm base image with python3 3.11 + venv (debootstrap --variant=minbase),
#      cached as the buildah image $BASE_IMAGE and as a rootfs tarball under $CACHE_DIR.
# Stands in for `python:3.11-slim-bookworm` where no registry is reachable; the Dockerfile works on both.
# Exit 3 = buildah cannot be made to run here (the test then skips); anything else non-zero = a real failure.
set -euo pipefail

CACHE_DIR="${DENDRITIC_BLOCK_CACHE:-$HOME/.cache/dendritic-block}"
BASE_IMAGE="${DENDRITIC_BASE_IMAGE:-localhost/dendritic-block-base:bookworm-v1}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_TAR="$CACHE_DIR/base-bookworm-v1.tar"
log() { echo "[container-setup] $*" >&2; }
cant_run() { log "SKIP: $*"; exit 3; }

[ "$(uname -s)" = Linux ] || cant_run "buildah needs Linux (this is $(uname -s))"
[ "$(uname -m)" = x86_64 ] || cant_run "the image is built for x86_64 like EI's builders (this is $(uname -m))"

[ "$(id -u)" = 0 ] || cant_run "needs root (apt-get install, debootstrap, buildah --isolation chroot builds)"

# One setup at a time (several checkouts may run `make test` at once; apt and the base tag are shared).
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.setup.lock"
flock 9

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || cant_run "buildah/debootstrap missing and no apt-get to install them"
    log "installing buildah debootstrap (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends buildah debootstrap ca-certificates >/dev/null
fi
buildah info >/dev/null 2>&1 || cant_run "buildah is installed but cannot run: $(buildah info 2>&1 | tail -1)"

if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE cached"
    exit 0
fi

if [ ! -s "$ROOTFS_TAR" ]; then
    log "debootstrap bookworm (minbase + python3, python3-venv) from $DEBIAN_MIRROR, ~1 min"
    work="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$work/rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # Trust the same extra CAs as this host (TLS-intercepting proxies), so pip can reach PyPI in the build.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
        chroot "$work/rootfs" update-ca-certificates >/dev/null 2>&1
    fi
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
fi

log "importing $ROOTFS_TAR as $BASE_IMAGE"
ctr="$(buildah from scratch)"
mnt="$(buildah mount "$ctr")"
tar -C "$mnt" --numeric-owner -xf "$ROOTFS_TAR"
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash \
    "$ctr"
buildah commit -q --rm "$ctr" "$BASE_IMAGE" >/dev/null
log "base image $BASE_IMAGE ready"
