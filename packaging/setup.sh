#!/usr/bin/env bash
# Set-up command 1: Debian packages (when root), the .venv with Backline and its models' runtime, then the
# main job on the embedded default: render the bundled demo song, analyse it, generate bass and drums for it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing Debian packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(grep -v '^#' packaging/apt-packages.txt | xargs) >/dev/null
else
  echo "==> not root: make sure these Debian packages are installed:" $(grep -v '^#' packaging/apt-packages.txt | xargs)
fi

echo "==> creating .venv and installing Backline"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e . 2>&1 | grep -v -e '^WARNING: Location' -e 'is ignored' || true
# Packages whose default dependencies would drag in what we must not have (e.g. TensorFlow) are listed,
# with the reason, in packaging/requirements-nodeps.txt and installed without their dependencies.
if [ -s packaging/requirements-nodeps.txt ]; then
  .venv/bin/python -m pip install -q --no-deps -r packaging/requirements-nodeps.txt 2>&1 | grep -v -e '^WARNING: Location' -e 'is ignored' || true
fi
.venv/bin/backline --version

echo "==> main job"
.venv/bin/backline demo
