#!/usr/bin/env bash
# What the memfd arena costs (issue 12): two ksmfs binaries side by side, alternating, 5 runs
# each, on a 2 GiB mount. MB/s (dd's figure) per run for: 1 GiB written in 1 MiB writes and in
# 4 KiB writes (conv=fsync), and 1 GiB read cold (page cache dropped, so every byte comes from
# the daemon's arena).   usage: tools/arena-cost.sh OLD_KSMFS NEW_KSMFS  (as root)
set -euo pipefail
OLD=$1 NEW=$2
M=$(mktemp -d /tmp/ksmfs-cost-XXXXXX) SRC=$(mktemp /tmp/ksmfs-cost-src-XXXXXX)
trap 'fusermount3 -u "$M" 2>/dev/null || true; rmdir "$M"; rm -f "$SRC"' EXIT
head -c 1G /dev/urandom > "$SRC"
rate() { tail -1 | awk '{print $(NF-1) $NF}'; }
run() {  # bin case
  "$1" "$M" -o size=2g 2>/dev/null; sleep 0.3
  case $2 in
    write1M) dd if="$SRC" of="$M/f" bs=1M conv=fsync 2>&1 | rate ;;
    write4k) dd if="$SRC" of="$M/f" bs=4k count=262144 conv=fsync 2>&1 | rate ;;
    readcold) dd if="$SRC" of="$M/f" bs=1M conv=fsync status=none; sleep 1.5
              echo 3 > /proc/sys/vm/drop_caches; dd if="$M/f" of=/dev/null bs=1M 2>&1 | rate ;;
  esac
  fusermount3 -u "$M"; sleep 0.3
}
for c in write1M write4k readcold; do
  o=() n=()
  for _ in 1 2 3 4 5; do o+=("$(run "$OLD" $c)"); n+=("$(run "$NEW" $c)"); done
  echo "$c | old ${o[*]} | new ${n[*]}"
done
