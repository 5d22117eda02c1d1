#!/usr/bin/env bash
# Times a runner's fetch of one pipeline ref through refkeeper's HTTP, in a
# repository with N packed pipeline refs against one with a single ref: with
# the API token (protocol v2, by ref) and with the pin's scoped fetch token
# (v0 by ref, v2 by ref, v2 by SHA).
#   scripts/bench-fetch.sh [N=100000] [ROUNDS=20]
# BENCH_DIR picks the directory the repositories live in (for example
# /dev/shm against a disk); default: $TMPDIR or /tmp.
set -euo pipefail
N=${1:-100000}
ROUNDS=${2:-20}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
(cd "$top" && go build -o "$work/refkeeper" ./cmd/refkeeper)
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null LC_ALL=C
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com

make_repo() { # name refs
  local dir=$work/repos/bench/$1.git
  git init -q --bare "$dir"
  local tree commit
  tree=$(printf 'hello\n' | git --git-dir "$dir" hash-object -w --stdin | xargs -I{} printf '100644 blob {}\tREADME\n' | git --git-dir "$dir" mktree)
  commit=$(git --git-dir "$dir" commit-tree -m bench "$tree")
  git --git-dir "$dir" update-ref refs/heads/main "$commit"
  # Write packed-refs directly: 100k loose refs would take minutes to create.
  { echo "# pack-refs with: peeled fully-peeled sorted "
    echo "$commit refs/heads/main"
    seq 1 "$2" | sed "s|^|$commit refs/pipelines/|" ; } | LC_ALL=C sort -k2 > "$dir/packed-refs.tmp"
  grep -v '^# pack' "$dir/packed-refs.tmp" > "$dir/packed-refs.body"
  { echo "# pack-refs with: peeled fully-peeled sorted "; cat "$dir/packed-refs.body"; } > "$dir/packed-refs"
  rm -f "$dir/packed-refs.tmp" "$dir/packed-refs.body"
  echo "$commit"
}
sha_many=$(make_repo many "$N")
sha_one=$(make_repo one 0)
token=bench-token-0123456789
# --role api: no sweep adopting the 100k refs (and taking the embedded
# Redis) while fetches are timed.
"$work/refkeeper" serve --role api --listen 127.0.0.1:0 --repos "$work/repos" --tokens $token 2>"$work/log" >/dev/null &
pid=$!
addr=
for _ in $(seq 100); do
  addr=$(grep -so '"msg":"refkeeper serving","addr":"[^"]*"' "$work/log" | cut -d'"' -f8 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "refkeeper did not start:" >&2; cat "$work/log" >&2; exit 1; }
base=http://$addr
pin() { curl -sf -H "Authorization: Bearer $token" -X PUT "$base/api/v1/projects/bench%2F$1/pipelines/$2/ref" -d "{\"sha\":\"$3\"}"; }
ftok_many=$(pin many $((N + 1)) "$sha_many" | sed 's/.*"fetch_token":"\([^"]*\)".*/\1/')
ftok_one=$(pin one 1 "$sha_one" | sed 's/.*"fetch_token":"\([^"]*\)".*/\1/')
fetch_ms() { # repo credential protocol what: one fetch into an empty repository
  local t0 t1
  rm -rf "$work/run" && git init -q "$work/run"
  t0=$(date +%s%N)
  git -C "$work/run" -c http.extraHeader="Authorization: Bearer $2" -c protocol.version="$3" \
    fetch -q --depth=1 --no-tags "$base/git/bench/$1.git" "$4"
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
ref_one="+refs/pipelines/1:refs/pipelines/1" ref_many="+refs/pipelines/$((N + 1)):refs/pipelines/$((N + 1))"
# The two sizes alternate round by round and the median is kept, so that
# what else the machine does at the moment weighs on both alike.
row() { # label credential-one credential-many protocol what-one what-many
  local one=() many=() m1 mn
  for _ in $(seq "$ROUNDS"); do
    one+=("$(fetch_ms one "$2" "$4" "$5")")
    many+=("$(fetch_ms many "$3" "$4" "$6")")
  done
  m1=$(printf '%s\n' "${one[@]}" | median); mn=$(printf '%s\n' "${many[@]}" | median)
  echo "| $1 | ${m1} ms | ${mn} ms | $(awk "BEGIN{printf \"%.2f\", $mn/($m1>0?$m1:1)}") |"
}
echo "repositories in $(df --output=source,fstype "$work" | tail -1 | tr -s ' '), median of $ROUNDS rounds"
echo
echo "| fetch of one pipeline ref | 1 ref | $N refs | ratio |"
echo "|---|---|---|---|"
row "API token, v2, by ref" $token $token 2 "$ref_one" "$ref_many"
row "fetch token, v0, by ref" "$ftok_one" "$ftok_many" 0 "$ref_one" "$ref_many"
row "fetch token, v2, by ref" "$ftok_one" "$ftok_many" 2 "$ref_one" "$ref_many"
row "fetch token, v2, by SHA" "$ftok_one" "$ftok_many" 2 "$sha_one" "$sha_many"
