# Debian packages.

# Packages "$@", one dpkg-query for all (it leaves out, and exits 1 for,
# a name dpkg never heard of).
mc_observe_packages() {
    if [ -n "$ROOT" ]; then
        for p; do printf 'sys package %s unsupported\n' "$p"; done
        return 0
    fi
    known=$(dpkg-query -W -f '${Package} ${db:Status-Status} ${Version}\n' -- "$@" 2> /dev/null) || true
    for p; do
        v=
        while IFS=' ' read -r name rest; do
            if [ "$name" = "$p" ]; then v=$rest; break; fi
        done << EOF
$known
EOF
        # Between not-installed (or config-files) and installed, dpkg was
        # stopped part-way: unpacked, half-configured, triggers pending.
        case "$v" in
            "installed "*) printf 'sys package %s installed %s\n' "$p" "${v#installed }" ;;
            "not-installed "* | "config-files "* | "") printf 'sys package %s absent\n' "$p" ;;
            *) printf 'sys package %s interrupted %s\n' "$p" "$v" ;;
        esac
    done
}

# Installs (or moves to their pinned version) the packages named in "$@"
# (`name` or `name=version`), non-interactively, keeping config files
# matrixctl has not written yet as the package ships them, and with
# services kept from starting on the package's defaults (policy-rc.d)
# until matrixctl's configuration is in place. An install an earlier
# apply was cut off in is finished first (dpkg --configure -a).
mc_packages() {
    mc_system_changed
    policy=/usr/sbin/policy-rc.d
    marker='# matrixctl: no service starts while it installs packages'
    if [ ! -e "$policy" ] || grep -qxF "$marker" "$policy" 2> /dev/null; then
        printf '#!/bin/sh\n%s\nexit 101\n' "$marker" > "$policy"
        chmod 755 "$policy"
        ours=1
    else
        ours=
    fi
    out=$ROOT$MC_STATE_DIR/output
    export DEBIAN_FRONTEND=noninteractive
    set -- -y -q --no-install-recommends --allow-downgrades \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
    if ! { dpkg --configure -a && apt-get install "$@"; } > "$out" 2>&1 9>&-; then
        # The lists may be missing or old: fetch them once, and try again.
        if ! { apt-get update -q && apt-get install "$@"; } >> "$out" 2>&1 9>&-; then
            [ -z "$ours" ] || rm -f -- "$policy"
            printf 'matrixctl: installing packages failed (apt-get install %s)\n' "$*" >&2
            tail -n 20 "$out" | sed 's/^/    /' >&2
            exit 7
        fi
    fi
    [ -z "$ours" ] || rm -f -- "$policy"
}
