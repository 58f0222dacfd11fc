# Sourced by scripts/dev and scripts/test: creates .venv with the project on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "EventHunting needs Python 3.11 or newer as '$python' (set PYTHON=...)." >&2
  exit 2
fi

stamp=.venv/.installed
if [ ! -x .venv/bin/eventhunting ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "Setting up .venv (first use or dependencies changed)..." >&2
  if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
      echo "python venv is missing; installing it with apt-get..." >&2
      install_with_apt "python3-venv"
      rm -rf .venv && "$python" -m venv .venv
    fi
  fi
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet --progress-bar off -e '.[dev,embedded,standins,analytics]'
  touch "$stamp"
fi
