#!/usr/bin/env bash
# KSM end to end with shell tools (run as root): mount ksmfs, write 4 x 16 MiB files repeating
# one 1 MiB pattern of 256 distinct pages, echo 1 > ksm/run, wait for the computed figures,
# echo 2 > ksm/run, check all zero and sha256sums intact, unmount, daemon exits 0. Prints each
# check; exits non-zero with a FAIL line on the first mismatch.
#   usage: [KSMFS_BIN=path/to/ksmfs] bash ksm_scenario.sh

set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
KSMFS=${KSMFS_BIN:-$HERE/../../.build/release/ksmfs}
PAGE=4096
FILES=4
FILE_MIB=16
DISTINCT=256                                  # pages in the 1 MiB pattern
PAGES=$(( FILES * FILE_MIB * 1024 * 1024 / PAGE ))   # 16384 pages in all
MAX_PAGE_SHARING=256                          # the default; 64 copies of each page fit one block
TIMEOUT_S=30

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$KSMFS" ] || fail "ksmfs binary not found: $KSMFS"
[ "$(id -u)" = 0 ] || fail "run as root"

WORK=$(mktemp -d /tmp/ksm-scenario.XXXXXX)
MNT=$WORK/mnt
mkdir "$MNT"
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill "$PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mounted() { grep -q " $MNT fuse.ksmfs " /proc/mounts; }
ksm() { cat "$MNT/ksm/$1"; }
set_ksm() { echo "$2" > "$MNT/ksm/$1" || fail "echo $2 > ksm/$1 failed"; }
check() {  # check NAME EXPECTED
    local got
    got=$(ksm "$1")
    if [ "$got" = "$2" ]; then
        echo "ok    ksm/$1 = $got"
    else
        fail "ksm/$1 = $got, expected $2"
    fi
}
elapsed_ok() { [ $(( $(date +%s) - T0 )) -lt "$TIMEOUT_S" ]; }

# -- mount
echo "== mount $KSMFS on $MNT"
"$KSMFS" "$MNT" -f -o size=256m >"$WORK/daemon.log" 2>&1 &
PID=$!
T0=$(date +%s)
until mounted; do
    kill -0 "$PID" 2>/dev/null || fail "ksmfs exited before mounting: $(cat "$WORK/daemon.log")"
    elapsed_ok || fail "not mounted after ${TIMEOUT_S}s"
    sleep 0.05
done
echo "ok    mounted (daemon pid $PID)"

# -- data: 4 files x 16 MiB, each the same 1 MiB pattern (256 distinct pages) 16 times
echo "== write $FILES files of $FILE_MIB MiB repeating $DISTINCT distinct pages"
head -c $(( DISTINCT * PAGE )) /dev/urandom >"$WORK/pattern"
[ "$(split -b $PAGE --filter='sha256sum' "$WORK/pattern" | sort -u | wc -l)" = "$DISTINCT" ] \
    || fail "the random pattern does not have $DISTINCT distinct pages"
mkdir "$MNT/data"
for _ in $(seq $FILE_MIB); do cat "$WORK/pattern"; done >"$MNT/data/f0" || fail "writing f0"
for i in $(seq 1 $(( FILES - 1 ))); do
    cp "$MNT/data/f0" "$MNT/data/f$i" || fail "cp f$i"
done
sync "$MNT"/data/f* || fail "sync"
drop_cache() { for f in "$MNT"/data/f*; do dd if="$f" iflag=nocache count=0 status=none; done; }
drop_cache
(cd "$MNT/data" && sha256sum f*) >"$WORK/before.sha" || fail "sha256sum before"
[ "$(cut -d' ' -f1 "$WORK/before.sha" | sort -u | wc -l)" = 1 ] || fail "the files differ"
echo "ok    $(wc -l <"$WORK/before.sha") files, sha256 $(cut -c1-16 "$WORK/before.sha" | head -1)..."

# -- expected figures
SHARED=$DISTINCT                           # each content in one block (64 copies <= 256)
SHARING=$(( PAGES - DISTINCT ))            # 16128 pages saved
PROFIT=$(( SHARING * PAGE - PAGES * 16 ))  # ksmfs: 16 bytes per scan item
echo "== expect pages_shared $SHARED, pages_sharing $SHARING, pages_unshared 0, general_profit $PROFIT"
check max_page_sharing $MAX_PAGE_SHARING
check pages_sharing 0

# -- merge
echo "== echo 1 > ksm/run (pages_to_scan 10000, sleep_millisecs 0)"
set_ksm pages_to_scan 10000
set_ksm sleep_millisecs 0
set_ksm run 1
T0=$(date +%s)
until [ "$(ksm pages_sharing)" = "$SHARING" ]; do
    elapsed_ok || fail "pages_sharing $(ksm pages_sharing) after ${TIMEOUT_S}s, expected $SHARING"
    kill -0 "$PID" 2>/dev/null || fail "daemon died: $(cat "$WORK/daemon.log")"
    sleep 0.05
done
echo "ok    pages_sharing reached $SHARING after $(( $(date +%s) - T0 ))s, full_scans $(ksm full_scans)"
PASS=$(( $(ksm full_scans) + 2 ))           # settled: still the same two passes later
until [ "$(ksm full_scans)" -ge "$PASS" ]; do
    elapsed_ok || fail "full_scans stuck at $(ksm full_scans)"
    sleep 0.05
done
check pages_shared $SHARED
check pages_sharing $SHARING
check pages_unshared 0
check pages_volatile 0
check stable_node_chains 0
check stable_node_dups 0
check ksm_zero_pages 0
check cow_ksm 0
check general_profit $PROFIT
drop_cache
(cd "$MNT/data" && sha256sum -c --quiet "$WORK/before.sha") || fail "contents changed by merging"
echo "ok    contents intact while merged"

# -- unmerge
echo "== echo 2 > ksm/run"
set_ksm run 2
check run 2
for c in full_scans pages_shared pages_sharing pages_unshared pages_volatile \
         stable_node_chains stable_node_dups ksm_zero_pages general_profit; do
    check $c 0
done
[ "$(ksm pages_scanned)" -gt 0 ] || fail "pages_scanned was reset (it never is)"
echo "ok    pages_scanned $(ksm pages_scanned) (never reset)"
drop_cache
(cd "$MNT/data" && sha256sum -c --quiet "$WORK/before.sha") || fail "contents changed by unmerging"
echo "ok    contents intact after unmerge (sha256sum)"

# -- unmount
echo "== unmount"
fusermount3 -u "$MNT" || fail "fusermount3 -u failed"
wait "$PID"
RC=$?
PID=
[ "$RC" = 0 ] || fail "daemon exited with $RC: $(cat "$WORK/daemon.log")"
mounted && fail "still mounted"
echo "ok    unmounted, daemon exited 0"
echo "PASS: ksm scenario"
