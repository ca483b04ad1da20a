# The transaction: its lock, its detached run, backup, journal,
# validators, handlers, rollback; and tasks run the same way.

# Creates the state directory (root's, 0700) when missing, with its
# subdirectory $1 if given, in one `mkdir`, and refuses one that is not
# safe to write as root.
mc_state_dir_ready() {
    d=$ROOT$MC_STATE_DIR
    mc_not_link "$d"
    if [ ! -d "$d/${1:-.}" ]; then
        [ ! -d "$d" ] || [ -z "${1:-}" ] || mc_not_link "$d/$1"
        # The directories above it as any system has them (0755: an empty
        # root's /var and /var/lib must stay open to services); the state
        # directory itself under this program's umask (077).
        [ -d "${d%/*}" ] || (umask 022 && mkdir -p -- "${d%/*}") ||
            mc_fail "cannot create the directory of $MC_STATE_DIR"
        mkdir -p -- "$d/${1:-.}" || mc_fail "cannot create $MC_STATE_DIR/${1:-}"
    fi
    unsafe=$(mc_unsafe_paths)
    [ -z "$unsafe" ] || mc_fail "refusing to write here: ${unsafe#unsafe }"
}

# Whether an apply holds the host's lock right now (a shared probe: it
# never blocks an apply for longer than a moment).
mc_locked() {
    l=$ROOT$MC_STATE_DIR/lock
    [ -f "$l" ] && [ ! -L "$l" ] && ! flock -n -s 8 8< "$l"
}

