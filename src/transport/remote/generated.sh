# Files the host's own programs make once (a signing key).

mc_observe_generated() {
    if [ -n "$ROOT" ]; then printf 'sys generated %s unsupported\n' "$1"; return 0; fi
    if [ -e "$1" ] || [ -L "$1" ]; then
        printf 'sys generated %s present\n' "$1"
    else
        printf 'sys generated %s absent\n' "$1"
    fi
}

# Makes file $1 with command $5 when it is missing (never replacing one),
# and gives it owner $2, group $3 and mode $4. It is no managed file: a
# rollback keeps it.
mc_generate() {
    [ ! -e "$1" ] && [ ! -L "$1" ] || return 0
    mc_system_changed
    out=$ROOT$MC_STATE_DIR/output
    if ! (cd / && umask 077 && sh -c "$5") > "$out" 2>&1 9>&-; then
        printf 'matrixctl: making %s failed: %s\n' "$1" "$5" >&2
        tail -n 20 "$out" | sed 's/^/    /' >&2
        exit 4
    fi
    # shellcheck disable=SC2015 # a regular file, not a link, or the other branch: both tests, no side effect
    [ -f "$1" ] && [ ! -L "$1" ] || mc_fail "$5 ran but made no file $1"
    # shellcheck disable=SC2015 # either failing is the same failure
    chown -- "$2:$3" "$1" && chmod "$4" -- "$1" ||
        mc_fail "cannot give $1 to $2:$3 with mode $4"
}
