#!/usr/bin/env bash
# Installs what ksmfs needs to build and test, only when it is missing: libfuse3 (headers,
# fusermount3), libxxhash's header, attr (setfattr/getfattr), rsync and e2fsprogs (chattr,
# lsattr: tools the tests run on a mount), strace, pytest, and Debian's ksmtuned script
# (extracted into .build/deps, never installed: its service would drive the kernel's KSM).
set -euo pipefail
need=()
[ -f /usr/include/fuse3/fuse_lowlevel.h ] || need+=(libfuse3-dev)
command -v fusermount3 >/dev/null || need+=(fuse3)
[ -f /usr/include/xxhash.h ] || need+=(libxxhash-dev)
command -v setfattr >/dev/null || need+=(attr)
command -v setpriv >/dev/null || need+=(util-linux)
command -v rsync >/dev/null || need+=(rsync)
command -v chattr >/dev/null || need+=(e2fsprogs)
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c "import pytest" 2>/dev/null || python3 -m pip install -q pytest
# The real ksmtuned, for the test that drives ksmfs with it through a bind mount.
deps="$(cd "$(dirname "$0")/.." && pwd)/.build/deps"
if [ ! -f "$deps/ksmtuned/usr/sbin/ksmtuned" ]; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download ksmtuned >/dev/null 2>&1); then
    mkdir -p "$deps/ksmtuned"
    dpkg-deb -x "$tmp"/ksmtuned_*.deb "$deps/ksmtuned"
  else
    echo "warning: could not download Debian's ksmtuned (its test will fail)" >&2
  fi
  rm -rf "$tmp"
fi
if [ -n "${CI:-}" ] && [ ! -c /dev/fuse ]; then
  echo "error: CI is set but /dev/fuse is missing: the mount tests cannot run" >&2
  exit 1
fi
