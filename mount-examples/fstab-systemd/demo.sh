#!/usr/bin/env bash
# Checks the two boot-time recipes next to this script and mounts ksmfs the way they do:
#   1. systemd-analyze verify mnt-ksm.mount (skipped when systemd-analyze is missing)
#   2. findmnt --verify on the fstab line (skipped when findmnt is missing)
#   3. mount -t fuse.ksmfs none MNT -o <the unit's Options=>, then umount
#   4. mount MNT through a copy of the fstab line (mount --fstab), then umount
# mount(8) runs mount.fuse3 with the caller's PATH removed (util-linux drops PATH from the
# helper's environment), and mount.fuse3 starts `ksmfs` through /bin/sh, which then searches
# its default PATH (/usr/local/sbin:/usr/local/bin:...). That is why `make install` is the
# way for real use. To test the repository's binary without installing anything, this
# script runs in a private mount namespace (unshare -m) and bind-mounts a temporary
# directory holding a `ksmfs` symlink over the first directory of that default PATH: only
# this script's processes see it, and it is gone when the script ends.
# Usage: mount-examples/fstab-systemd/demo.sh   (as root; env: KSMFS_BIN)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${KSMFS_BIN:-$HERE/../../.build/release/ksmfs}")
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
if [ -z "${KSMFS_DEMO_PRIVATE_NS:-}" ]; then
  command -v unshare >/dev/null || { echo "FAIL: unshare (util-linux) is needed" >&2; exit 1; }
  KSMFS_DEMO_PRIVATE_NS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}"/ksmfs-fstab.XXXXXX)
MNT=$TMP/mnt
mkdir "$MNT" "$TMP/bin" "$TMP/units"
FIRST=""
cleanup() {
  if mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
  [ -z "$FIRST" ] || umount "$FIRST" || true
  mountpoint -q "$MNT" || rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== 1. systemd-analyze verify mnt-ksm.mount"
if command -v systemd-analyze >/dev/null; then
  cp "$HERE/mnt-ksm.mount" "$TMP/units/"
  # the file name must match Where= (mnt-ksm.mount <-> /mnt/ksm); verify checks that too
  if ! systemd-analyze verify --man=no "$TMP/units/mnt-ksm.mount" 2> "$TMP/verify.err"; then
    cat "$TMP/verify.err" >&2; fail "systemd-analyze verify rejected mnt-ksm.mount"
  fi
  if grep "mnt-ksm.mount" "$TMP/verify.err"; then fail "systemd-analyze verify warns about mnt-ksm.mount"; fi
  echo "  ok: $(grep -E '^(What|Where|Type|Options)=' "$HERE/mnt-ksm.mount" | tr '\n' ' ')"
else
  echo "  systemd-analyze not installed: skipping the unit check"
fi

LINE=$(grep -v '^#' "$HERE/fstab.example" | grep fuse.ksmfs)
# A copy of the line pointed at the temp mountpoint (and a pidfile, to see the daemon go).
echo "$LINE" | awk -v m="$MNT" -v p="$TMP/ksmfs.pid" '{$2 = m; $4 = $4 ",pidfile=" p; print}' > "$TMP/fstab"
echo "== 2. findmnt --verify on the fstab line"
if command -v findmnt >/dev/null; then
  # the source `none` and the fuse type draw warnings (no device to probe); errors fail
  out=$(findmnt --verify --tab-file "$TMP/fstab" 2>&1 || true)
  summary=$(echo "$out" | grep "parse errors" || true)
  echo "  $summary"
  case $summary in "0 parse errors, 0 errors"*) ;; *) echo "$out" >&2; fail "the fstab line does not verify" ;; esac
else
  echo "  findmnt not installed: skipping the fstab check"
fi

# What `make install` provides: `ksmfs` in /bin/sh's default PATH, where mount.fuse3 finds
# it. Here: a symlink to the repository's binary, over the first directory of that PATH
# (in this private mount namespace only).
ln -s "$BIN" "$TMP/bin/ksmfs"
SH_PATH=$(env -i /bin/sh -c 'echo "$PATH"')
IFS=: read -r -a dirs <<< "$SH_PATH"
for d in "${dirs[@]}"; do [ -d "$d" ] && { FIRST=$d; break; }; done
[ -n "$FIRST" ] || fail "no directory of /bin/sh's default PATH ($SH_PATH) exists"
mount --bind "$TMP/bin" "$FIRST"
echo "== ksmfs for mount(8): $FIRST/ksmfs -> $BIN (private bind mount; /bin/sh PATH is $SH_PATH)"
[ -x /sbin/mount.fuse3 ] || [ -x /usr/sbin/mount.fuse3 ] || fail "mount.fuse3 missing (apt-get install fuse3)"

check_mounted() {
  local opts
  grep -q " $MNT fuse.ksmfs " /proc/mounts || fail "$MNT is not a fuse.ksmfs mount"
  opts=$(awk -v m="$MNT" '$2 == m {print $4}' /proc/mounts)
  echo "  /proc/mounts: $(awk -v m="$MNT" '$2 == m' /proc/mounts)"
  case ",$opts," in *,allow_other,*) ;; *) fail "allow_other not in the mount options: $opts" ;; esac
  echo hello > "$MNT/hello"
  [ "$(cat "$MNT/hello")" = hello ] || fail "read back"
  [ "$(cat "$MNT/ksm/run")" = 0 ] || fail "ksm/run is not 0"
  local pid; pid=$(cat "$TMP/ksmfs.pid")
  ps -o pid=,args= -p "$pid" | sed 's/^ */  daemon: /'
  [ "$(realpath "/proc/$pid/exe")" = "$BIN" ] || fail "the daemon runs $(realpath "/proc/$pid/exe"), not $BIN"
}
check_unmounted() {
  for _ in $(seq 1 50); do
    [ ! -e "$TMP/ksmfs.pid" ] && ! mountpoint -q "$MNT" && return 0
    sleep 0.1
  done
  fail "still mounted, or the daemon did not exit (pidfile left behind)"
}

OPTS=$(sed -n 's/^Options=//p' "$HERE/mnt-ksm.mount")
echo "== 3. mount -t fuse.ksmfs none $MNT -o $OPTS"
mount -t fuse.ksmfs none "$MNT" -o "$OPTS,pidfile=$TMP/ksmfs.pid"
check_mounted
umount "$MNT"
check_unmounted
echo "  umount: ok, daemon gone"

echo "== 4. mount $MNT through the fstab line (a copy, pointed at the temp mountpoint)"
sed 's/^/  fstab: /' "$TMP/fstab"
mount --fstab "$TMP/fstab" "$MNT"
check_mounted
umount "$MNT"
check_unmounted
echo "  umount: ok, daemon gone"
echo "PASS: the unit, the fstab line and mount -t fuse.ksmfs work"
