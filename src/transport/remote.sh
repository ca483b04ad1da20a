# matrixctl's program on the target host. It arrives on stdin, never as
# arguments (so no secret shows in `ps`), followed by a generated `main`
# function with the data. Nothing runs until the last line, `main`, has
# arrived: a connection cut mid-program runs nothing at all.
set -eu
umask 077
LC_ALL=C
export LC_ALL

mc_fail() {
    printf 'matrixctl: %s\n' "$*" >&2
    exit 3
}

# The temporary file a path is staged in: same directory, so the final
# rename is atomic; a fixed name, so one left by an interrupted run is found.
mc_tmp() {
    printf '%s/.%s.matrixctl-tmp' "${1%/*}" "${1##*/}"
}

# One line per path: absent | file MODE OWNER GROUP BASE64 | other KIND,
# followed by the path; plus `leftover PATH` when a staged file is there.
mc_observe() {
    p=$ROOT$1
    if [ -L "$p" ]; then
        printf 'other symlink %s\n' "$1"
    elif [ -f "$p" ]; then
        printf 'file %s ' "$(stat -c '%a %U %G' -- "$p")"
        base64 -w0 < "$p"
        printf ' %s\n' "$1"
    elif [ -e "$p" ]; then
        printf 'other %s %s\n' "$(stat -c '%F' -- "$p" | tr ' ' '-')" "$1"
    else
        printf 'absent %s\n' "$1"
    fi
    if [ -e "$(mc_tmp "$p")" ]; then
        printf 'leftover %s\n' "$(mc_tmp "$1")"
    fi
}

# The on-host record, then every recorded path not already observed.
mc_observe_record() {
    if [ ! -f "$ROOT$MC_RECORD" ]; then
        printf 'record-absent\n'
        return 0
    fi
    printf 'record '
    base64 -w0 < "$ROOT$MC_RECORD"
    printf '\n'
    while IFS=' ' read -r kind hash mode sensitive role path; do
        [ "$kind" = file ] || continue
        case "$MC_OBSERVED" in *"
$path
"*) continue ;; esac
        mc_observe "$path"
    done < "$ROOT$MC_RECORD"
}

mc_need_user() {
    id -u -- "$1" > /dev/null 2>&1 || mc_fail "user '$1' does not exist on this host (owner of $2)"
}

mc_need_group() {
    getent group -- "$1" > /dev/null 2>&1 || mc_fail "group '$1' does not exist on this host (group of $2)"
}

# Writes stdin (base64) to the path's temporary file with its final mode and
# owner, and flushes it to disk. The live file is not touched.
mc_stage() {
    p=$ROOT$1
    d=${p%/*}
    [ -d "$d" ] || (umask 022 && mkdir -p -- "$d") || mc_fail "cannot create directory ${d#"$ROOT"}"
    t=$(mc_tmp "$p")
    rm -f -- "$t"
    base64 -d > "$t" || mc_fail "cannot write $1"
    chmod "$2" -- "$t"
    [ -z "$3" ] || chown -- "$3" "$t" || mc_fail "cannot set owner of $1 to $3"
    [ -z "$4" ] || chgrp -- "$4" "$t" || mc_fail "cannot set group of $1 to $4"
    sync -- "$t"
}

# Puts a staged file in place: one rename, so readers see old or new, whole.
mc_commit() {
    p=$ROOT$1
    mv -f -- "$(mc_tmp "$p")" "$p" || mc_fail "cannot rename into place: $1"
    sync -- "${p%/*}" 2> /dev/null || true
    # Test hook (see program.rs): pause once, after the first file.
    if [ -n "${MATRIXCTL_TEST_PAUSE_AFTER_COMMIT:-}" ]; then
        sleep "$MATRIXCTL_TEST_PAUSE_AFTER_COMMIT" 9>&-
        MATRIXCTL_TEST_PAUSE_AFTER_COMMIT=
    fi
}

mc_remove() {
    p=$ROOT$1
    if [ -L "$p" ] || [ -e "$p" ]; then
        rm -f -- "$p" || mc_fail "cannot remove $1"
        sync -- "${p%/*}" 2> /dev/null || true
    fi
}

# Holds the host's apply lock until this program ends (the lock dies with
# the process, so a killed apply never leaves the host locked).
mc_lock() {
    d=$ROOT$MC_STATE_DIR
    [ -d "$d" ] || (umask 022 && mkdir -p -- "$d") || mc_fail "cannot create $d"
    exec 9>> "$d/lock"
    if ! flock -n 9; then
        mc_fail "locked by $(cat -- "$d/lock.owner" 2> /dev/null || echo 'another apply')"
    fi
    printf '%s\n' "$1" > "$d/lock.owner"
}
