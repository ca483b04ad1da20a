# The host as a system (src/system/), one part per kind, each observed
# as `sys KIND NAME STATE...` lines. Packages, accounts and services are
# the real system's: a host with another root (a directory in tests)
# reports them `unsupported`.
#
# Apt repositories.

# `present SHA256` of a repository's key file and .sources file together
# (as matrixctl writes them), or `absent`.
mc_observe_repository() {
    if [ -n "$ROOT" ]; then printf 'sys repository %s unsupported\n' "$1"; return 0; fi
    if [ -f "$2" ] && [ -f "$3" ]; then
        h=$(cat -- "$2" "$3" | sha256sum)
        printf 'sys repository %s present %s\n' "$1" "${h%% *}"
    else
        printf 'sys repository %s absent\n' "$1"
    fi
}

# Reads the lists of the repositories whose .sources files are "$@", and of
# no other (the host's other sources may be out of reach, and need not be
# read again).
mc_apt_update() {
    out=$ROOT$MC_STATE_DIR/output
    for sources in "$@"; do
        if ! apt-get update -q -o Dir::Etc::SourceList="$sources" -o Dir::Etc::SourceParts=- \
            -o APT::Get::List-Cleanup=0 > "$out" 2>&1 9>&-; then
            printf 'matrixctl: apt-get update failed for %s\n' "$sources" >&2
            tail -n 20 "$out" | sed 's/^/    /' >&2
            exit 7
        fi
    done
}
