#!/usr/bin/env bash
# Windows tier: build the Windows CPython 3.12 (under Wine) that tests/windows runs asgigw on.
#
#   bash .ci/windows-setup.sh            # builds into $ASGIGW_WINPY or /tmp/asgigw-winpy
#
# The build itself is ../shared/windows/setup.sh (beside the repo, as in CI). A stamp file
# records what the folder was built from, so a second run is instant when nothing changed.
# Then: ASGIGW_WINPY=/tmp/asgigw-winpy .venv/bin/python -m pytest tests/windows
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared="$repo/../shared/windows"
target="${ASGIGW_WINPY:-/tmp/asgigw-winpy}"
# Runtime dependencies of gateway/ as win_amd64 wheels. pip resolves markers for Linux, so
# the Windows-only ones are named here: colorama (click on Windows), cffi (cryptography),
# tzdata (Django on Windows). cryptography itself is pinned by setup.sh. Django, Channels
# and asgiref serve the chat example (tests/windows/test_windows_chat.py). winloop and httptools
# are the fast extra (win_amd64 wheels; native_checks.py proves --loop auto falls back).
requirements=(h11 h2 wsproto click trustme colorama cffi django channels asgiref tzdata winloop httptools)

stamp_text() {
  printf 'project=%s\nrequirements=%s\nsetup=%s\n' "$repo" "${requirements[*]}" \
    "$(sha256sum "$shared/setup.sh" | cut -d' ' -f1)"
}

if [ -f "$target/py/python.exe" ] && [ -d "$target/prefix" ] && command -v wine >/dev/null \
  && [ -f "$target/asgigw-stamp" ] && [ "$(cat "$target/asgigw-stamp")" = "$(stamp_text)" ]; then
  echo "windows-setup: $target is up to date"
  exit 0
fi
rm -f "$target/asgigw-stamp"
bash "$shared/setup.sh" "$target" "$repo" "${requirements[@]}"
stamp_text > "$target/asgigw-stamp"
echo "windows-setup: built $target"
