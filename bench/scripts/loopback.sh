#!/usr/bin/env bash
# Push and pull through the real CLI and daemon on loopback, release builds.
#
#   bench/scripts/loopback.sh FIRST.scip NEXT.scip [RUNS]
#
# Each run starts a fresh daemon on a temporary data dir, pushes FIRST (all chunks new), pushes
# NEXT (the next commit: only changed chunks travel), and pulls NEXT back from the hot tier.
# Prints one line per run and the medians: first-push MB/s, next-push wall seconds and
# bytes_sent, pull MB/s (MB = 10^6 bytes; wall times of the whole CLI process).
set -euo pipefail
first=$1 next=$2 runs=${3:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release
[ -x "$bin/scipcached" ] && [ -x "$bin/scipcache" ] ||
  cargo build --release --manifest-path "$root/Cargo.toml" -p scipcache-daemon -p scipcache-client
now() { date +%s.%N; }
results=$(mktemp)
for run in $(seq "$runs"); do
  dir=$(mktemp -d)
  "$bin/scipcached" --data-dir "$dir/data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
    >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q 'scipcached ready' "$dir/log" && break; sleep 0.1; done
  addr=$(sed -n 's/.*scipcached ready grpc=\([^ ]*\).*/\1/p' "$dir/log" | head -1)
  token=$("$bin/scipcached" token --data-dir "$dir/data" --tenant bench --scope '*:write' 2>/dev/null)
  cli=("$bin/scipcache" --server "http://$addr" --token "$token" --json)
  t0=$(now); "${cli[@]}" push bench/loop/index commit/first "$first" >"$dir/p1"; t1=$(now)
  "${cli[@]}" push bench/loop/index commit/next "$next" >"$dir/p2"; t2=$(now)
  "${cli[@]}" pull bench/loop/index commit/next -o "$dir/out" >"$dir/p3"; t3=$(now)
  cmp -s "$dir/out" "$next" || { echo "pull differs from $next" >&2; exit 1; }
  python3 - "$first" "$next" "$t0" "$t1" "$t2" "$t3" "$dir/p2" >>"$results" <<'PY'
import json, os, sys
first, nxt, t0, t1, t2, t3, p2 = sys.argv[1:]
t0, t1, t2, t3 = map(float, (t0, t1, t2, t3))
sent = json.load(open(p2))["bytes_sent"]
print(os.path.getsize(first) / (t1 - t0) / 1e6, t2 - t1, sent, os.path.getsize(nxt) / (t3 - t2) / 1e6)
PY
  tail -1 "$results" | awk -v r="$run" '{printf "run %s: first push %.0f MB/s, next push %.3f s sending %d bytes, pull %.0f MB/s\n", r, $1, $2, $3, $4}'
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
m = [statistics.median(c) for c in zip(*rows)]
print(f"median of {len(rows)}: first push {m[0]:.0f} MB/s, next push {m[1]:.3f} s sending {m[2]:.0f} bytes, pull {m[3]:.0f} MB/s")
PY
rm -f "$results"
