# Shared by scripts/serve and scripts/test: the virtual environment and Debian packages.
VENV=${EBAS_LOGIN_VENV:-.venv}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "Installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_venv() {
  [ -x "$VENV/bin/python" ] && return 0
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "ebas-login needs Python 3.11 or newer; python3 is $(python3 --version 2>&1)" >&2
    exit 1
  fi
  python3 -m venv "$VENV" 2>/dev/null || {
    apt_install python3-venv
    python3 -m venv "$VENV"
  }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
}