# Whether a run may hold the lock: only a run does (mc_begin), and from
# its script's arrival to its exit code, it has a script or a pid file
# without a code. A host with neither needs no flock to know it is free.
mc_run_pending() {
    for f in "$ROOT$MC_STATE_DIR"/runs/*.sh "$ROOT$MC_STATE_DIR"/runs/*.pid; do
        [ -e "$f" ] || continue
        [ -e "${f%.*}.code" ] || return 0
    done
    return 1
}

# Who holds the lock, as the lock's owner file says (first line only, and
# never through a symlink).
mc_lock_owner() {
    o=$ROOT$MC_STATE_DIR/lock.owner
    if [ -f "$o" ] && [ ! -L "$o" ]; then
        head -n 1 -- "$o" | tr -cd '[:print:]'
    else
        printf 'another apply'
    fi
}

# Holds the host's apply lock until this program ends (the lock dies with
# the process, so a killed apply never leaves the host locked).
mc_lock() {
    d=$ROOT$MC_STATE_DIR
    mc_not_link "$d/lock"
    mc_not_link "$d/lock.owner"
    exec 9>> "$d/lock"
    if ! flock -w 1 9; then
        mc_fail "locked by $(mc_lock_owner)"
    fi
    MC_LOCKED=1
    # Not a symlink (checked above), in a directory only root writes.
    printf '%s\n' "$1" > "$d/lock.owner"
}

# The apply program writes the transaction (a whole program of its own) to
# STATE_DIR/runs/ID.sh and starts it in its own session, with its output in
# runs/ID.out and runs/ID.err and its exit code in runs/ID.code (written
# last). A cut connection, a killed matrixctl or a timeout no longer stops
# it half-way: it finishes or rolls back by itself, and matrixctl reads the
# result, on this connection or on a new one (mc_await).
mc_start_run() {
    mc_state_dir_ready runs
    runs=$ROOT$MC_STATE_DIR/runs
    mc_not_link "$runs"
    r=$runs/$1
    # The transaction is MC_RUN_SCRIPT (Program::detached), written by the
    # shell's own printf. No rename: the run ID is new, and nothing starts
    # the script but the line after this one (a script cut short by a
    # killed program never starts; mc_await reports its run missing).
    # A script cut short (a full disk) holds secrets and never runs: gone.
    if ! printf '%s' "$MC_RUN_SCRIPT" > "$r.sh"; then
        rm -f -- "$r.sh"
        mc_fail "cannot write $MC_STATE_DIR/runs/$1.sh (is the disk full?)"
    fi
    MC_RUN_SCRIPT=
    setsid -w sh "$r.sh" < /dev/null > "$r.out" 2> "$r.err" 9>&- &
    MC_CHILD=$!
}

# Waits for the transaction this program started, without polling (when no
# armed change needs a confirmation in the middle of it).
mc_wait_child() {
    wait "$MC_CHILD" 2> /dev/null || true
}

# Whether the run whose pid file is $1 is alive: its process exists and the
# lock is held (a dead process, zombie or not, holds no lock).
mc_run_alive() {
    kill -0 "$(cat -- "$1")" 2> /dev/null && mc_locked
}

# Waits for run $1 and prints its result as the transaction wrote it (its
# stdout, its stderr, its exit code). Instead of a result it prints one of:
# `run-awaiting-confirmation NAME` (with $2 = confirm: the transaction waits
# for matrixctl to confirm an armed change), `run-running` (still going
# after $3 seconds; 0 waits without end), `run-killed` (its process died
# without a result), `run-missing` (no such run: the program never started).
mc_await() {
    r=$ROOT$MC_STATE_DIR/runs/$1
    mc_not_link "$ROOT$MC_STATE_DIR/runs"
    tenths=0
    while [ ! -f "$r.code" ]; do
        if [ "$2" = confirm ] && [ -f "$r.armed" ]; then
            printf 'run-awaiting-confirmation %s\n' "$(head -n 1 -- "$r.armed")"
            return 0
        fi
        if [ -f "$r.pid" ]; then
            if ! mc_run_alive "$r.pid"; then
                [ -f "$r.code" ] && break
                printf 'run-killed\n'
                return 0
            fi
        elif [ ! -f "$r.sh" ] || [ "$tenths" -ge 50 ]; then
            # Not started within 5 s of its script arriving: claim it, so it
            # can never start later, unless it started just now.
            rm -f -- "$r.sh"
            sleep 0.5
            if [ ! -f "$r.pid" ] && [ ! -f "$r.code" ]; then
                printf 'run-missing\n'
                return 0
            fi
        fi
        if [ "$3" -gt 0 ] && [ "$tenths" -ge $(($3 * 10)) ]; then
            printf 'run-running\n'
            return 0
        fi
        sleep 0.1
        tenths=$((tenths + 1))
    done
    [ ! -s "$r.out" ] || cat -- "$r.out"
    [ ! -s "$r.err" ] || cat -- "$r.err" >&2
    : > "$r.seen"
    # The code is one line of digits (mc_end writes it).
    read -r code < "$r.code" || true
    exit "${code:-1}"
}

# Confirms an armed change of run $1: renames its `armed` marker, and so
# wins against the transaction's own deadline, or finds that it lost.
mc_confirm() {
    r=$ROOT$MC_STATE_DIR/runs/$1
    mv -- "$r.armed" "$r.confirmed" 2> /dev/null || true
}

# The first steps of a detached transaction: the exit trap (which rolls
# back a live change and writes the result), the lock, the pid file, and
# the removal of the script, which holds secrets. Runs of earlier applies
# are removed: their results were shown, or the next plan showed them.
mc_begin() {
    MC_RUN_FILE=$ROOT$MC_STATE_DIR/runs/$MC_RUN
    trap 'mc_end $?' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    mc_lock "$1"
    printf '%s\n' "$$" > "$MC_RUN_FILE.pid.new"
    mv -f -- "$MC_RUN_FILE.pid.new" "$MC_RUN_FILE.pid"
    # The script, and, in the same `rm`, finished runs and runs whose
    # process died (we hold the lock, so none of them is alive); a run
    # still starting (its script, no pid yet) belongs to an apply that is
    # about to find the host locked.
    set -- "$MC_RUN_FILE.sh"
    for old in "$ROOT$MC_STATE_DIR/runs"/*.code "$ROOT$MC_STATE_DIR/runs"/*.pid; do
        [ -e "$old" ] || [ -L "$old" ] || continue
        run=${old%.*}
        [ "$run" != "$MC_RUN_FILE" ] || continue
        mc_listed "${mc_old_runs:-}" "$run" && continue
        mc_old_runs="${mc_old_runs:-}$run
"
        set -- "$@" "$run.sh" "$run.pid" "$run.out" "$run.err" "$run.code" "$run.seen" \
            "$run.paused" "$run.armed" "$run.confirmed" "$run.expired"
    done
    rm -f -- "$@"
    unsafe=$(mc_unsafe_paths)
    [ -z "$unsafe" ] || mc_fail "refusing to write here: ${unsafe#unsafe }"
}

# From here on, live files change: any failure rolls the host back.
mc_live() {
    MC_LIVE=1
}

# The exit trap: a failure after live files changed rolls back; one before
# removes the staged files. Then the exit code is written, last.
mc_end() {
    code=$1
    set +e
    if [ "$code" -ne 0 ]; then
        # Staged files not yet renamed into place are this apply's own.
        printf '%s' "${MC_STAGED:-}" | while IFS= read -r staged; do
            [ -n "$staged" ] && rm -f -- "$staged"
        done
        mc_unstage
        if [ -n "${MC_LIVE:-}" ]; then
            mc_rollback
        elif [ -n "${MC_SYSTEM_CHANGED:-}" ]; then
            printf 'matrixctl: not applied: no file was changed (the packages, accounts and directories made so far stay; the next apply goes on from there)\n' >&2
        else
            printf 'matrixctl: not applied: nothing on the host was changed\n' >&2
        fi
    fi
    mc_disarm_backstop
    # mc_begin removed the script already, unless it failed before.
    [ ! -e "$MC_RUN_FILE.sh" ] || rm -f -- "$MC_RUN_FILE.sh"
    # Shared state is only ours to touch while we hold the lock.
    if [ -n "${MC_LOCKED:-}" ] && [ -e "$ROOT$MC_STATE_DIR/revert.saved" ]; then
        rm -f -- "$ROOT$MC_STATE_DIR/revert.saved"
    fi
    printf '%s\n' "$code" > "$MC_RUN_FILE.code.new"
    # One sync for the result and, after a success, the state directory:
    # the record's rename (mc_commit_state ... later) must be on disk
    # before the journal and the backup go.
    mc_succeeded=
    [ "$code" -ne 0 ] || [ -z "${MC_FINISHED:-}" ] || mc_succeeded=1
    set -- "$MC_RUN_FILE.out" "$MC_RUN_FILE.err" "$MC_RUN_FILE.code.new"
    [ -z "$mc_succeeded" ] || set -- "$@" "$ROOT$MC_STATE_DIR"
    sync -- "$@" 2> /dev/null
    if [ -n "$mc_succeeded" ]; then
        rm -rf -- "$ROOT$MC_STATE_DIR/journal" "$ROOT$MC_STATE_DIR/output" "$ROOT$MC_STATE_DIR/backup"
    fi
    # The state directory's staging directory outlives mc_unstage (the
    # record is renamed out of it last); emptied now, whatever the outcome.
    [ -z "${MC_LOCKED:-}" ] || rmdir -- "$ROOT$MC_STATE_DIR/$MC_STAGING_DIR" 2> /dev/null
    mv -f -- "$MC_RUN_FILE.code.new" "$MC_RUN_FILE.code"
}

# The backup (state dir, backup/) holds every file an apply replaces or
# removes, as it was; its manifest says `saved N PATH` or `absent - PATH`.
# It is complete before any live file changes (backup.new is renamed to
# backup), and removed once the apply succeeded or was rolled back and
# checked. A backup left by an interrupted apply is continued, never
# replaced: its copies are the state from before that apply. A manifest
# may only name paths this plan manages (MC_MANAGED), so a planted
# manifest cannot steer a restore elsewhere.
mc_backup_begin() {
    MC_BACKUP=$ROOT$MC_STATE_DIR/backup
    mc_not_link "$MC_BACKUP"
    mc_not_link "$MC_BACKUP.new"
    [ ! -e "$MC_BACKUP.new" ] || rm -rf -- "$MC_BACKUP.new"
    if [ -d "$MC_BACKUP" ]; then
        mc_not_link "$MC_BACKUP/manifest"
        while IFS=' ' read -r kind n path; do
            case "$kind $n" in
                "saved "[0-9]* | "absent -") ;;
                *) mc_fail "the backup manifest in $MC_STATE_DIR/backup has a line matrixctl did not write; refusing to use it (move the backup away and apply again)" ;;
            esac
            case "$n" in *[!0-9-]*) mc_fail "the backup manifest in $MC_STATE_DIR/backup names a copy '$n'; refusing to use it" ;; esac
            mc_listed "${MC_MANAGED:-}" "$path" ||
                mc_fail "the backup manifest in $MC_STATE_DIR/backup names $path, which this plan does not manage; refusing to use it (move the backup away and apply again)"
            [ "$kind" = absent ] || mc_not_link "$MC_BACKUP/$n"
        done < "$MC_BACKUP/manifest"
        mv -- "$MC_BACKUP" "$MC_BACKUP.new"
        MC_BACKUP_RESUMED=1
        MC_BACKUP_COUNT=$(wc -l < "$MC_BACKUP.new/manifest")
    else
        mkdir -- "$MC_BACKUP.new" && : > "$MC_BACKUP.new/manifest"
        MC_BACKUP_RESUMED=
        MC_BACKUP_COUNT=0
    fi
}

mc_backup() {
    p=$ROOT$1
    # Already saved (by an interrupted apply): its copy is the older state.
    # A backup begun by this run holds each path once, so only a resumed
    # one needs the look.
    if [ -n "$MC_BACKUP_RESUMED" ] &&
        awk -v path="$1" '{ sub(/^[a-z]+ [^ ]+ /, "") } $0 == path { found = 1 } END { exit !found }' \
            "$MC_BACKUP.new/manifest"; then
        return 0
    fi
    MC_BACKUP_COUNT=$((MC_BACKUP_COUNT + 1))
    if [ -f "$p" ] && [ ! -L "$p" ]; then
        n=$MC_BACKUP_COUNT
        # -P: a link swapped in since the look is copied as a link (never
        # restored), not followed.
        cp -P -p --reflink=auto -- "$p" "$MC_BACKUP.new/$n" || mc_fail "cannot back up $1"
        printf 'saved %s %s\n' "$n" "$1" >> "$MC_BACKUP.new/manifest"
    else
        printf 'absent - %s\n' "$1" >> "$MC_BACKUP.new/manifest"
    fi
}

# The backup's copies reach the disk in the same sync as the staged files
# (the journal and the record among them), and the backup is complete.
mc_backup_end() {
    mc_flush_staged "$MC_BACKUP.new" "$MC_BACKUP.new"/*
    mv -- "$MC_BACKUP.new" "$MC_BACKUP" || mc_fail "cannot finish the backup"
}

# Whether a live file is exactly its backup copy: bytes, mode, owner, group.
mc_same_as_backup() {
    [ -f "$1" ] && [ ! -L "$1" ] && cmp -s -- "$2" "$1" &&
        [ "$(stat -c '%a %u %g' -- "$1")" = "$(stat -c '%a %u %g' -- "$2")" ]
}

# Puts every backed-up file back (bytes, mode, owner) and removes the files
# that did not exist, checks each one, then re-runs the handlers that
# already ran (an armed one through its revert), so the old configuration
# is live again. Only a rollback that checked every file says so; otherwise
# the backup and journal stay, and the files that differ are named.
mc_rollback() {
    [ -z "${MC_ROLLED_BACK:-}" ] || return 0
    MC_ROLLED_BACK=1
    mc_rollback_services
    mc_rollback_artifacts
    [ -f "$MC_BACKUP/manifest" ] || return 0
    differ=""
    while IFS=' ' read -r kind n path; do
        p=$ROOT$path
        if [ "$kind" = saved ]; then
            if ! mc_same_as_backup "$p" "$MC_BACKUP/$n"; then
                t=$(mc_tmp "$p")
                { [ ! -L "$MC_BACKUP/$n" ] && cp -p --reflink=auto -- "$MC_BACKUP/$n" "$t" && mv -f -- "$t" "$p"; } 2> /dev/null || rm -f -- "$t"
            fi
            mc_same_as_backup "$p" "$MC_BACKUP/$n" || differ="$differ $path"
        else
            rm -f -- "$p" 2> /dev/null
            { [ -e "$p" ] || [ -L "$p" ]; } && differ="$differ $path"
        fi
    done < "$MC_BACKUP/manifest"
    mc_rollback_units
    printf '%s' "${MC_HANDLERS_RAN:-}" | while IFS= read -r command; do
        [ -n "$command" ] || continue
        (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$command") > /dev/null 2>&1 9>&- || printf 'matrixctl: after rollback, handler failed again: %s\n' "$command" >&2
    done
    if [ -n "$differ" ]; then
        printf 'matrixctl: NOT restored: these files still differ from before this apply:%s\n' "$differ" >&2
        printf 'matrixctl: the backup is kept in %s/backup; the next apply uses it\n' "$MC_STATE_DIR" >&2
        return 0
    fi
    rm -f -- "$ROOT$MC_STATE_DIR/journal" "$ROOT$MC_STATE_DIR/output"
    rm -rf -- "$MC_BACKUP"
    printf 'matrixctl: rolled back: every file is as it was before this apply (checked)\n' >&2
}

# Runs one check of the new files; on failure, stops (and so rolls back).
mc_validate() {
    out=$ROOT$MC_STATE_DIR/output
    rm -f -- "$out"
    if ! (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$1") > "$out" 2>&1 9>&-; then
        printf 'matrixctl: validation failed: %s\n' "$1" >&2
        sed 's/^/    /' "$out" >&2
        exit 4
    fi
}

# Runs one handler (name, command); on failure, stops (and so rolls back,
# running this handler again with the old files too).
mc_handler() {
    out=$ROOT$MC_STATE_DIR/output
    rm -f -- "$out"
    MC_HANDLERS_RAN="${MC_HANDLERS_RAN:-}${3:-$2}
"
    if ! (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$2") > "$out" 2>&1 9>&-; then
        printf 'matrixctl: handler "%s" failed: %s\n' "$1" "$2" >&2
        sed 's/^/    /' "$out" >&2
        exit 5
    fi
}

# The apply succeeded: nothing is pending, the backup is no longer needed.
# mc_end removes them, after the sync that makes the record's rename last.
mc_finish() {
    MC_FINISHED=1
}

# What an interrupted apply left: the journal of checks and handlers still
# to run, and whether its backup is still there. An apply running right now
# is reported as busy instead: what it has on disk is its own.
mc_observe_transaction() {
    d=$ROOT$MC_STATE_DIR
    [ -d "$d" ] || return 0
    if mc_run_pending && mc_locked; then
        printf 'busy %s\n' "$(mc_lock_owner)"
        return 0
    fi
    # What apply refuses to follow, plan refuses too.
    for name in journal backup backup/manifest backup.new runs lock lock.owner revert.saved output; do
        if [ -L "$d/$name" ]; then
            printf 'unsafe %s: matrixctl follows no symlink in its state directory\n' "$d/$name"
            return 0
        fi
    done
    if [ -f "$d/journal" ]; then
        printf 'journal '
        base64 -w0 < "$d/journal"
        printf '\n'
    fi
    if [ -f "$d/backup/manifest" ]; then
        # The checks mc_backup_begin makes before it uses a backup; the
        # paths go to matrixctl, which knows what this plan manages.
        while IFS=' ' read -r kind n path; do
            case "$kind $n" in
                "saved "[0-9]* | "absent -") ;;
                *)
                    printf 'unsafe %s: the backup manifest has a line matrixctl did not write (move the backup away)\n' "$d/backup/manifest"
                    return 0
                    ;;
            esac
            case "$n" in *[!0-9-]*)
                printf 'unsafe %s: the backup manifest names a copy %s (move the backup away)\n' "$d/backup/manifest" "$n"
                return 0
                ;;
            esac
            if [ "$kind" = saved ] && [ -L "$d/backup/$n" ]; then
                printf 'unsafe %s: matrixctl follows no symlink in its state directory\n' "$d/backup/$n"
                return 0
            fi
            printf 'backup-path %s\n' "$path"
        done < "$d/backup/manifest"
        printf 'backup-present %s\n' "$(wc -l < "$d/backup/manifest")"
    fi
    # Runs whose result nobody read (matrixctl stopped waiting, or its
    # connection broke for good), and runs killed on the host.
    for code in "$d"/runs/*.code; do
        # shellcheck disable=SC2015 # a regular file, not a link, or the other branch: both tests, no side effect
        [ -f "$code" ] && [ ! -L "$code" ] || continue
        run=${code%.code}
        [ -f "$run.seen" ] && continue
        printf 'run-unseen %s %s ' "$(head -n 1 -- "$code" | tr -cd '0-9')" "${run##*/}"
        { [ -L "$run.err" ] || base64 -w0 < "$run.err"; } 2> /dev/null || true
        printf '\n'
    done
    for pid in "$d"/runs/*.pid; do
        # shellcheck disable=SC2015 # a regular file, not a link, or the other branch: both tests, no side effect
        [ -f "$pid" ] && [ ! -L "$pid" ] || continue
        run=${pid%.pid}
        [ -f "$run.code" ] || printf 'run-killed %s\n' "${run##*/}"
    done
}

