# Sourced helpers to install Debian packages when a command is missing.
install_with_apt() {
  local packages=("$@")
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "Please install ${packages[*]} (apt-get install ${packages[*]})." >&2
      exit 2
    fi
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
}
