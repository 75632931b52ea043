#!/usr/bin/env bash
# Stored bytes of one SCIP series under four peers: restic, borg, casync and plain zstd -3.
#
#   bench/peers/series.sh [--pin[=STRING]] [--name NAME] [--tools LIST] DIR
#
# DIR holds `NN_<sha-prefix>.scip.zst` files (zstd --long=27), one per commit, oldest first.
# They are decompressed into a scratch dir under ${TMPDIR:-/tmp} (removed at exit) and pushed in
# order, each as the same path `index.scip` (what a CI job pushes), into one repository per tool:
#   restic  `restic init` (RESTIC_PASSWORD fixed, repository v2, compression auto), `restic backup`
#   borg    `borg init -e none`, `borg create --compression zstd,3`
#   casync  `casync make --store=STORE NN.caibx FILE`, one shared store, default chunk sizes;
#           stored = the store plus the .caibx indexes
#   zstd    `zstd -3` per file; stored = the sum of the .zst sizes, a commit adds its .zst
# After every push the repository is measured: apparent bytes (sum of its files' sizes) and
# on-disk bytes (`du -s -B1`, directories included). A commit's cost is the apparent size after it
# minus the size before it (the empty repository counts in stored_bytes, not in commit 1).
#
# --pin makes the "pinned" twin: in each file the 40-hex commit SHA starting with the file name's
# prefix is replaced by STRING (default 40 zeros; must be 40 characters), as if the indexer had
# been given a fixed project version. The series is then named `<name>-pinned`.
# --tools picks a comma-separated subset of restic,borg,casync,zstd (default all four).
#
# Output: one JSON line per tool on stdout (tool, series, files, input_bytes, stored_bytes,
# stored_bytes_on_disk, first_commit_bytes, next_commit_bytes = the costs of commits 2..n,
# next_commit_median, seconds = wall time of all pushes) and a table on stderr.
# Needs restic, borg, casync, zstd, python3. A benchmark: .ci/run does not run it.
set -euo pipefail

pin="" name="" tools="restic,borg,casync,zstd"
while [ $# -gt 0 ]; do
  case "$1" in
  --pin) pin=0000000000000000000000000000000000000000 ;;
  --pin=*) pin=${1#--pin=} ;;
  --name) name=$2; shift ;;
  --tools) tools=$2; shift ;;
  -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "unknown flag $1" >&2; exit 2 ;;
  *) break ;;
  esac
  shift
