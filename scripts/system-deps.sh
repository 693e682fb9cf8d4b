#!/usr/bin/env bash
# The Debian packages the test suite needs besides npm's: openssl (the TLS certificates of
# test/cancel-tls.test.ts), pgbouncer (test/poolers.test.ts and the pooler case of
# test/sql-control.test.ts) and tmux (the real terminal test/cli.test.ts reads
# `pg-background list --watch` from). `npm test` runs this first: as root with apt-get it
# installs whatever is missing; otherwise it names what is missing, and the tests that need it
# fail saying so (every test runs: none is skipped).
set -uo pipefail
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
{ command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; } || need+=(pgbouncer)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  echo "[system-deps] installing ${need[*]} (apt-get)" >&2
  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; } \
    || echo "[system-deps] could not install ${need[*]}: the tests that need them will fail" >&2
else
  echo "[system-deps] missing ${need[*]} (not root, or no apt-get): install them, or the tests that need them fail" >&2
fi
exit 0
