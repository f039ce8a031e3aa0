#!/usr/bin/env bash
# The one abi3 wheel on every CPython it claims (>= 3.10) that this machine has, besides the
# main interpreter (.venv's, which runs the whole suite). Run by `make py-versions`, after
# `make wheel-check` built target/wheels/*.whl:
#
#   scripts/interpreters.sh MAIN_MINOR TEST_FILE...
#
# Each other minor version is looked for in pyenv's versions (the newest 3.X.Y there, not a
# free-threaded 3.X.Yt, which abi3 does not serve) and then as python3.X on PATH (pyenv's
# shims left out: they fail for a version that is not installed). Found: a venv of its own
# under target/ (kept between runs; its test packages installed once per change of
# requirements-smoke.txt), the wheel installed into it afresh, the test files run from there
# (the package imported from site-packages, never from python/). Absent: a line says so.
set -euo pipefail
cd "$(dirname "$0")/.."
main=$1
shift
minors=(3.10 3.11 3.12 3.13 3.14)
shopt -s nullglob
wheels=(target/wheels/*.whl)
if [ ${#wheels[@]} -ne 1 ]; then
	echo "py-versions: expected one wheel in target/wheels (make wheel-check), found ${#wheels[@]}" >&2
	exit 1
fi
wheel=${wheels[0]}
pyenv_versions=${PYENV_ROOT:-$HOME/.pyenv}/versions

find_python() {
	local minor=$1 d p
	# The highest patch release in pyenv's versions (sort -V: 3.10.13 after 3.10.9).
	p=$(for d in "$pyenv_versions/$minor".*; do
		case ${d##*/} in *[!0-9.]*) continue ;; esac  # 3.13.0t, 3.12-dev: not the plain build
		[ -x "$d/bin/python$minor" ] && echo "${d##*/} $d/bin/python$minor"
	done | sort -V | tail -n 1 | cut -d' ' -f2)
	if [ -n "$p" ]; then
		echo "$p"
		return
	fi
	while read -r p; do
		case $p in */shims/*) continue ;; esac
		echo "$p"
		return
	done < <(type -ap "python$minor" || true)
}

tested=() absent=()
for minor in "${minors[@]}"; do
	[ "$minor" = "$main" ] && continue
	py=$(find_python "$minor")
	if [ -z "$py" ]; then
		echo "py-versions: CPython $minor not found (no $pyenv_versions/$minor.*, no python$minor on PATH): skipped"
		absent+=("$minor")
		continue
	fi
	venv=target/py$minor-venv
	if [ ! -f "$venv/.smoke-deps" ] || [ requirements-smoke.txt -nt "$venv/.smoke-deps" ]; then
		rm -rf "$venv"
		"$py" -m venv "$venv"
		"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-smoke.txt
		touch "$venv/.smoke-deps"
	fi
	"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
	version=$("$venv/bin/python" -c 'import platform; print(platform.python_version())')
	where=$("$venv/bin/python" -c 'import agenticaiframework._native as n; print(n.__file__)')
	case $where in */site-packages/*) ;; *)
		echo "py-versions: CPython $version imported $where, not the installed wheel" >&2
		exit 1 ;;
	esac
	echo "py-versions: CPython $version ($py), $(basename "$wheel") from $where"
	"$venv/bin/python" -m pytest "$@" -q -p no:cacheprovider
	tested+=("$version")
done
echo "py-versions: smoke subset passed on CPython ${tested[*]:-(none)} with $(basename "$wheel");" \
	"the whole suite runs on CPython $main (.venv); absent: ${absent[*]:-none}"
