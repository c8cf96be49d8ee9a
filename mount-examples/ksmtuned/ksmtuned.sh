#!/usr/bin/env bash
# ksmtuned.sh - a ksmtuned-style tuning loop for a KSM control directory. It only uses the
# kernel's file names (run, pages_to_scan, sleep_millisecs, pages_sharing) and /proc/meminfo, so
# the same script drives the kernel (/sys/kernel/mm/ksm) and a ksmfs mount (<mnt>/ksm).
#
# Usage: ksmtuned.sh KSM_DIR [--once] [--dry-run]
#   --once     one round, then exit (default: a round every KSM_MONITOR_INTERVAL seconds)
#   --dry-run  print what would be written instead of writing it
#
# Each round (the policy of Fedora's ksmtuned, with pages_sharing used to hold the speed
# while merging is still paying off):
#   free  = MemAvailable, thres = max(MemTotal * KSM_THRES_COEF / 100, KSM_THRES_CONST)  [kB]
#   free < thres (memory tight)  -> pages_to_scan += KSM_NPAGES_BOOST, run = 1
#   else, pages_sharing grew since the last round (loop mode) -> keep pages_to_scan, run = 1
#   else                         -> pages_to_scan += KSM_NPAGES_DECAY (negative);
#                                   run = 0 once it is down to KSM_NPAGES_MIN (merges stay)
#   pages_to_scan is kept within [KSM_NPAGES_MIN, KSM_NPAGES_MAX];
#   sleep_millisecs = max(10, KSM_SLEEP_MSEC * 16 GiB / MemTotal) (slower on small machines).
#
# Settings come from the environment, or from the file named by KSMTUNED_CONF (same names
# as /etc/ksmtuned.conf). KSMTUNED_MEMINFO replaces /proc/meminfo (to simulate a machine).
set -euo pipefail

usage() { echo "usage: $0 KSM_DIR [--once] [--dry-run]" >&2; exit 2; }
DIR="" ONCE=0 DRY=0
for a in "$@"; do
  case $a in
    --once) ONCE=1 ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) usage ;;
    *) [ -z "$DIR" ] || usage; DIR=$a ;;
  esac
done
[ -n "$DIR" ] || usage
DIR=${DIR%/}
for f in run pages_to_scan sleep_millisecs pages_sharing; do
  [ -f "$DIR/$f" ] || { echo "ksmtuned: $DIR is not a KSM control directory (no $f)" >&2; exit 2; }
done

if [ -n "${KSMTUNED_CONF:-}" ]; then
  # shellcheck disable=SC1090
  . "$KSMTUNED_CONF"
fi
KSM_MONITOR_INTERVAL=${KSM_MONITOR_INTERVAL:-60}
KSM_SLEEP_MSEC=${KSM_SLEEP_MSEC:-10}
KSM_NPAGES_BOOST=${KSM_NPAGES_BOOST:-300}
KSM_NPAGES_DECAY=${KSM_NPAGES_DECAY:--50}
KSM_NPAGES_MIN=${KSM_NPAGES_MIN:-64}
KSM_NPAGES_MAX=${KSM_NPAGES_MAX:-1250}
KSM_THRES_COEF=${KSM_THRES_COEF:-20}
KSM_THRES_CONST=${KSM_THRES_CONST:-2048}
MEMINFO=${KSMTUNED_MEMINFO:-/proc/meminfo}

meminfo_kb() { awk -v k="$1:" '$1 == k {print $2; found=1} END {if (!found) print ""}' "$MEMINFO"; }
human_kb() { awk -v k="$1" 'BEGIN {split("KiB MiB GiB TiB", u); i=1; while (k >= 1024 && i < 4) {k /= 1024; i++}; printf "%.1f %s", k, u[i]}'; }

set_file() {  # set_file NAME VALUE: write only what changes
  local cur; cur=$(cat "$DIR/$1")
  [ "$cur" = "$2" ] && return 0
  if [ "$DRY" = 1 ]; then
    echo "ksmtuned: would write: echo $2 > $DIR/$1   (now $cur)"
  else
    echo "$2" > "$DIR/$1"
  fi
}

LAST_SHARING=""
round() {
  local total free thres npages old_np sleep_ms old_sleep run old_run sharing why
  total=$(meminfo_kb MemTotal)
  free=$(meminfo_kb MemAvailable)
  if [ -z "$free" ]; then  # kernels before 3.14
    free=$(( $(meminfo_kb MemFree) + $(meminfo_kb Buffers) + $(meminfo_kb Cached) ))
  fi
  [ -n "$total" ] || { echo "ksmtuned: no MemTotal in $MEMINFO" >&2; return 1; }
  thres=$(( total * KSM_THRES_COEF / 100 ))
  [ "$thres" -ge "$KSM_THRES_CONST" ] || thres=$KSM_THRES_CONST

  old_np=$(cat "$DIR/pages_to_scan"); old_sleep=$(cat "$DIR/sleep_millisecs"); old_run=$(cat "$DIR/run")
  sharing=$(cat "$DIR/pages_sharing")
  npages=$old_np
  if [ "$free" -lt "$thres" ]; then
    why="memory tight: boost"
    npages=$(( npages + KSM_NPAGES_BOOST )); run=1
  elif [ -n "$LAST_SHARING" ] && [ "$sharing" -gt "$LAST_SHARING" ]; then
    why="still merging: hold"
    run=1
  else
    why="memory plentiful: decay"
    npages=$(( npages + KSM_NPAGES_DECAY ))
    run=1
  fi
  [ "$npages" -le "$KSM_NPAGES_MAX" ] || npages=$KSM_NPAGES_MAX
  [ "$npages" -ge "$KSM_NPAGES_MIN" ] || npages=$KSM_NPAGES_MIN
  if [ "$why" = "memory plentiful: decay" ] && [ "$npages" -le "$KSM_NPAGES_MIN" ]; then
    run=0; why="memory plentiful: stop"
  fi
  sleep_ms=$(( KSM_SLEEP_MSEC * 16 * 1024 * 1024 / total ))
  [ "$sleep_ms" -ge 10 ] || sleep_ms=10
  LAST_SHARING=$sharing

  [ "$old_run" != 2 ] || run=2  # someone unmerged everything on purpose: leave run alone
  printf 'ksmtuned: %s: free %s of %s (thres %s), pages_sharing %s (%s saved) -> %s; ' \
    "$DIR" "$(human_kb "$free")" "$(human_kb "$total")" "$(human_kb "$thres")" \
    "$sharing" "$(human_kb $(( sharing * 4 )))" "$why"
  printf 'pages_to_scan %s -> %s, sleep_millisecs %s -> %s, run %s -> %s\n' \
    "$old_np" "$npages" "$old_sleep" "$sleep_ms" "$old_run" "$run"
  # tunables first, run last: the scanner starts with the new speed
  set_file pages_to_scan "$npages"
  set_file sleep_millisecs "$sleep_ms"
  set_file run "$run"
}

if [ "$ONCE" = 1 ]; then
  round
  exit
fi
trap 'exit 0' TERM INT
while :; do
  round || true
  sleep "$KSM_MONITOR_INTERVAL" &
  wait $! || true
done
