#!/usr/bin/env bash
# System packages for the end-to-end tests: Chromium (dashboard browser test) and a PostgreSQL
# server (shared-storage test), both from Debian. Installed only when running as root with apt;
# otherwise the tests that need them say what is missing and skip.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "note: not root or no apt-get; install ${need[*]} yourself for the browser/PostgreSQL tests" >&2
fi
