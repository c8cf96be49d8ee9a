#!/usr/bin/env bash
# Watching the merger: `ksmfs status MNT --watch` redraws one screen per --interval
# (counters, rates, the pass progress bar, memory saved, the advisor) until interrupted.
# Here a deliberately slow scanner merges 8 copies of 16 MiB while status is sampled.
# Usage: mount-examples/watch/demo.sh       (as root; env: KSMFS_BIN)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../demo-lib.sh"
demo_setup watch
"$BIN" "$MNT" -o size=512m
echo "== ksmfs mounted at $MNT; 8 identical 16 MiB files (28672 pages to save)"
python3 - "$MNT" <<'PY'
import os, sys
data = os.urandom(16 << 20)
for i in range(8):
    with open(f"{sys.argv[1]}/copy{i}.bin", "wb") as f:
        f.write(data)
PY
WANT=28672

echo "== a slow scanner: 1500 pages every 100 ms (15000 pages/s, about 2 s per pass)"
echo 1500 > "$MNT/ksm/pages_to_scan"
echo 100 > "$MNT/ksm/sleep_millisecs"
echo 1 > "$MNT/ksm/run"

# --watch clears the screen before each refresh; in a terminal you just see it update.
# Here the clear sequence is turned into a separator so the refreshes stay readable.
echo "== timeout 3.5 ksmfs status $MNT --watch --interval 1"
timeout 3.5 "$BIN" status "$MNT" --watch --interval 1 > "$TMP/watch.out" || true
sed 's/\x1b\[H\x1b\[2J/--- refresh ---\n/g' "$TMP/watch.out" | grep -v '^$'
screens=$(grep -c "ksmfs $MNT  \[" "$TMP/watch.out" || true)
[ "$screens" -ge 2 ] || { echo "FAIL: --watch drew $screens screens in 3.5 s" >&2; exit 1; }

echo "== the same without --watch: each call samples for --interval, prints once, exits"
for i in 1 2 3; do
  echo "--- sample $i ---"
  "$BIN" status "$MNT" --interval 0.5 | tee "$TMP/sample$i.out"
  grep -q "^  pass .*\[[#-]*\]" "$TMP/sample$i.out" || { echo "FAIL: no progress bar" >&2; exit 1; }
done

for _ in $(seq 1 200); do
  [ "$(cat "$MNT/ksm/pages_sharing")" -ge "$WANT" ] && break
  sleep 0.1
done
echo 0 > "$MNT/ksm/run"
echo "== after the merge has finished (stopped)"
"$BIN" status "$MNT" --interval 0.2 | tee "$TMP/final.out"
grep -q " sharing $WANT " "$TMP/final.out" || { echo "FAIL: status does not show sharing $WANT" >&2; exit 1; }
echo "== for scripts: --json (one object per mount), e.g. the dedup ratio"
"$BIN" status "$MNT" --json --interval 0.2 |
  python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print("  dedup_ratio", s["dedup_ratio"], " pass_progress", s["pass_progress"])'
echo "PASS: watched a merge of $WANT pages"
