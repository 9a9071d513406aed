#!/bin/sh
# A small, deterministic CPU/IO workload for comparing emulators on this guest.
# Usage: /bench.sh [SCALE]   (SCALE multiplies the work; default 1)
# Prints one line per phase and a final parseable line:
#   FTX86-BENCH total=<seconds> scale=<SCALE> status=<ok|FAIL>
# Times come from /proc/uptime (10 ms resolution), i.e. guest time.
scale=${1:-1}
work=/tmp/bench.$$
mkdir -p "$work"

now() { read -r up _ </proc/uptime; echo "$up"; }
phase() { # name command...
  name=$1; shift
  t0=$(now)
  "$@"
  t1=$(now)
  awk -v n="$name" -v a="$t0" -v b="$t1" 'BEGIN { printf "bench: %-14s %7.2f s\n", n, b - a }'
}

generate() { seq 1 $((scale * 200000)) >"$work/data"; }           # ~1.3 MB per scale unit
checksum() { md5sum "$work/data" >"$work/sum" && sha256sum "$work/data" >/dev/null; }
roundtrip() { gzip -c "$work/data" | gunzip -c | md5sum >"$work/sum2"; }
spawn() {
  i=0
  while [ $i -lt $((scale * 300)) ]; do sh -c : ; i=$((i + 1)); done  # fork + exec each time
}
sortwords() { sort -r "$work/data" | tail -n1 >/dev/null; }

start=$(now)
phase generate generate
phase md5+sha256 checksum
phase gzip-roundtrip roundtrip
phase spawn spawn
phase sort sortwords
end=$(now)

# The round trip must give back the same bytes.
status=ok
[ "$(cut -d' ' -f1 "$work/sum")" = "$(cut -d' ' -f1 "$work/sum2")" ] || status=FAIL
rm -rf "$work"
awk -v a="$start" -v b="$end" -v s="$scale" -v st="$status" \
  'BEGIN { printf "FTX86-BENCH total=%.2f scale=%s status=%s\n", b - a, s, st }'
[ "$status" = ok ]
