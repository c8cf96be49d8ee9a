#!/usr/bin/env bash
# Per-file opt-out: `setfattr -n user.ksm.mergeable -v 0 FILE` keeps a file out of merging
# (like madvise(MADV_UNMERGEABLE)), on a directory it is inherited by files created in it
# later, and `getfattr -n user.ksm.stat` shows each file's share (like /proc/PID/ksm_stat).
# Usage: mount-examples/opt-out/demo.sh     (as root; env: KSMFS_BIN)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../demo-lib.sh"
demo_setup optout
"$BIN" "$MNT" -o size=256m
echo "== ksmfs mounted at $MNT"

# Four files with the same 4 MiB: 16 distinct pages, each repeated 64 times (1024 pages).
make_file() {
  python3 - "$1" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(1024):
        f.write(bytes([i % 16]) * 4096)
PY
}
stat_of() { getfattr --absolute-names --only-values -n "user.ksm.$2" "$1"; }
counter() { cat "$MNT/ksm/$1"; }
show() {
  printf '  %-22s mergeable=%s merging_pages=%-5s profit=%s\n' "${1#"$MNT"/}" \
    "$(stat_of "$1" mergeable)" "$(stat_of "$1" ksm_merging_pages)" "$(stat_of "$1" ksm_process_profit)"
}
# Let the scanner do two full passes after a change, then stop it.
settle() {
  local start; start=$(counter full_scans)
  echo 1 > "$MNT/ksm/run"
  for _ in $(seq 1 150); do
    [ "$(counter full_scans)" -ge $((start + 2)) ] && break
    sleep 0.1
  done
  echo 0 > "$MNT/ksm/run"
  echo "  pages_shared=$(counter pages_shared) pages_sharing=$(counter pages_sharing)"
}
expect() {  # expect WHAT GOT WANT
  if [ "$2" != "$3" ]; then echo "FAIL: $1 is $2, want $3" >&2; exit 1; fi
}
echo 10000 > "$MNT/ksm/pages_to_scan"
echo 0 > "$MNT/ksm/sleep_millisecs"

echo "== a.img and b.img are identical; b.img opts out before any merging"
make_file "$MNT/a.img"
make_file "$MNT/b.img"
setfattr -n user.ksm.mergeable -v 0 "$MNT/b.img"
settle
show "$MNT/a.img"; show "$MNT/b.img"
# a.img merges with itself (16 shared blocks hold its 1024 pages); b.img keeps its own pages
expect "a.img ksm_merging_pages" "$(stat_of "$MNT/a.img" ksm_merging_pages)" 1024
expect "b.img ksm_merging_pages" "$(stat_of "$MNT/b.img" ksm_merging_pages)" 0
expect pages_sharing "$(counter pages_sharing)" 1008

echo "== a directory opted out: files created in it later inherit mergeable=0"
mkdir "$MNT/private"
setfattr -n user.ksm.mergeable -v 0 "$MNT/private"
make_file "$MNT/private/c.img"
settle
show "$MNT/private/c.img"
expect "private/c.img mergeable" "$(stat_of "$MNT/private/c.img" mergeable)" 0
expect "private/c.img ksm_merging_pages" "$(stat_of "$MNT/private/c.img" ksm_merging_pages)" 0
expect pages_sharing "$(counter pages_sharing)" 1008
echo "  whole-tree view (a directory sums its files):"
getfattr --absolute-names --only-values -n user.ksm.stat "$MNT" | sed 's/^/    /'

echo "== b.img opts back in: its pages join a.img's shared blocks"
setfattr -n user.ksm.mergeable -v 1 "$MNT/b.img"
settle
show "$MNT/a.img"; show "$MNT/b.img"
expect "b.img ksm_merging_pages" "$(stat_of "$MNT/b.img" ksm_merging_pages)" 1024
expect pages_sharing "$(counter pages_sharing)" $((1008 + 1024))

echo "== a.img opts out: its pages are unmerged at once (no scan needed)"
setfattr -n user.ksm.mergeable -v 0 "$MNT/a.img"
show "$MNT/a.img"; show "$MNT/b.img"
echo "  pages_shared=$(counter pages_shared) pages_sharing=$(counter pages_sharing)"
expect "a.img ksm_merging_pages" "$(stat_of "$MNT/a.img" ksm_merging_pages)" 0
expect pages_sharing "$(counter pages_sharing)" 1008

echo "== contents never change: all three files are still identical"
cmp "$MNT/a.img" "$MNT/b.img"
cmp "$MNT/a.img" "$MNT/private/c.img"
echo "PASS: opted-out files stay out of merging"
