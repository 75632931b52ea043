#!/usr/bin/env bash
# The four peers and scipcache's three cuttings on one SCIP series, in one run, in one table.
#
#   bench/peers/compare.sh SERIES_DIR [--pin[=STRING]]
#
# SERIES_DIR holds `NN_<sha-prefix>.scip.zst` files, oldest first (as for series.sh).
# 1. bench/peers/series.sh on SERIES_DIR: restic, borg, casync, zstd -3 per file.
# 2. The scip_store bench (bench/src/bin/scip_store.rs) on the same files: one fresh release
#    scipcached per cutting (plain, documents, normalized), the commits pushed in order through
#    the client library, the cold write-behind drained after each push.
# --pin[=STRING] runs both on the pinned twin: each file's commit SHA replaced by STRING
# (default 5f3c9a0e7b21d4c86e0f9b3a2d7c41e85a6b0f92, 40 characters), the same string for both.
#
# Builds what it runs (release; honours CARGO_TARGET_DIR; SCIPCACHE_BIN picks other daemon
# binaries). Prints one Markdown table on stdout, the tools' own output on stderr:
#   stored MB     peers: repository apparent size after all commits; scipcache: its cold tier
#                 folder (the durable copy, zstd packs) after the queue drained
#   1st MB        what commit 1 added to that
#   next MB       median of what commits 2..n added to that
#   next sent MB  scipcache only: median bytes a push of commits 2..n sent (lz4 frames,
#                 FindMissing ids, manifest; the peers send nothing, they write locally)
# and the ratios scipcache-normalized / best peer for stored bytes and next-commit bytes.
# Needs what series.sh needs (restic, borg, casync, zstd, python3). A benchmark: not run by CI.
set -euo pipefail
default_pin=5f3c9a0e7b21d4c86e0f9b3a2d7c41e85a6b0f92
pin="" dir=""
for arg in "$@"; do
  case "$arg" in
  --pin) pin=$default_pin ;;
  --pin=*) pin=${arg#--pin=} ;;
  -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "unknown flag $arg" >&2; exit 2 ;;
  *) [ -z "$dir" ] || { echo "one SERIES_DIR only" >&2; exit 2; }; dir=$arg ;;
  esac
done
[ -n "$dir" ] || { echo "usage: $0 SERIES_DIR [--pin[=STRING]]" >&2; exit 2; }
[ -z "$pin" ] || [ ${#pin} -eq 40 ] || { echo "--pin STRING must be 40 characters" >&2; exit 2; }
dir=$(realpath "$dir")
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cargo build -q --release --manifest-path "$root/Cargo.toml" -p scipcache-daemon -p scipcache-client
cargo build -q --release --manifest-path "$root/Cargo.toml" -p scipcache-bench --bin scip_store

scratch=$(mktemp -d "${TMPDIR:-/tmp}/compare.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
if [ -n "$pin" ]; then
  peer_args=(--pin="$pin")
  store_args=(--pinned "$dir" --pin "$pin")
else
  peer_args=()
  store_args=(--series "$dir")
fi
"$root/bench/peers/series.sh" "${peer_args[@]}" "$dir" >"$scratch/peers.jsonl"
SCIPCACHE_BIN=${SCIPCACHE_BIN:-$target/release} "$target/release/scip_store" "${store_args[@]}" \
  --json "$scratch/store.jsonl" >&2

python3 - "$scratch/peers.jsonl" "$scratch/store.jsonl" <<'PY'
import json, sys
peers = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
mb = lambda b: "-" if b is None else f"{b / 1e6:.2f}"
first = peers[0] if peers else ours[0]
name, files, size = first["series"], first["files"], first["input_bytes"]
print(f"#### {name}: {files} commits, {size / 1e6:.1f} MB in total\n")
print("| tool | stored MB | 1st MB | next MB, median | next sent MB, median (% of file) "
      "| data dir MB |")
print("|---|--:|--:|--:|--:|--:|")
for p in peers:
    print(f"| {p['tool']} | {mb(p['stored_bytes'])} | {mb(p['first_commit_bytes'])} "
          f"| {mb(p['next_commit_median'])} | - | - |")
for o in ours:
    sent = mb(o["next_sent_median"])
    if o["next_sent_pct_median"] is not None:
        sent += f" ({o['next_sent_pct_median']:.1f}%)"
    print(f"| scipcache {o['cutting']} | {mb(o['cold_bytes'])} | {mb(o['first_cold'])} "
          f"| {mb(o['next_cold_median'])} | {sent} | {mb(o['data_dir_bytes'])} |")
norm = next((o for o in ours if o["cutting"] == "normalized"), None)
if norm and peers:
    def ratio(ours_b, key):
        best = min(peers, key=lambda p: p[key] if p[key] is not None else float("inf"))
        b = best[key]
        if ours_b is None or b is None:
            return "-"
        if b == 0:
            return f"{mb(ours_b)} MB vs 0 ({best['tool']})"
        return f"{ours_b / b:.2f}x ({mb(ours_b)} vs {best['tool']} {mb(b)} MB)"
    print()
    print(f"- stored, scipcache normalized / best peer: {ratio(norm['cold_bytes'], 'stored_bytes')}")
    print(f"- next commit, scipcache normalized (cold growth) / best peer: "
          f"{ratio(norm['next_cold_median'], 'next_commit_median')}")
    print(f"- next commit, scipcache normalized (bytes sent) / best peer: "
          f"{ratio(norm['next_sent_median'], 'next_commit_median')}")
PY
