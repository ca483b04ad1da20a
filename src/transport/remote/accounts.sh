# System groups and accounts.

# Accounts "$@" of KIND $1 (group, user) in database $2 (group, passwd),
# one getent for all (it prints those that exist).
mc_observe_accounts() {
    kind=$1 db=$2
    shift 2
    if [ -n "$ROOT" ]; then
        for n; do printf 'sys %s %s unsupported\n' "$kind" "$n"; done
        return 0
    fi
    known=$(getent "$db" -- "$@" 2> /dev/null) || true
    for n; do
        state=absent
        while IFS=: read -r name _; do
            if [ "$name" = "$n" ]; then state=present; break; fi
        done << EOF
$known
EOF
        printf 'sys %s %s %s\n' "$kind" "$n" "$state"
    done
}

mc_group() {
    mc_system_changed
    getent group -- "$1" > /dev/null 2>&1 || groupadd --system -- "$1" ||
        mc_fail "cannot create group $1"
}

mc_user() {
    mc_system_changed
    getent passwd -- "$1" > /dev/null 2>&1 ||
        useradd --system --gid "$2" --home-dir "$3" --no-create-home --shell "$4" -- "$1" ||
        mc_fail "cannot create user $1"
}