# Puts a staged file of matrixctl's own (journal, record) in place, and
# flushes the state directory, which also holds the backup's rename; with
# $2 = later, mc_end's sync does that.
mc_commit_state() {
    p=$ROOT$1
    mc_not_link "$p"
    mc_flush_staged
    mc_staged_var "$p"
    mv -f -- "$MC_STAGED_AS" "$p" || mc_fail "cannot rename into place: $1"
    [ "${2:-}" = later ] || sync -- "${p%/*}" 2> /dev/null || true
}

# A handler that could cut matrixctl off (a new firewall). The live state is
# saved, the handler runs, and the transaction then waits up to N seconds
# for matrixctl to confirm through a fresh connection (mc_confirm). The
# decision is one rename of the run's `armed` marker: to `confirmed` by
# matrixctl, or to `expired` by this deadline. Whoever renames first wins,
# so the report and the host always agree. Expired means rolled back: the
# files come back from the backup and the saved state is loaded again
# (the revert command). In case this process itself dies while waiting, a
# detached backstop reverts the live state a little after the deadline.
# Arguments: name, command, save command, revert command, seconds.
mc_handler_armed() {
    saved=$ROOT$MC_STATE_DIR/revert.saved
    mc_not_link "$saved"
    rm -f -- "$saved"
    (cd / && MATRIXCTL_ROOT=$ROOT sh -c "$3") > "$saved" 2> /dev/null 9>&- ||
        mc_fail "cannot save the live state before: $1"
    MATRIXCTL_SAVED=$saved
    export MATRIXCTL_SAVED
    backstop=$(($5 + 15))
    MATRIXCTL_ROOT=$ROOT setsid sh -c "sleep $backstop; $4" \
        > /dev/null 2>&1 < /dev/null 9>&- &
    MC_BACKSTOP=$!
    mc_handler "$1" "$2" "$4"
    printf '%s\n' "$1" > "$MC_RUN_FILE.armed.new"
    mv -f -- "$MC_RUN_FILE.armed.new" "$MC_RUN_FILE.armed"
    tenths=0
    while [ ! -e "$MC_RUN_FILE.confirmed" ] && [ "$tenths" -lt $(($5 * 10)) ]; do
        sleep 0.1
        tenths=$((tenths + 1))
    done
    if mv -- "$MC_RUN_FILE.armed" "$MC_RUN_FILE.expired" 2> /dev/null; then
        printf 'matrixctl: "%s" was not confirmed within %s s over a fresh connection (did it cut matrixctl off?)\n' "$1" "$5" >&2
        exit 6
    fi
    mc_disarm_backstop
    rm -f -- "$MC_RUN_FILE.confirmed"
    printf 'confirmed %s\n' "$1"
}

# Stops the backstop revert of an armed change once the transaction has
# decided (confirmed, or rolled back by itself).
mc_disarm_backstop() {
    if [ -n "${MC_BACKSTOP:-}" ]; then
        kill -- "-$MC_BACKSTOP" 2> /dev/null || kill -- "$MC_BACKSTOP" 2> /dev/null || true
        MC_BACKSTOP=
    fi
}

# An operator's task (`matrixctl admin create`): the script, then its
# input on stdin. The script is no secret (it may show in `ps`); what is
# secret comes in the input.
mc_task_script() {
    MC_TASK=$(base64 -d)
}

mc_task_run() {
    base64 -d | (cd / && sh -c "$MC_TASK") 9>&-
}
