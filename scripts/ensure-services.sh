#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379) answer, starting
# them (and, as root on Debian, installing them) when they do not, and that Debian's Chromium is there
# for the dashboard's browser tests. Tests talk to all of them for real.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

if ! up 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1 && command -v apt-get >/dev/null; then
    echo "installing PostgreSQL" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  echo "starting PostgreSQL" >&2
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  for _ in $(seq 30); do up 5432 && break; sleep 1; done
fi
up 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
if ! psql -h 127.0.0.1 -U postgres -Atc "select 1 from pg_database where datname='test'" 2>/dev/null | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -c "create database test" >/dev/null 2>&1 || true
fi

if ! up 6379; then
  if ! command -v redis-server >/dev/null && command -v apt-get >/dev/null; then
    echo "installing Redis" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  echo "starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 30); do up 6379 && break; sleep 1; done
fi
up 6379 || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  echo "installing Chromium (browser tests)" >&2
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
[ -x /usr/bin/chromium ] || { echo "Chromium is missing: install Debian's chromium package" >&2; exit 1; }
echo "services: PostgreSQL and Redis are up; Chromium is installed" >&2
