#!/usr/bin/env bash
# What the capacity guarantees cost (issue 12): two ksmfs binaries side by side, alternating,
# 5 runs each. dd writes from a 512 MiB random file with conv=fsync; MB/s (dd's figure) per run.
# Cases: SIZE BS COUNT PREFILL_MiB -- a 4 GiB mount (dirty limit 64 MiB), 256 MiB and 64 MiB
# mounts (16 and 4 MiB), and 4 KiB / 64 KiB writes into a 256 MiB mount that is nearly full
# (writes admitted one by one).   usage: tools/capacity-cost.sh OLD_KSMFS NEW_KSMFS  (as root)
set -euo pipefail
OLD=$1 NEW=$2
M=$(mktemp -d /tmp/ksmfs-cost-XXXXXX) SRC=$(mktemp /tmp/ksmfs-cost-src-XXXXXX)
trap 'fusermount3 -u "$M" 2>/dev/null || true; rmdir "$M"; rm -f "$SRC"' EXIT
head -c 512M /dev/urandom > "$SRC"
run() {  # bin size bs count prefill
  "$1" "$M" -o "size=$2" 2>/dev/null; sleep 0.3
  if [ "$5" != 0 ]; then head -c "${5}M" "$SRC" > "$M/pre"; sync; fi
  dd if="$SRC" of="$M/f" bs="$3" count="$4" conv=fsync 2>&1 | tail -1 | awk '{print $(NF-1) $NF}'
  fusermount3 -u "$M"; sleep 0.3
}
for c in "4g 4k 131072 0" "4g 1M 512 0" "256m 4k 32768 0" "256m 1M 128 0" "64m 4k 8192 0" "256m 4k 2048 200" "256m 64k 128 200"; do
  o=() n=()
  for _ in 1 2 3 4 5; do o+=("$(run "$OLD" $c)"); n+=("$(run "$NEW" $c)"); done
  echo "$c | old ${o[*]} | new ${n[*]}"
done
