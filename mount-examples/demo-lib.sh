# Set-up shared by the demos in mount-examples/*/ (sourced, not run): BIN (the ksmfs binary;
# KSMFS_BIN overrides), a root check, a temporary directory TMP holding an empty mountpoint
# MNT, and an exit trap that runs the demo's own `demo_extra_cleanup` if it defines one,
# unmounts MNT and removes TMP once nothing is mounted there.
# In a demo:  HERE=$(cd "$(dirname "$0")" && pwd); . "$HERE/../demo-lib.sh"; demo_setup NAME

demo_setup() {
  BIN=${KSMFS_BIN:-$HERE/../../.build/release/ksmfs}
  [ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/ksmfs-$1.XXXXXX")
  MNT=$TMP/mnt
  mkdir "$MNT"
  trap demo_cleanup EXIT
}

demo_cleanup() {
  if declare -F demo_extra_cleanup >/dev/null; then demo_extra_cleanup; fi
  if mountpoint -q "$MNT"; then fusermount3 -u "$MNT" || umount -l "$MNT"; fi
  mountpoint -q "$MNT" || rm -rf "$TMP"
}
