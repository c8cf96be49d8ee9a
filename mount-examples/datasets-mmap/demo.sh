#!/usr/bin/env bash
# Per-worker copies of one dataset: four workers each get their own 64 MiB copy of the same
# file on ksmfs and read it through mmap. Merging folds the four copies into one, the
# daemon's memory falls by about three copies, and the workers still compute the same
# checksums as the generator did.
# Usage: mount-examples/datasets-mmap/demo.sh      (as root; env: KSMFS_BIN, DATASET_MIB, WORKERS)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MIB=${DATASET_MIB:-64}
WORKERS=${WORKERS:-4}
. "$HERE/../demo-lib.sh"
demo_setup datasets

"$BIN" "$MNT" -o size=$((MIB * WORKERS * 2))m,pidfile="$TMP/ksmfs.pid"
PID=$(cat "$TMP/ksmfs.pid")
metric() { awk -v n="ksmfs_$1" '$1 ~ "^"n"[{]" {print $2}' "$MNT/ksm/metrics"; }
# what the daemon costs the machine: its own memory plus the arena's (a memfd it maps only
# while it uses it, so VmRSS alone would not show the files)
rss_mib() { echo $(( $(metric daemon_resident_bytes) >> 20 )); }
echo "== ksmfs mounted at $MNT (daemon pid $PID)"

echo "== generating a $MIB MiB dataset outside the mount (uint64 records, seed 2024)"
EXPECTED=$(python3 - "$TMP/dataset.bin" "$MIB" <<'PY'
import hashlib, random, sys, zlib
data = random.Random(2024).randbytes(int(sys.argv[2]) << 20)
with open(sys.argv[1], "wb") as f:
    f.write(data)
print(zlib.adler32(data), hashlib.sha256(data).hexdigest())
PY
)

echo "== each of $WORKERS workers gets its own copy on ksmfs (as if each had downloaded it)"
for i in $(seq 0 $((WORKERS - 1))); do
  mkdir "$MNT/worker$i"
  cp "$TMP/dataset.bin" "$MNT/worker$i/dataset.bin"
done
sync -f "$MNT"
ls -l "$MNT"/worker*/dataset.bin
BEFORE=$(rss_mib)
echo "daemon memory before merging: $BEFORE MiB  (physical_bytes $(( $(metric physical_bytes) >> 20 )) MiB)"

PAGES=$((MIB * 256))
WANT=$((PAGES * (WORKERS - 1)))   # every page of copies 2..N is saved
echo "== merging: echo 1 > ksm/run, wait for pages_sharing to reach $WANT"
echo 5000 > "$MNT/ksm/pages_to_scan"
echo 10 > "$MNT/ksm/sleep_millisecs"
echo 1 > "$MNT/ksm/run"
for _ in $(seq 1 300); do
  [ "$(cat "$MNT/ksm/pages_sharing")" -ge "$WANT" ] && break
  sleep 0.2
done
echo 0 > "$MNT/ksm/run"
for f in full_scans pages_shared pages_sharing pages_unshared general_profit; do
  printf '  %-16s %s\n' "$f" "$(cat "$MNT/ksm/$f")"
done
SHARING=$(cat "$MNT/ksm/pages_sharing")
[ "$SHARING" -ge "$WANT" ] || { echo "FAIL: pages_sharing $SHARING, want >= $WANT" >&2; exit 1; }
# freed blocks go back to the OS in batches; give the figure a moment to follow
MIN_DROP=$((MIB * (WORKERS - 1) * 3 / 4))
for _ in $(seq 1 50); do
  [ $((BEFORE - $(rss_mib))) -ge "$MIN_DROP" ] && break
  sleep 0.1
done
AFTER=$(rss_mib)
echo "daemon memory after merging:  $AFTER MiB  (saved $((BEFORE - AFTER)) MiB)"
[ $((BEFORE - AFTER)) -ge "$MIN_DROP" ] || {
  echo "FAIL: daemon memory fell by $((BEFORE - AFTER)) MiB, want >= $MIN_DROP MiB" >&2; exit 1; }

echo "== $WORKERS workers read their own copy through mmap, in parallel"
for i in $(seq 0 $((WORKERS - 1))); do
  python3 "$HERE/worker.py" "$i" "$MNT/worker$i/dataset.bin" > "$TMP/worker$i.json" &
done
wait
cat "$TMP"/worker*.json
python3 - $EXPECTED "$TMP"/worker*.json <<'PY'
import json, sys
want = (int(sys.argv[1]), sys.argv[2])
results = [json.load(open(p)) for p in sys.argv[3:]]
seen = {(r["adler32"], r["sha256"]) for r in results}
assert seen == {want}, f"FAIL: workers computed {seen}, the generator {want}"
assert len({(r["first"], r["last"]) for r in results}) == 1, "FAIL: workers disagree on records"
print(f"  all {len(results)} workers agree with the generator: adler32 {want[0]}, sha256 {want[1][:16]}...")
PY
READ=$(rss_mib)
echo "daemon memory after the workers read everything: $READ MiB (reading shared pages copies nothing)"
[ "$READ" -lt $((BEFORE - MIN_DROP)) ] || { echo "FAIL: daemon memory grew back to $READ MiB" >&2; exit 1; }
echo "PASS: $WORKERS copies of $MIB MiB held in about $MIB MiB"
