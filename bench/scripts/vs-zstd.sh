#!/usr/bin/env bash
# First push and pull through the real CLI and daemon on loopback, timed by hyperfine side by
# side with zstd on the same file in the same run (release builds).
#
#   bench/scripts/vs-zstd.sh FILE [RUNS] [DAEMON-FLAG...]
#
# The binaries come from target/release (built if missing), or from $SCIPCACHE_BIN if set (to
# compare two builds).
# One daemon on a temporary data dir (extra flags, e.g. `--verify-hot-reads false`, go to it).
# Compared, each RUNS times (median):
#   push:  `scipcache push` of FILE into a tenant that holds none of its chunks (a new tenant
#          per run, so every push is a first push)  vs  `zstd -3 FILE -o OUT`
#   pull:  `scipcache pull -o OUT` of FILE from the hot tier  vs  `zstd -d FILE.zst -o OUT`
# Before every push and pull the script waits until the daemon's write-behind queue is empty, so
# no run pays for the cold uploads of the one before. Prints hyperfine's table and the ratios.
# Needs hyperfine (Debian: apt-get install hyperfine), zstd and python3.
set -euo pipefail
file=$(realpath "$1") runs=${2:-5}
shift $(($# < 2 ? $# : 2))
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SCIPCACHE_BIN:-$root/target/release}
[ -x "$bin/scipcached" ] && [ -x "$bin/scipcache" ] ||
  cargo build --release --manifest-path "$root/Cargo.toml" -p scipcache-daemon -p scipcache-client
dir=$(mktemp -d)
"$bin/scipcached" --data-dir "$dir/data" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "$@" \
  >"$dir/log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do grep -q 'scipcached ready' "$dir/log" && break; sleep 0.1; done
addr=$(sed -n 's/.*scipcached ready grpc=\([^ ]*\).*/\1/p' "$dir/log" | head -1)
token() { "$bin/scipcached" token --data-dir "$dir/data" --tenant "$1" --scope "$2" 2>/dev/null; }
cli="$bin/scipcache --server http://$addr"
op=$(token '*' '*:admin')
# Waits until the cold write-behind of earlier pushes is done (at most 60 s).
cat >"$dir/settle" <<EOF
#!/usr/bin/env bash
for _ in \$(seq 600); do
  q=\$($cli --token $op --json stat | python3 -c 'import json,sys; print(json.load(sys.stdin).get("cold_queue", 0))')
  [ "\$q" = 0 ] && exit 0
  sleep 0.1
done
EOF
# A fresh tenant for the next push, so that all its chunks are new.
cat >"$dir/next-tenant" <<EOF
#!/usr/bin/env bash
tenant=t\$(date +%s%N)
echo "\$tenant" >"$dir/push-tenant"
"$bin/scipcached" token --data-dir "$dir/data" --tenant "\$tenant" --scope '*:write' \
  2>/dev/null >"$dir/push-token"
"$dir/settle"
EOF
chmod +x "$dir/settle" "$dir/next-tenant"
zstd -q -3 -f "$file" -o "$dir/in.zst"
reader=$(token bench '*:write')
$cli --token "$reader" push bench/perf/index commit/one "$file" >/dev/null
"$dir/settle"
hyperfine --style basic --runs "$runs" --warmup 1 --export-json "$dir/push.json" \
  --prepare "$dir/next-tenant" \
  -n push "$cli --token \$(cat $dir/push-token) push \$(cat $dir/push-tenant)/perf/index commit/one $file" \
  -n 'zstd -3' "zstd -q -3 -f $file -o $dir/out.zst"
hyperfine --style basic --runs "$runs" --warmup 1 --export-json "$dir/pull.json" \
  --prepare "$dir/settle" \
  -n pull "$cli --token $reader pull bench/perf/index commit/one -o $dir/out.pull" \
  -n 'zstd -d' "zstd -q -d -f $dir/in.zst -o $dir/out.raw"
cmp "$dir/out.pull" "$file"
python3 - "$dir/push.json" "$dir/pull.json" "$(stat -c %s "$file")" <<'PY'
import json, sys
size = int(sys.argv[3])
for path in sys.argv[1:3]:
    r = {x["command"]: x["median"] for x in json.load(open(path))["results"]}
    (ours, t), (ref, z) = list(r.items())
    print(f"{ours}: median {t:.3f} s ({size / t / 1e6:.0f} MB/s), {ref}: {z:.3f} s "
          f"({size / z / 1e6:.0f} MB/s), ratio {t / z:.2f}x")
PY
