#!/usr/bin/env bash
# Quickstart: mount ksmfs, write two files that share most of their pages, start the
# merger, watch pages_sharing climb, read a file back through mmap from python, unmount.
# Usage: mount-examples/quickstart.sh [MOUNTPOINT]   (run from the repository, as root)
set -euo pipefail
cd "$(dirname "$0")/.."
MNT=${1:-/tmp/ksmfs-demo}
BIN=${KSMFS_BIN:-.build/release/ksmfs}
mkdir -p "$MNT"
"$BIN" "$MNT" -o size=1g
trap 'fusermount3 -u "$MNT" 2>/dev/null || true' EXIT
echo "== mounted ksmfs at $MNT"
grep " $MNT " /proc/mounts

echo "== two 32 MiB files, 16 distinct pages repeated"
python3 - "$MNT" <<'PY'
import sys
mnt = sys.argv[1]
for name in ("a.img", "b.img"):
    with open(f"{mnt}/{name}", "wb") as f:
        for i in range(8192):
            f.write(bytes([i % 16]) * 4096)
PY
# the daemon's memory: its own plus the arena's (a memfd it maps only while it uses it)
memory() { awk '$1 ~ /^ksmfs_daemon_resident_bytes[{]/ {printf "%d MiB", $2 / 1048576}' "$MNT/ksm/metrics"; }
echo "daemon memory before merging: $(memory)"

echo "== echo 1 > $MNT/ksm/run"
echo 10000 > "$MNT/ksm/pages_to_scan"
echo 1 > "$MNT/ksm/run"
for i in $(seq 1 50); do
  sleep 0.2
  s=$(cat "$MNT/ksm/pages_sharing")
  [ "$s" -ge 16320 ] && break
done
for f in full_scans pages_shared pages_sharing pages_unshared general_profit; do
  printf '  %-16s %s\n' "$f" "$(cat "$MNT/ksm/$f")"
done
sleep 0.3  # freed blocks go back in batches
echo "daemon memory after merging:  $(memory)"

echo "== mmap from python: read back, write one page (copy-on-write), check the other file"
python3 - "$MNT" <<'PY'
import mmap, sys
mnt = sys.argv[1]
with open(f"{mnt}/a.img", "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    assert m[4096 * 5] == 5
    m[0:5] = b"hello"
    m.flush()
    m.close()
with open(f"{mnt}/b.img", "rb") as f:
    assert f.read(5) == bytes(5), "the other file must not see the write"
with open(f"{mnt}/a.img", "rb") as f:
    assert f.read(5) == b"hello"
print("  mmap read/write ok, b.img unchanged")
PY
echo "  cow_ksm (copy-on-write breaks): $(cat "$MNT/ksm/cow_ksm")"
echo "== echo 2 > $MNT/ksm/run (unmerge everything)"
echo 2 > "$MNT/ksm/run"
echo "  pages_sharing: $(cat "$MNT/ksm/pages_sharing")"
echo "== done; unmounting"
