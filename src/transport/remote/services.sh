# systemd units.

# Services "$@" as `ENABLED ACTIVE`, one systemctl for all: it answers
# a block per unit, in the order asked, a blank line between them.
mc_observe_services() {
    if [ -n "$ROOT" ]; then
        for s; do printf 'sys service %s unsupported\n' "$s"; done
        return 0
    fi
    shown=$(systemctl show -p UnitFileState -p ActiveState -- "$@" 2> /dev/null) || shown=
    e='' a=''
    while IFS= read -r line; do
        case $line in
            UnitFileState=*) e=${line#*=} ;;
            ActiveState=*) a=${line#*=} ;;
            "")
                [ $# -gt 0 ] || break
                printf 'sys service %s %s %s\n' "$1" "${e:-missing}" "${a:-inactive}"
                shift
                e='' a=''
                ;;
        esac
    done << EOF
$shown

EOF
    # No answer at all (no systemd): nothing is enabled or running.
    for s; do printf 'sys service %s missing inactive\n' "$s"; done
}

# A unit file changed: systemd reads it again before anything starts (and
# again after a rollback restored the old ones: MC_UNITS_RELOADED).
mc_daemon_reload() {
    MC_UNITS_RELOADED=1
    systemctl daemon-reload || mc_fail "systemctl daemon-reload failed"
}

# Undoes what this run did to services before its files go back: stops
# those it started and disables those it enabled (while their unit files
# are still there to say how). A unit file the rollback then removes would
# otherwise stay loaded and enabled through a dangling link, restarted
# by systemd until the next apply.
mc_rollback_services() {
    # shellcheck disable=SC2086 # one unit name per word
    [ -z "${MC_STARTED_BY_RUN:-}" ] || systemctl stop -- $MC_STARTED_BY_RUN > /dev/null 2>&1 9>&- || true
    # shellcheck disable=SC2086
    [ -z "${MC_ENABLED_BY_RUN:-}" ] || systemctl disable -- $MC_ENABLED_BY_RUN > /dev/null 2>&1 9>&- || true
}

# After the files are back: systemd reads the old unit files, and forgets
# the failures of units this run started.
mc_rollback_units() {
    [ -n "${MC_UNITS_RELOADED:-}${MC_ENABLED_BY_RUN:-}${MC_STARTED_BY_RUN:-}" ] || return 0
    systemctl daemon-reload > /dev/null 2>&1 9>&- || true
    # shellcheck disable=SC2086 # one unit name per word
    [ -z "${MC_STARTED_BY_RUN:-}" ] || systemctl reset-failed -- $MC_STARTED_BY_RUN > /dev/null 2>&1 9>&- || true
}

# Enables or disables (`$2`: enable, disable or -) and stops (`$3`: stop
# or -) a unit. Starts are mc_services_start's.
mc_service() {
    out=$ROOT$MC_STATE_DIR/output
    for action in "$2" "$3"; do
        [ "$action" != - ] || continue
        if ! systemctl "$action" -- "$1" > "$out" 2>&1 9>&-; then
            printf 'matrixctl: systemctl %s %s failed\n' "$action" "$1" >&2
            sed 's/^/    /' "$out" >&2
            journalctl -u "$1" -n 10 --no-pager 2> /dev/null | sed 's/^/    /' >&2
            exit 8
        fi
    done
}

# Enables services "$@" in one systemctl (each enable reloads systemd).
mc_services_enable() {
    out=$ROOT$MC_STATE_DIR/output
    MC_ENABLED_BY_RUN="${MC_ENABLED_BY_RUN:-} $*"
    if ! systemctl enable -- "$@" > "$out" 2>&1 9>&-; then
        printf 'matrixctl: systemctl enable %s failed\n' "$*" >&2
        sed 's/^/    /' "$out" >&2
        exit 8
    fi
}

# Starts services "$@" in this order, then, one second later (one wait for
# all of them, not one each), checks that every one stayed up; one that
# fails to start or to stay up fails the apply, which then rolls the files
# back.
mc_services_start() {
    out=$ROOT$MC_STATE_DIR/output
    counts=
    for s; do
        restarts=$(systemctl show -p NRestarts --value -- "$s" 2> /dev/null) || true
        counts="$counts ${restarts:-0}"
        MC_STARTED_BY_RUN="${MC_STARTED_BY_RUN:-} $s"
        if ! systemctl start -- "$s" > "$out" 2>&1 9>&-; then
            printf 'matrixctl: systemctl start %s failed\n' "$s" >&2
            sed 's/^/    /' "$out" >&2
            journalctl -u "$s" -n 10 --no-pager 2> /dev/null | sed 's/^/    /' >&2
            exit 8
        fi
    done
    sleep 1
    for s; do
        counts=${counts# }
        restarts=${counts%% *}
        counts=${counts#"$restarts"}
        mc_service_stayed_up "$s" "$restarts"
    done
}

# A unit just started must still be up a moment later, not restarted in
# between: one whose program exits at once (missing, not executable, or
# refusing its config) fails the apply, which then rolls the files back.
# Service $1, started a moment ago with $2 restarts before, is running and
# was not restarted since; or the apply fails.
# A unit that is not a service (a timer) has no restarts to count: it
# stayed up when it is active.
mc_service_stayed_up() {
    state=$(systemctl is-active -- "$1" 2> /dev/null) || true
    now=$(systemctl show -p NRestarts --value -- "$1" 2> /dev/null) || true
    case "$state" in
        failed | inactive) ;;
        *)
            case "$1" in
                *.timer | *.socket | *.path | *.target | *.mount | *.slice) return 0 ;;
            esac
            [ "$now" != "$2" ] || return 0 ;;
    esac
    printf 'matrixctl: %s did not stay up after it started (%s, restarted %s times)\n' \
        "$1" "$state" "$((${now:-0} - ${2:-0}))" >&2
    journalctl -u "$1" -n 10 --no-pager 2> /dev/null | sed 's/^/    /' >&2
    exit 8
}
