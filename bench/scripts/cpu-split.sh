#!/usr/bin/env bash
# Where a push's and a pull's time goes: CPU seconds of the CLI and of the daemon (user and
# system) next to the wall time, for RUNS first pushes and pulls of FILE (medians). CPU time
# is far less disturbed by other load on a shared machine than wall time.
#
#   bench/scripts/cpu-split.sh FILE [RUNS] [DAEMON-FLAG...]
#
# With PERF=1, also records a `perf` profile (cpu-clock) of the CLI and the daemon during the
# last pull and push into ./perf-{push,pull}-{cli,daemon}.data (`perf report -i FILE`).
# Binaries as in vs-zstd.sh ($SCIPCACHE_BIN or target/release).
set -euo pipefail
file=$(realpath "$1") runs=${2:-5}
shift $(($# < 2 ? $# : 2))
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SCIPCACHE_BIN:-$root/target/release}
dir=$(mktemp -d)
"$bin/scipcached" --data-dir "$dir/data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "$@" \
  >"$dir/log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q 'scipcached ready' "$dir/log" && break; sleep 0.1; done
addr=$(sed -n 's/.*scipcached ready grpc=\([^ ]*\).*/\1/p' "$dir/log" | head -1)
token() { "$bin/scipcached" token --data-dir "$dir/data" --tenant "$1" --scope "$2" 2>/dev/null; }
op=$(token '*' '*:admin')
cli=("$bin/scipcache" --server "http://$addr")
ticks=$(getconf CLK_TCK)
# utime + stime of the daemon, in clock ticks.
daemon_cpu() { awk '{print $14, $15}' "/proc/$pid/stat"; }
settle() {
  for _ in $(seq 600); do
    q=$("${cli[@]}" --token "$op" --json stat |
      python3 -c 'import json,sys; print(json.load(sys.stdin).get("cold_queue", 0))')
    [ "$q" = 0 ] && return
    sleep 0.1
  done
}
# Runs the CLI once under /usr/bin/time; appends "what wall cli_user cli_sys d_user d_sys".
measure() {
  local what=$1 profile=$2
  shift 2
  settle
  local before after prof=()
  if [ -n "$profile" ]; then
    perf record -q -e cpu-clock -F 2000 -o "perf-$what-daemon.data" -p "$pid" 2>/dev/null &
    prof=(perf record -q -e cpu-clock -F 2000 -o "perf-$what-cli.data")
    sleep 0.3
  fi
  before=$(daemon_cpu)
  /usr/bin/time -f "%e %U %S" -o "$dir/time" "${prof[@]}" "${cli[@]}" "$@" >/dev/null
  after=$(daemon_cpu)
  if [ -n "$profile" ]; then kill -INT %1; wait %1 || true; fi
  echo "$what $(cat "$dir/time") $before $after" | awk -v t="$ticks" \
    '{printf "%s %s %s %s %.3f %.3f\n", $1, $2, $3, $4, ($7-$5)/t, ($8-$6)/t}' >>"$dir/rows"
}
reader=$(token bench '*:write')
"${cli[@]}" --token "$reader" push bench/cpu/index commit/one "$file" >/dev/null
for run in $(seq "$runs"); do
  last=$([ "${PERF:-}" = 1 ] && [ "$run" = "$runs" ] && echo 1 || true)
  t="t$run$(date +%s)"
  measure push "$last" --token "$(token "$t" '*:write')" push "$t/cpu/index" commit/one "$file"
  measure pull "$last" --token "$reader" pull bench/cpu/index commit/one -o "$dir/out"
done
cmp "$dir/out" "$file"
python3 - "$dir/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print("median of", len(rows) // 2, "runs, seconds: wall | CLI user sys | daemon user sys")
for what in ("push", "pull"):
    cols = list(zip(*[list(map(float, r[1:])) for r in rows if r[0] == what]))
    m = [statistics.median(c) for c in cols]
    print(f"{what}: {m[0]:.3f} | {m[1]:.2f} {m[2]:.2f} | {m[3]:.2f} {m[4]:.2f}")
PY
