#!/usr/bin/env bash
# Drives a ksmfs mount with ksmtuned.sh, the same script that tunes the kernel's KSM: on a
# simulated machine short of memory it starts merging and speeds the scanner up round after
# round; once memory is plentiful again its loop mode slows the scanner down and stops it,
# and the merges stay. Against /sys/kernel/mm/ksm it only ever runs with --dry-run.
# Usage: mount-examples/ksmtuned/demo.sh    (as root; env: KSMFS_BIN)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TUNED=$HERE/ksmtuned.sh
LOOP_PID=""
demo_extra_cleanup() { [ -z "$LOOP_PID" ] || kill "$LOOP_PID" 2>/dev/null || true; }
. "$HERE/../demo-lib.sh"
demo_setup ksmtuned
KSM=$MNT/ksm
expect() {  # expect WHAT GOT WANT
  if [ "$2" != "$3" ]; then echo "FAIL: $1 is $2, want $3" >&2; exit 1; fi
}

"$BIN" "$MNT" -o size=256m
echo "== ksmfs mounted at $MNT; 8 identical 4 MiB files (7168 pages to save)"
python3 - "$MNT" <<'PY'
import os, sys
data = os.urandom(4 << 20)
for i in range(8):
    with open(f"{sys.argv[1]}/vm{i}.img", "wb") as f:
        f.write(data)
PY

echo "== one round with this machine's real /proc/meminfo"
"$TUNED" "$KSM" --once

# Simulated 16 GiB machines: ksmtuned's default threshold is 20% of RAM available.
printf 'MemTotal:     16777216 kB\nMemAvailable:  1048576 kB\n' > "$TMP/meminfo.tight"
printf 'MemTotal:     16777216 kB\nMemAvailable: 12582912 kB\n' > "$TMP/meminfo.plenty"

echo "== memory tight (1 GiB of 16 GiB available): four rounds"
for _ in 1 2 3 4; do
  KSMTUNED_MEMINFO=$TMP/meminfo.tight "$TUNED" "$KSM" --once
done
expect run "$(cat "$KSM/run")" 1
expect pages_to_scan "$(cat "$KSM/pages_to_scan")" 1250   # boosted to KSM_NPAGES_MAX
expect sleep_millisecs "$(cat "$KSM/sleep_millisecs")" 10
for _ in $(seq 1 100); do
  [ "$(cat "$KSM/pages_sharing")" -ge 7168 ] && break
  sleep 0.1
done
echo "  merged: pages_shared $(cat "$KSM/pages_shared"), pages_sharing $(cat "$KSM/pages_sharing")"
expect pages_sharing "$(cat "$KSM/pages_sharing")" 7168

echo "== memory plentiful again: loop mode, a round every 0.2 s, decaying by 400"
KSMTUNED_MEMINFO=$TMP/meminfo.plenty KSM_MONITOR_INTERVAL=0.2 KSM_NPAGES_DECAY=-400 \
  "$TUNED" "$KSM" &
LOOP_PID=$!
for _ in $(seq 1 100); do
  [ "$(cat "$KSM/run")" = 0 ] && break
  sleep 0.1
done
kill "$LOOP_PID"; wait "$LOOP_PID" || true; LOOP_PID=""
expect run "$(cat "$KSM/run")" 0
expect pages_to_scan "$(cat "$KSM/pages_to_scan")" 64      # decayed to KSM_NPAGES_MIN
expect "pages_sharing after stopping" "$(cat "$KSM/pages_sharing")" 7168

if [ -d /sys/kernel/mm/ksm ]; then
  echo "== the same script on the kernel's KSM, --dry-run (nothing is written)"
  before=$(cat /sys/kernel/mm/ksm/{run,pages_to_scan,sleep_millisecs})
  KSMTUNED_MEMINFO=$TMP/meminfo.tight "$TUNED" /sys/kernel/mm/ksm --once --dry-run | tee "$TMP/dry.out"
  grep -q '^ksmtuned: would write: ' "$TMP/dry.out" || { echo "FAIL: dry run printed no writes" >&2; exit 1; }
  expect "/sys/kernel/mm/ksm" "$(cat /sys/kernel/mm/ksm/{run,pages_to_scan,sleep_millisecs})" "$before"
else
  echo "== no /sys/kernel/mm/ksm on this kernel: skipping the dry run against it"
fi
echo "PASS: ksmtuned.sh tuned ksmfs"
