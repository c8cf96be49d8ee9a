#!/usr/bin/env bash
# Many containers' root filesystems in memory: eight copies of one fake image, each with a
# few files of its own, copied into ksmfs with `cp -a`. Merging folds the common pages and
# `ksmfs status --json` reports the dedup ratio, which must match what the page contents
# allow (computed independently by fake_rootfs.py).
# Usage: mount-examples/container-images/demo.sh   (as root; env: KSMFS_BIN, CONTAINERS)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
N=${CONTAINERS:-8}
. "$HERE/../demo-lib.sh"
demo_setup containers

echo "== building a fake base image and $N container variants (outside the mount)"
python3 "$HERE/fake_rootfs.py" base "$TMP/base"
for i in $(seq 0 $((N - 1))); do
  cp -al "$TMP/base" "$TMP/c$i"                # hard links: cheap on disk
  python3 "$HERE/fake_rootfs.py" customize "$TMP/c$i" "$i"
done
echo "  base: $(find "$TMP/base" -type f | wc -l) files, $(du -sh --apparent-size "$TMP/base" | cut -f1)"
echo "  per container: etc/hostname, etc/machine-id, var/log/app.log differ; odd ones have an upgraded library"
read -r PAGES DISTINCT WANT < <(python3 "$HERE/fake_rootfs.py" pages "$TMP"/c[0-9]* |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["pages"], d["distinct"], d["expected_sharing"])')
echo "  $PAGES pages in all, $DISTINCT distinct: merging can save $WANT pages"

"$BIN" "$MNT" -o size=1g
echo "== ksmfs mounted at $MNT; cp -a every container into it"
mkdir "$MNT/containers"
for i in $(seq 0 $((N - 1))); do
  cp -a "$TMP/c$i" "$MNT/containers/c$i"
done
sync -f "$MNT"
echo "  before merging: $("$BIN" status "$MNT" --interval 0.1 | grep -E '^ +memory')"

echo "== merging (pages_to_scan 10000, sleep 5 ms) until pages_sharing = $WANT"
echo 10000 > "$MNT/ksm/pages_to_scan"
echo 5 > "$MNT/ksm/sleep_millisecs"
echo 1 > "$MNT/ksm/run"
for _ in $(seq 1 300); do
  [ "$(cat "$MNT/ksm/pages_sharing")" -ge "$WANT" ] && break
  sleep 0.2
done
echo 0 > "$MNT/ksm/run"
"$BIN" status "$MNT" --interval 0.2
"$BIN" status "$MNT" --json --interval 0.2 > "$TMP/status.json"

python3 - "$TMP/status.json" "$PAGES" "$DISTINCT" "$WANT" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))[0]
pages, distinct, want = map(int, sys.argv[2:])
expect = pages / distinct
print(f"  dedup_ratio {s['dedup_ratio']:.2f}x (pages allow {expect:.2f}x), "
      f"saved {s['saved_bytes'] / 2**20:.1f} MiB, pages_sharing {s['pages_sharing']}")
assert s["pages_sharing"] == want, f"FAIL: pages_sharing {s['pages_sharing']}, want {want}"
assert abs(s["dedup_ratio"] - expect) <= 0.01 * expect, f"FAIL: dedup_ratio {s['dedup_ratio']}, want {expect:.3f}"
assert s["dedup_ratio"] >= 5, "FAIL: eight near-identical images should dedup at least 5x"
PY

echo "== every container still reads back exactly as written"
for i in $(seq 0 $((N - 1))); do
  diff -r --no-dereference "$TMP/c$i" "$MNT/containers/c$i"
done
echo "PASS: $N container images deduplicated"
