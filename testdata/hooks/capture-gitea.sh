#!/usr/bin/env bash
# Captures real webhook deliveries of a Gitea with Actions enabled, as
# testdata/hooks/README.md describes: a repository ci/app whose workflow runs
# on pull requests, a webhook to a listener on loopback that writes each
# delivery as it arrived (request line, headers, body), a pull request whose
# base branch moved after the branch was made, its run cancelled (no runner
# takes it), re-run, cancelled again, and the pull request closed.
#
# Usage: GITEA=/path/to/gitea GITEA_SRC=/its/source/tree testdata/hooks/capture-gitea.sh OUTDIR
# GITEA_SRC is the tree the binary was built from: a build without the
# bindata tag reads its locales and templates from there. It needs git,
# curl, jq and python3, and runs everything on 127.0.0.1.
set -euo pipefail

gitea=${GITEA:?set GITEA to a gitea binary}
src=${GITEA_SRC:?set GITEA_SRC to the source tree gitea was built from}
out=${1:?usage: capture-gitea.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
port=${GITEA_PORT:-3300}
lport=${LISTEN_PORT:-3399}
secret=capture-secret-0123
user=ci
pass=capture-password-0123
base=http://127.0.0.1:$port

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# The listener: one file per delivery, numbered in arrival order.
cat >"$work/listen.py" <<'PY'
import http.server, os, sys, itertools
out, port = sys.argv[1], int(sys.argv[2])
n = itertools.count(1)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        event = self.headers.get("X-Gitea-Event", "none")
        with open(os.path.join(out, "%02d-%s.http" % (next(n), event)), "wb") as f:
            f.write(("%s %s %s\r\n" % (self.command, self.path, self.request_version)).encode())
            # Each header as sent, one line each: bytes(self.headers)
            # would fold the long signature lines.
            for k, v in self.headers.items():
                f.write(("%s: %s\r\n" % (k, v)).encode())
            f.write(b"\r\n")
            f.write(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"action":"ignored"}')
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 "$work/listen.py" "$out" "$lport" &
pids+=($!)

mkdir -p "$work/custom/conf" "$work/data" "$work/log"
cat >"$work/custom/conf/app.ini" <<INI
APP_NAME = capture
RUN_USER = $(id -un)
RUN_MODE = prod
WORK_PATH = $work
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
ROOT_URL = $base/
DISABLE_SSH = true
OFFLINE_MODE = true
APP_DATA_PATH = $work/data
STATIC_ROOT_PATH = $src

[database]
DB_TYPE = sqlite3
PATH = $work/data/gitea.db

[repository]
ROOT = $work/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
ALLOWED_HOST_LIST = loopback
SECRET_KEY = $("$gitea" generate secret SECRET_KEY)
INTERNAL_TOKEN = $("$gitea" generate secret INTERNAL_TOKEN)

[oauth2]
JWT_SECRET = $("$gitea" generate secret JWT_SECRET)

[service]
DISABLE_REGISTRATION = true

[actions]
ENABLED = true

[log]
MODE = file
ROOT_PATH = $work/log
LEVEL = info
INI
cfg=(--config "$work/custom/conf/app.ini" --work-path "$work")
"$gitea" "${cfg[@]}" migrate >/dev/null
"$gitea" "${cfg[@]}" admin user create --username "$user" --password "$pass" \
	--email ci@example.com --admin --must-change-password=false >/dev/null
"$gitea" "${cfg[@]}" web >"$work/log/web.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "$base/api/healthz" >/dev/null 2>&1 && break; sleep 0.3; done
"$gitea" "${cfg[@]}" --version >"$out/gitea-version.txt"

token=$("$gitea" "${cfg[@]}" admin user generate-access-token --username "$user" --token-name capture --scopes all --raw)
api() {
	local method=$1 path=$2
	shift 2
	curl -fsS -X "$method" -H "Authorization: token $token" -H 'Content-Type: application/json' "$base/api/v1$path" "$@"
}

api POST /user/repos -d '{"name": "app", "auto_init": false, "default_branch": "main"}' >/dev/null
api POST /repos/$user/app/hooks -d "$(jq -n --arg url "http://127.0.0.1:$lport/hooks/gitea" --arg secret "$secret" \
	'{type: "gitea", active: true, events: ["push", "pull_request", "workflow_run"],
	  config: {url: $url, content_type: "json", secret: $secret}}')" >/dev/null

# main: a workflow on pull requests; feature: a change off it; then main moves
# on, so that the pull request's merge base is not main's tip.
git init -q -b main "$work/app"
cd "$work/app"
git config user.name ci && git config user.email ci@example.com
mkdir -p .gitea/workflows
cat >.gitea/workflows/test.yml <<'YML'
on: pull_request
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo testing
YML
echo v1 >app.txt
git add -A && git commit -qm first
git checkout -qb feature && echo new >feature.txt && git add -A && git commit -qm feature
git checkout -q main && echo v2 >app.txt && git commit -qam second
remote="http://$user:$pass@127.0.0.1:$port/$user/app.git"
git push -q "$remote" main feature
git rev-parse main~1 main feature >"$out/shas.txt" # merge base, main's tip, feature
# Gitea takes pushes in from a queue: wait until it knows the branch.
for _ in $(seq 100); do api GET /repos/$user/app/branches/feature >/dev/null 2>&1 && break; sleep 0.3; done

api POST /repos/$user/app/pulls -d '{"title": "feature", "head": "feature", "base": "main"}' >/dev/null
wait_run() { # wait_run STATUS: the latest run of the repository has it
	for _ in $(seq 100); do
		if api GET "/repos/$user/app/actions/runs" | jq -e --arg s "$1" '.workflow_runs[0].status == $s' >/dev/null; then
			return 0
		fi
		sleep 0.3
	done
	echo "no run reached $1" >&2
	return 1
}
wait_run queued
run=$(api GET "/repos/$user/app/actions/runs" | jq -r '.workflow_runs[0].id')

# No runner takes the run: cancel it through the web UI, as a user would.
jar="$work/cookies"
curl -fsS -c "$jar" -b "$jar" -o /dev/null "$base/user/login"
curl -fsS -c "$jar" -b "$jar" -o /dev/null --data-urlencode "user_name=$user" --data-urlencode "password=$pass" "$base/user/login"
curl -fsS -c "$jar" -b "$jar" -o /dev/null -X POST "$base/$user/app/actions/runs/$run/cancel"
wait_run completed
sleep 2
api POST "/repos/$user/app/actions/runs/$run/rerun" >/dev/null
wait_run queued
sleep 2
curl -fsS -c "$jar" -b "$jar" -o /dev/null -X POST "$base/$user/app/actions/runs/$run/cancel"
wait_run completed
api PATCH /repos/$user/app/pulls/1 -d '{"state": "closed"}' >/dev/null
sleep 5
echo "run $run; deliveries in $out:"
ls "$out"
