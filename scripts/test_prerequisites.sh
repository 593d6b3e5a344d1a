#!/usr/bin/env bash
# What the test suite needs beyond the Python packages of the lock file, set up by `make test` itself:
#   - Debian's chromium for the MLflow UI browser test (Playwright cannot download its own browser here);
#     installed with apt-get as root or through password-less sudo, otherwise one line saying what to run;
#   - a git identity for the tests that commit in temporary repositories (only when none is configured,
#     and only for the tests' own process: the user's git config is never written).
# Prints the environment lines for the test run (`eval "$(scripts/test_prerequisites.sh)"`).
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root=(sudo -n)
  else
    echo "make test: the browser test needs Debian's chromium, and this user cannot install it (not root, no password-less sudo): run 'sudo apt-get install -y chromium' once, then make test" >&2
    exit 1
  fi
  echo "make test: installing Debian's chromium for the browser test (apt-get, once)" >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  command -v chromium >/dev/null 2>&1 || { echo "make test: apt-get installed no chromium command" >&2; exit 1; }
fi

git config --get user.email >/dev/null 2>&1 || echo "export GIT_AUTHOR_EMAIL=tests@spatialflow-repro.invalid GIT_COMMITTER_EMAIL=tests@spatialflow-repro.invalid"
git config --get user.name >/dev/null 2>&1 || echo "export GIT_AUTHOR_NAME='SpatialFlow-Repro tests' GIT_COMMITTER_NAME='SpatialFlow-Repro tests'"
