#!/usr/bin/env bash
# Installs what ksmfs needs to build and test, only when it is missing: libfuse3 (headers,
# fusermount3), libxxhash's header, attr (setfattr/getfattr), rsync and e2fsprogs (chattr,
# lsattr: tools the tests run on a mount) and pytest.
set -euo pipefail
need=()
[ -f /usr/include/fuse3/fuse_lowlevel.h ] || need+=(libfuse3-dev)
command -v fusermount3 >/dev/null || need+=(fuse3)
[ -f /usr/include/xxhash.h ] || need+=(libxxhash-dev)
command -v setfattr >/dev/null || need+=(attr)
command -v setpriv >/dev/null || need+=(util-linux)
command -v rsync >/dev/null || need+=(rsync)
command -v chattr >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c "import pytest" 2>/dev/null || python3 -m pip install -q pytest
if [ -n "${CI:-}" ] && [ ! -c /dev/fuse ]; then
  echo "error: CI is set but /dev/fuse is missing: the mount tests cannot run" >&2
  exit 1
fi