done
[ $# -eq 1 ] || { echo "usage: $0 [--pin[=STRING]] [--name NAME] [--tools LIST] DIR" >&2; exit 2; }
src=$(realpath "$1")
[ -n "$name" ] || name=$(basename "$src")
if [ -n "$pin" ]; then
  [ ${#pin} -eq 40 ] || { echo "--pin STRING must be 40 characters" >&2; exit 2; }
  name="$name-pinned"
fi
mapfile -t inputs < <(find "$src" -maxdepth 1 -name '[0-9]*_*.scip.zst' | sort)
[ ${#inputs[@]} -gt 0 ] || { echo "no NN_*.scip.zst in $src" >&2; exit 1; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/peers.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/in" "$scratch/push"
results="$scratch/results.tsv"
: >"$results"

# Decompress (and pin) every commit.
files=()
for f in "${inputs[@]}"; do
  base=$(basename "$f" .scip.zst)
  out="$scratch/in/$base.scip"
  zstd -q -d --long=27 "$f" -o "$out"
  if [ -n "$pin" ]; then
    python3 - "$out" "${base#*_}" "$pin" <<'PY'
import re, sys
path, prefix, fixed = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
data = open(path, "rb").read()
pattern = rb"(?<![0-9a-f])" + re.escape(prefix) + rb"[0-9a-f]{%d}(?![0-9a-f])" % (40 - len(prefix))
shas = set(re.findall(pattern, data))
if len(shas) != 1:
    sys.exit(f"{path}: expected one SHA starting {prefix.decode()}, found {len(shas)}")
sha = shas.pop()
n = data.count(sha)
open(path, "wb").write(data.replace(sha, fixed))
print(f"pinned {path.rsplit('/', 1)[-1]}: {sha.decode()} x {n}", file=sys.stderr)
PY
  fi
  files+=("$out")
done

# Apparent = the sum of the regular files' sizes (directory entries left out: restic's 256 empty
# data/ folders alone are ~1 MB); on-disk = allocated blocks, directories included.
apparent() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
on_disk() { du -s -B1 "$1" | cut -f1; }
now() { date +%s.%N; }

# push TOOL REPO FILE K: one commit into the tool's repository.
push() {
  local tool=$1 repo=$2 file=$3 k=$4
  ln -f "$file" "$scratch/push/index.scip"
  case "$tool" in
  restic) (cd "$scratch/push" && restic -q -r "$repo" backup --host bench index.scip >/dev/null) ;;
  borg) (cd "$scratch/push" && borg create --compression zstd,3 "$repo::c$k" index.scip) ;;
  casync) casync make --store="$repo/store" "$repo/$(printf %02d "$k").caibx" "$file" >/dev/null ;;
  zstd) zstd -q -3 "$file" -o "$repo/$(printf %02d "$k").zst" ;;
  esac
}

export RESTIC_PASSWORD=scipcache-bench RESTIC_CACHE_DIR="$scratch/restic-cache"
export BORG_BASE_DIR="$scratch/borg-base" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
IFS=, read -ra chosen <<<"$tools"
for tool in "${chosen[@]}"; do
  repo="$scratch/repo-$tool"
  case "$tool" in
  restic) restic -q init -r "$repo" >/dev/null ;;
  borg) borg init -e none "$repo" ;;
  casync) mkdir -p "$repo/store" ;;
  zstd) mkdir -p "$repo" ;;
  *) echo "unknown tool $tool" >&2; exit 2 ;;
  esac
  printf '%s\t0\t%s\t%s\t0\n' "$tool" "$(apparent "$repo")" "$(on_disk "$repo")" >>"$results"
  k=0
  for file in "${files[@]}"; do
    k=$((k + 1))
    t0=$(now)
    push "$tool" "$repo" "$file" "$k"
    t1=$(now)
    a=$(apparent "$repo")
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$k" "$a" "$(on_disk "$repo")" \
      "$(awk "BEGIN {print $t1 - $t0}")" >>"$results"
    echo "$tool $name commit $k: $a bytes" >&2
  done
  rm -rf "$repo"
done

input_bytes=$(cat "${files[@]}" | wc -c)
python3 - "$results" "$name" "${#files[@]}" "$input_bytes" <<'PY'
import json, statistics, sys
path, series, n, input_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = {}
for line in open(path):
    tool, k, a, d, s = line.split("\t")
    rows.setdefault(tool, []).append((int(k), int(a), int(d), float(s)))
mb = lambda b: f"{b / 1e6:.2f}"
table = [("tool", "series", "files", "input MB", "stored MB", "on-disk MB", "1st MB",
          "next median MB", "next (MB, k=2..n)", "s")]
for tool, r in rows.items():
    r.sort()
    sizes = [a for _, a, _, _ in r]
    added = [sizes[k] - sizes[k - 1] for k in range(1, len(sizes))]
    nxt = added[1:]
    rec = {
        "tool": tool, "series": series, "files": n, "input_bytes": input_bytes,
        "stored_bytes": sizes[-1], "stored_bytes_on_disk": r[-1][2],
        "first_commit_bytes": added[0], "next_commit_bytes": nxt,
        "next_commit_median": statistics.median(nxt) if nxt else None,
        "seconds": round(sum(s for *_, s in r), 2),
    }
    print(json.dumps(rec), flush=True)
    table.append((tool, series, str(n), mb(input_bytes), mb(rec["stored_bytes"]),
                  mb(rec["stored_bytes_on_disk"]), mb(added[0]),
                  mb(rec["next_commit_median"]) if nxt else "-",
                  " ".join(f"{b / 1e6:.2f}" for b in nxt), f"{rec['seconds']:.1f}"))
w = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
for row in table:
    print("  ".join(c.ljust(w[i]) if i in (0, 1, 8) else c.rjust(w[i]) for i, c in enumerate(row)),
          file=sys.stderr)
PY
