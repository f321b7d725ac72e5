#!/usr/bin/env bash
# Installs the system programs Ensayo's tests and `ensayo up` use, when missing and possible:
# redis-server (a private Redis per test session) and npm (for buf). Never fails the build on
# a machine without apt: it says what to install instead.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing ${missing[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "warning: please install: ${missing[*]} (redis-server for tests and 'ensayo up', npm for buf)" >&2
fi
