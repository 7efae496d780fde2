#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to run platestream's tests and demo:
# Python 3.11+ with venv, a Java runtime (17+) and Maven for the local Kafka broker, and
# PostgreSQL for the tests of the PostgreSQL store, the fonts the plate renderer draws with
# (training data for the plate reader, and its tests), and Chromium for the console's browser test.
set -euo pipefail

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v java >/dev/null || need+=(default-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v make >/dev/null || need+=(make)
# The PostgreSQL store's tests start a throwaway server of the machine's PostgreSQL.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -e /usr/share/fonts/truetype/opendin/OSP-DIN.ttf ] || need+=(fonts-opendin)
[ -e /usr/share/fonts/opentype/bebas-neue/BebasNeue-Regular.otf ] || need+=(fonts-bebas-neue)
[ -e /usr/share/fonts/truetype/roadgeek/RG2014D.ttf ] || need+=(fonts-roadgeek)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf ] || need+=(fonts-dejavu-extra)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# The web console's browser test drives Debian's Chromium (Playwright downloads no browser of its own).
command -v chromium >/dev/null || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"platestream needs Python 3.11 or newer, found {sys.version.split()[0]}")
PY
java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
if [ "${java_major%%.*}" -lt 17 ]; then
  echo "the Kafka broker needs Java 17 or newer, found ${java_major}" >&2
  exit 1
fi
