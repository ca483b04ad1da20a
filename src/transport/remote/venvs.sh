# Python virtualenvs.

# `present` with `base64 DATA` of the venv's .matrixctl-requirements (what
# matrixctl last installed there; matrixctl reads its words), or `absent`
# when it has no Python.
mc_observe_venv() {
    p=$ROOT$1
    if [ -x "$p/bin/python" ]; then
        printf 'sys venv %s present' "$1"
        if [ -f "$p/.matrixctl-requirements" ] && [ ! -L "$p/.matrixctl-requirements" ]; then
            printf ' base64 '
            base64 -w0 < "$p/.matrixctl-requirements"
        fi
        printf '\n'
    else
        printf 'sys venv %s absent\n' "$1"
    fi
}

# Makes the venv at $1 when it has none, and installs the requirements
# ("$@" after the index URL $2 and the wheel directory $3): from the index,
# or with a wheel directory only from there.
mc_venv() {
    mc_system_changed
    p=$ROOT$1
    index=$2
    links=$3
    shift 3
    MC_VENV_REQUIREMENTS=$*
    out=$ROOT$MC_STATE_DIR/output
    # The service's own account runs what is installed here: readable by
    # all, like a package's files (this program's umask is 077).
    umask 022
    if [ ! -x "$p/bin/python" ]; then
        python3 -m venv -- "$p" > "$out" 2>&1 9>&- || {
            printf 'matrixctl: cannot make the venv %s (python3 -m venv; is python3-venv installed?)\n' "$1" >&2
            sed 's/^/    /' "$out" >&2
            exit 9
        }
    fi
    set -- --no-input --disable-pip-version-check -q "$@"
    [ -z "$links" ] || set -- --no-index --find-links "$links" "$@"
    [ -z "$index" ] || set -- --index-url "$index" "$@"
    if ! "$p/bin/pip" install "$@" > "$out" 2>&1 9>&-; then
        printf 'matrixctl: installing into the venv %s failed (pip install %s)\n' "$1" "$*" >&2
        tail -n 20 "$out" | sed 's/^/    /' >&2
        exit 9
    fi
    # What was installed, for the next plan to compare with.
    printf '%s\n' "$MC_VENV_REQUIREMENTS" > "$p/.matrixctl-requirements"
    umask 077
}
