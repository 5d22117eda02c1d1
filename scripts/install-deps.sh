#!/usr/bin/env bash
# Installs what building and testing refkeeper needs, if it is missing:
# libgit2 (cgo, for git2go), pkg-config, git (the write path and the runner
# side of the tests), redis-server and redis-sentinel (the tests start their
# own, and fail a master over to its replica), and the tools the deploy/ tests run: helm (built from the Go module proxy) and
# promtool (taken from Debian's prometheus package, without installing or
# starting the server), and chromium (headless, for the web page's browser
# test).
set -euo pipefail

# The helm the chart is checked with. Building it takes minutes the first
# time; an installed helm of any version is used as it is.
HELM_VERSION=v4.3.2

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=""
apt_update() {
  if [ -z "$apt_updated" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
}

missing=()
pkg-config --exists libgit2 2>/dev/null || missing+=(libgit2-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v git >/dev/null || missing+=(git)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v gcc >/dev/null || missing+=(gcc)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt_update
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# promtool is one static binary inside Debian's prometheus package; the
# package itself would also install and start a Prometheus server.
if ! command -v promtool >/dev/null; then
  echo "installing: promtool (from Debian's prometheus package)" >&2
  apt_update
  tmp=$(mktemp -d)
  # As root, apt downloads as its own user, which must be able to write here.
  [ -n "$sudo" ] || chown _apt "$tmp" 2>/dev/null || true
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
  $sudo install -m 0755 "$tmp/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$tmp"
fi

if ! command -v helm >/dev/null; then
  echo "installing: helm $HELM_VERSION (built from the Go module proxy; a few minutes)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS= go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
  $sudo install -m 0755 "$tmp/bin/helm" /usr/local/bin/helm
  rm -rf "$tmp"
fi
