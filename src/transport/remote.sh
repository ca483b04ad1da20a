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

# --- Transactions: backup, journal, validators, handlers, rollback. ---
# The backup (state dir, backup/) holds every file an apply replaces or
# removes, as it was; its manifest says `saved N PATH` or `absent - PATH`.
# It is complete before any live file changes (backup.new is renamed to
# backup), and removed once the apply succeeded or was rolled back. A
# backup left by an interrupted apply is continued, never replaced: its
# copies are the state from before that apply.
mc_backup_begin() {
    MC_BACKUP=$ROOT$MC_STATE_DIR/backup
    rm -rf -- "$MC_BACKUP.new"
    if [ -d "$MC_BACKUP" ]; then
        mv -- "$MC_BACKUP" "$MC_BACKUP.new"
    else
        mkdir -p -- "$MC_BACKUP.new" && : > "$MC_BACKUP.new/manifest"
    fi
}

mc_backup() {
    p=$ROOT$1
    # Already saved (by an interrupted apply): its copy is the older state.
    if awk -v path="$1" '{ sub(/^[a-z]+ [^ ]+ /, "") } $0 == path { found = 1 } END { exit !found }' \
        "$MC_BACKUP.new/manifest"; then
        return 0
    fi
    if [ -f "$p" ] && [ ! -L "$p" ]; then
        n=$(($(wc -l < "$MC_BACKUP.new/manifest") + 1))
        cp -p -- "$p" "$MC_BACKUP.new/$n" || mc_fail "cannot back up $1"
        printf 'saved %s %s\n' "$n" "$1" >> "$MC_BACKUP.new/manifest"
    else
        printf 'absent - %s\n' "$1" >> "$MC_BACKUP.new/manifest"
    fi
}

mc_backup_end() {
    sync -- "$MC_BACKUP.new" "$MC_BACKUP.new"/* 2> /dev/null || true
    mv -- "$MC_BACKUP.new" "$MC_BACKUP" || mc_fail "cannot finish the backup"
    if [ -n "${MATRIXCTL_TEST_PAUSE_AFTER_BACKUP:-}" ]; then
        sleep "$MATRIXCTL_TEST_PAUSE_AFTER_BACKUP" 9>&-
    fi
}

# Puts every backed-up file back (bytes, mode, owner) and removes the files
# that did not exist, then re-runs the handlers that already ran, so the old
# configuration is live again.
mc_rollback() {
    [ -f "$MC_BACKUP/manifest" ] || return 0
    while IFS=' ' read -r kind n path; do
        p=$ROOT$path
        if [ "$kind" = saved ]; then
            t=$(mc_tmp "$p")
            cp -p -- "$MC_BACKUP/$n" "$t" && mv -f -- "$t" "$p" || printf 'matrixctl: could not restore %s (its backup is %s)\n' "$path" "$MC_BACKUP/$n" >&2
        else
            rm -f -- "$p"
        fi
    done < "$MC_BACKUP/manifest"
    printf '%s' "${MC_HANDLERS_RAN:-}" | while IFS= read -r command; do
        [ -n "$command" ] || continue
        (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$command") > /dev/null 2>&1 9>&- || printf 'matrixctl: after rollback, handler failed again: %s\n' "$command" >&2
    done
    rm -f -- "$ROOT$MC_STATE_DIR/journal" "$ROOT$MC_STATE_DIR/output"
    rm -rf -- "$MC_BACKUP"
    # The old configuration is live again: an armed revert has nothing to do.
    mc_disarm
    printf 'matrixctl: rolled back: every file is as it was before this apply\n' >&2
}

# Runs one check of the new files; on failure, rolls back and stops.
mc_validate() {
    out=$ROOT$MC_STATE_DIR/output
    if ! (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$1") > "$out" 2>&1 9>&-; then
        printf 'matrixctl: validation failed: %s\n' "$1" >&2
        sed 's/^/    /' "$out" >&2
        mc_rollback
        exit 4
    fi
}

# Runs one handler (name, command); on failure, rolls back and stops.
mc_handler() {
    if [ -n "${MATRIXCTL_TEST_PAUSE_BEFORE_HANDLERS:-}" ]; then
        sleep "$MATRIXCTL_TEST_PAUSE_BEFORE_HANDLERS" 9>&-
        MATRIXCTL_TEST_PAUSE_BEFORE_HANDLERS=
    fi
    out=$ROOT$MC_STATE_DIR/output
    if ! (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$2") > "$out" 2>&1 9>&-; then
        printf 'matrixctl: handler "%s" failed: %s\n' "$1" "$2" >&2
        sed 's/^/    /' "$out" >&2
        MC_HANDLERS_RAN="${MC_HANDLERS_RAN:-}$2
"
        mc_rollback
        exit 5
    fi
    MC_HANDLERS_RAN="${MC_HANDLERS_RAN:-}$2
"
}

# The apply succeeded: nothing is pending, the backup is no longer needed.
mc_finish() {
    rm -f -- "$ROOT$MC_STATE_DIR/journal" "$ROOT$MC_STATE_DIR/output"
    rm -rf -- "$ROOT$MC_STATE_DIR/backup"
}

# What an interrupted apply left: the journal of checks and handlers still
# to run, and whether its backup is still there.
mc_observe_transaction() {
    if [ -f "$ROOT$MC_STATE_DIR/journal" ]; then
        printf 'journal '
        base64 -w0 < "$ROOT$MC_STATE_DIR/journal"
        printf '\n'
    fi
    if [ -f "$ROOT$MC_STATE_DIR/backup/manifest" ]; then
        printf 'backup-present %s\n' "$(wc -l < "$ROOT$MC_STATE_DIR/backup/manifest")"
    fi
}

# Puts a staged file of matrixctl's own (journal, record) in place.
mc_commit_state() {
    p=$ROOT$1
    mv -f -- "$(mc_tmp "$p")" "$p" || mc_fail "cannot rename into place: $1"
    sync -- "${p%/*}" 2> /dev/null || true
}

# A handler that could cut matrixctl off (a new firewall): save the live
# state, arm a detached revert that restores it after N seconds, then run
# the handler. Only a fresh connection afterwards (mc_disarm) stops the
# revert, so a ruleset that locks matrixctl out undoes itself.
# Arguments: name, command, save command, revert command, seconds.
mc_handler_armed() {
    saved=$ROOT$MC_STATE_DIR/revert.saved
    pidfile=$ROOT$MC_STATE_DIR/revert.pid
    (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$3") > "$saved" 2> /dev/null 9>&- ||
        mc_fail "cannot save the live state before: $1"
    MATRIXCTL_SAVED=$saved MATRIXCTL_ROOT=$ROOT setsid sh -c "sleep $5; $4; rm -f '$pidfile'" \
        > /dev/null 2>&1 < /dev/null 9>&- &
    printf '%s\n' "$!" > "$pidfile"
    mc_handler "$1" "$2"
    printf 'armed %s\n' "$1"
}

# Confirms a change made by mc_handler_armed: stops the pending revert.
mc_disarm() {
    pidfile=$ROOT$MC_STATE_DIR/revert.pid
    if [ -f "$pidfile" ]; then
        kill -- "-$(cat "$pidfile")" 2> /dev/null || true
        rm -f -- "$pidfile" "$ROOT$MC_STATE_DIR/revert.saved"
    fi
}
