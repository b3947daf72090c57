#!/usr/bin/env bash
# Debian packages the engine-agnostic tests need: a PostgreSQL server (started by the tests on
# a free port) and a Java 17 runtime for Spark's local mode. Installs only what is missing.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
[ "${#missing[@]}" -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "Install as root: apt-get install ${missing[*]}"; exit 1; }
  sudo="sudo"
fi
echo "Installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
