#!/usr/bin/env bash
# A pull whose chunks are only in the cold tier against the same pull from the hot tier,
# through the real CLI and daemon on loopback (release builds), timed by hyperfine.
#
#   bench/scripts/cold-pull.sh FILE [RUNS]
#
# 1. A daemon with tiny budgets (--hot-bytes 1MiB --warm-bytes 1MiB) takes a push of FILE; the
#    script waits until the write-behind is done and the evictor has emptied hot and warm.
#    Each cold pull runs after the same wait (the pull's copies into warm are evicted again),
#    so every run reads (nearly) everything from the cold tier (a file:// folder, in the page
#    cache).
# 2. The same data dir restarted with the default budgets: one pull brings FILE into hot, then
#    hot pulls.
# Prints hyperfine's tables and the ratio of the medians. Needs hyperfine and python3.
set -euo pipefail
file=$(realpath "$1") runs=${2:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SCIPCACHE_BIN:-$root/target/release}
[ -x "$bin/scipcached" ] && [ -x "$bin/scipcache" ] ||
  cargo build --release --manifest-path "$root/Cargo.toml" -p scipcache-daemon -p scipcache-client
dir=$(mktemp -d)
pid=
start() {
  "$bin/scipcached" --data-dir "$dir/data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "$@" \
    >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do grep -q 'scipcached ready' "$dir/log" && break; sleep 0.1; done
  addr=$(sed -n 's/.*scipcached ready grpc=\([^ ]*\).*/\1/p' "$dir/log" | tail -1)
  cli="$bin/scipcache --server http://$addr"
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
token() { "$bin/scipcached" token --data-dir "$dir/data" --tenant "$1" --scope "$2" 2>/dev/null; }
settle() {
  # Waits until the cold queue is empty and hot and warm hold under 1 MiB (at most 120 s).
  cat >"$dir/settle" <<EOS
#!/usr/bin/env bash
for _ in \$(seq 1200); do
  $cli --token $op --json stat | python3 -c '
import json, sys
s = json.load(sys.stdin)
t = {x["name"]: x["stored_bytes"] for x in s["tiers"]}
sys.exit(0 if s["cold_queue"] == 0 and t["hot"] < (1 << 20) and t["warm"] < (1 << 20) else 1)' && exit 0
  sleep 0.1
done
echo "hot and warm did not empty" >&2; exit 1
EOS
  chmod +x "$dir/settle"
}
start --hot-bytes 1MiB --warm-bytes 1MiB
op=$(token '*' '*:admin')
rw=$(token bench '*:write')
$cli --token "$rw" push bench/perf/index commit/one "$file" >/dev/null
settle
"$dir/settle"
$cli --token "$op" --json stat >"$dir/stat-cold.json"
hyperfine --style basic --runs "$runs" --export-json "$dir/cold.json" --prepare "$dir/settle" \
  -n 'pull from cold' "$cli --token $rw pull bench/perf/index commit/one -o $dir/out.pull"
cmp "$dir/out.pull" "$file"
stop
start
$cli --token "$rw" pull bench/perf/index commit/one -o "$dir/out.pull" >/dev/null
hyperfine --style basic --runs "$runs" --warmup 1 --export-json "$dir/hot.json" \
  -n 'pull from hot' "$cli --token $rw pull bench/perf/index commit/one -o $dir/out.pull"
cmp "$dir/out.pull" "$file"
echo "tiers before the cold pulls: $(cat "$dir/stat-cold.json")"
python3 - "$dir/cold.json" "$dir/hot.json" "$(stat -c %s "$file")" <<'PY'
import json, sys
size = int(sys.argv[3])
cold, hot = (json.load(open(p))["results"][0]["median"] for p in sys.argv[1:3])
print(f"pull from cold: median {cold:.3f} s ({size / cold / 1e6:.0f} MB/s); from hot: "
      f"{hot:.3f} s ({size / hot / 1e6:.0f} MB/s); cold / hot = {cold / hot:.2f}x")
PY
