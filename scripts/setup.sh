#!/usr/bin/env bash
# Installs everything CityLine needs on Debian 12 and is safe to run again.
#   - Debian packages (sipp, debootstrap, espeak-ng, sox, ffmpeg, ...)
#   - the Python virtualenv in .venv with the project and its dependencies
#   - the Asterisk sandbox (Debian sid, built with debootstrap) unless a system Asterisk exists
#   - the browser libraries the pages use (JsSIP, uPlot) from npm, bundled into build/web
# Big downloads are cached outside the clone, under $CITYLINE_CACHE (default /var/cache/cityline).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CITYLINE_CACHE:-/var/cache/cityline}
mkdir -p "$cache"

log() { printf '[setup] %s\n' "$*" >&2; }

# ffmpeg: pydub compresses finished call recordings with it (Opus).
apt_packages=(debootstrap sip-tester espeak-ng sox ffmpeg ca-certificates python3-venv procps chromium)
# Node.js only to fetch and bundle the pages' libraries; a machine that has it keeps its own.
command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)

install_debian_packages() {
  local missing=()
  for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      log "missing Debian packages: ${missing[*]} (run this script as root to install them)"
      exit 1
    fi
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The mirror the host already uses, so the sandbox comes from the same place as every other package.
debian_mirror() {
  local uri
  uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || { log "cannot find a Debian mirror in /etc/apt"; exit 1; }
  printf '%s' "$uri"
}

# Debian 12 has no asterisk package; Debian sid does. Build a minimal sid root once and keep it.
install_asterisk_sandbox() {
  if [ -n "${CITYLINE_ASTERISK_BIN:-}" ] || command -v asterisk >/dev/null 2>&1; then
    log "using the system Asterisk"
    return
  fi
  local root="$cache/asterisk-sid"
  if [ -x "$root/usr/sbin/asterisk" ]; then
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "building the Asterisk sandbox needs root"
    exit 1
  fi
  local building="$root.building"
  rm -rf "$building"
  log "building the Asterisk sandbox in $root (about a minute, ~100 MB download)"
  debootstrap --variant=minbase \
    --include=asterisk,asterisk-modules,asterisk-moh-opsound-gsm,asterisk-core-sounds-en-gsm \
    sid "$building" "$(debian_mirror)" >"$cache/debootstrap.log" 2>&1 || {
      log "debootstrap failed; see $cache/debootstrap.log"; tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
  chroot "$building" apt-get clean
  mkdir -p "$building/run/asterisk"
  mv "$building" "$root"
}

install_python() {
  local venv="$here/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv"
  fi
  local stamp="$venv/.installed-$(sha256sum "$here/pyproject.toml" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    log "installing Python dependencies"
    PIP_CACHE_DIR="$cache/pip" "$venv/bin/pip" install -q --upgrade pip
    PIP_CACHE_DIR="$cache/pip" "$venv/bin/pip" install -q -e "$here[dev]"
    rm -f "$venv"/.installed-*
    touch "$stamp"
  fi
}

install_web() {
  # The pages' libraries are served by CityLine itself (no CDN): fetched once per lock file.
  local out="$here/build/web"
  local stamp="$out/.installed-$(sha256sum "$here/package-lock.json" | cut -c1-16)"
  [ -f "$stamp" ] && return
  log "installing the browser libraries (npm)"
  (cd "$here" && npm ci --cache "$cache/npm" --no-audit --no-fund --loglevel=error >/dev/null)
  rm -rf "$out" && mkdir -p "$out"
  # JsSIP ships CommonJS only: bundle it into one script a page can load.
  (cd "$here" && node_modules/.bin/esbuild node_modules/jssip/lib/JsSIP.js --bundle \
    --format=iife --global-name=JsSIP --minify --log-level=warning --outfile="$out/jssip.min.js")
  cp "$here/node_modules/uplot/dist/uPlot.iife.min.js" "$here/node_modules/uplot/dist/uPlot.min.css" "$out/"
  touch "$stamp"
}

render_prompts() {
  # Prompts are rendered once and cached (voices are slow; calls must not wait for them).
  CITYLINE_CACHE="$cache" "$here/.venv/bin/cityline" prompts >/dev/null
}

install_debian_packages
install_asterisk_sandbox
install_python
install_web
render_prompts
log "ready"
