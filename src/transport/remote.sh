# matrixctl's program on the target host. It arrives on stdin, never as
# arguments (so no secret shows in `ps`), followed by a generated `main`
# function with the data. Nothing runs until the last line, `main`, has
# arrived: a connection cut mid-program runs nothing at all.
set -eu
umask 077
LC_ALL=C
export LC_ALL

# `-v`: runs the call "$@", then reports it and its milliseconds on stderr
# (src/trace.rs takes the line out). A failing call ends the program as
# it would untraced (set -e).
mc_traced() {
    mc_trace_start=$(date +%s%N)
    "$@"
    printf 'matrixctl-trace %s %s\n' "$((($(date +%s%N) - mc_trace_start) / 1000000))" "$*" >&2
}

mc_fail() {
    printf 'matrixctl: %s\n' "$*" >&2
    exit 3
}

# The temporary file of a path written alone (a restore, an apt key):
# same directory, so the final rename is atomic; a fixed name, so one left
# by an interrupted run is found.
mc_tmp() {
    printf '%s' "${1%/*}/.${1##*/}.matrixctl-tmp"
}

# Sets MC_STAGED_AS to the file a path is staged in by an apply: the staging
# directory beside it (MC_STAGING_DIR, on the same filesystem, so the
# rename is atomic) under the path's own name, so that one `mv` puts every
# staged file of a directory in place (mc_commit). A fixed name: one left by
# an interrupted run is found.
MC_STAGING_DIR=.matrixctl-staged
mc_staged_var() {
    MC_STAGED_AS="${1%/*}/$MC_STAGING_DIR/${1##*/}"
}

# Word splitting at line ends only, without globbing: `for x in $LIST`
# then takes each line of LIST as it is, in memory (a `read` loop reads a
# byte per syscall). mc_split_as_usual undoes it; a loop body that calls
# anything splitting again undoes it first.
mc_split_lines() {
    MC_USUAL_IFS=$IFS
    IFS='
'
    set -f
}

mc_split_as_usual() {
    IFS=$MC_USUAL_IFS
    set +f
}

# --- Paths nobody else could have bent. ---
# On the way from / to every managed file, a symlink is followed only when
# it and the directory holding it belong to root (or to the user this
# program runs as) and no one else can write that directory; otherwise a
# service that owns a directory above a managed file could redirect root's
# writes (systemd-tmpfiles calls this an unsafe path transition). The state
# directory itself must be a real directory of ours that only we can write.
# Prints one `unsafe PATH: WHY` line per problem (nothing when all is well).
# MC_PREFIXES (from program.rs) lists every directory on the way, each
# followed by its parent as `DIR/.`: one `stat` for all of them (shared
# with mc_observe_paths when it ran just before), read by the shell itself.
mc_unsafe_paths() {
    if [ -z "${MC_STATS_FRESH:-}" ]; then
        mc_stat_prefixes_and
    fi
    MC_STATS_FRESH=
    mc_me=0
    mc_stat_of /proc/self/
    [ -z "$mc_uid" ] || mc_me=$mc_uid
    mc_state=$ROOT$MC_STATE_DIR
    # Most hosts have no symlink on the way: nothing to go through.
    case $mc_stats in *":symbolic link:"*) mc_unsafe_symlinks ;; esac
    mc_unsafe_directories
    mc_stat_of "$mc_state/."
    if [ -n "$mc_uid" ]; then
        if ! mc_trusted "$mc_uid"; then
            printf 'unsafe %s: the state directory belongs to uid %s; it must belong to root\n' "$mc_state" "$mc_uid"
        elif mc_writable_by_others "$mc_perm"; then
            printf 'unsafe %s: others can write the state directory (mode %s)\n' "$mc_state" "$mc_perm"
        fi
    fi
}

# The directories of MC_SAFE_DIRS that someone other than root (or the user
# this program runs as) owns or can write: that one could swap what lies
# below between matrixctl's look and its write, and root's chmod, chown and
# mv would follow their links. One pass over the stat's lines; a directory
# not there yet has no line (root makes it).
mc_unsafe_directories() {
    mc_split_lines
    for line in $mc_stats; do
        mc_split_as_usual
        mc_stat_fields "$line"
        [ "$MC_F_TYPE" = directory ] || continue
        mc_listed "${MC_SAFE_DIRS:-}" "$MC_F_PATH" || continue
        d=${MC_F_PATH%/.}
        if ! mc_trusted "$MC_F_UID"; then
            printf 'unsafe %s: a directory on the way to a managed file belongs to uid %s, not root (matrixctl writes only where root alone can change the way)\n' "${d:-/}" "$MC_F_UID"
        elif mc_writable_by_others "$MC_F_MODE"; then
            # Sticky (/tmp): others may add names, but never rename or
            # remove root's, and every directory below is checked too.
            case $MC_F_MODE in [1357]???) continue ;; esac
            printf 'unsafe %s: others can write a directory on the way to a managed file (mode %s)\n' "${d:-/}" "$MC_F_MODE"
        fi
    done
    mc_split_as_usual
}

# The symlinks among MC_PREFIXES that mc_unsafe_paths refuses.
mc_unsafe_symlinks() {
    mc_split_lines
    for line in $mc_stats; do
        mc_split_as_usual
        mc_stat_fields "$line"
        [ "$MC_F_TYPE" = "symbolic link" ] || continue
        # Copied: mc_stat_of below reads other lines into MC_F_*.
        uid=$MC_F_UID name=$MC_F_PATH
        case $name in */.) continue ;; esac
        # A wanted path that is a symlink is replaced, never followed.
        mc_listed "${MC_PREFIXES:-}" "$name" || continue
        case $name in
            "$mc_state" | "$mc_state"/*)
                printf 'unsafe %s: matrixctl follows no symlink in its state directory\n' "$name"
                continue
                ;;
        esac
        mc_stat_of "${name%/*}/."
        if ! mc_trusted "$uid"; then
            printf 'unsafe %s: a symlink owned by uid %s, not root\n' "$name" "$uid"
        elif [ -n "$mc_uid" ] && { ! mc_trusted "$mc_uid" || mc_writable_by_others "$mc_perm"; }; then
            printf 'unsafe %s: a symlink in a directory that others can write (%s, uid %s)\n' "$name" "$mc_perm" "$mc_uid"
        fi
    done
    mc_split_as_usual
}

# Sets MC_F_UID, MC_F_MODE, MC_F_TYPE and MC_F_PATH from line $1 of
# mc_stats. Field by field: a path may hold a colon, so only the five
# fields before it tell where it starts.
mc_stat_fields() {
    mc_f_rest=${1#stat }
    MC_F_UID=${mc_f_rest%%:*} mc_f_rest=${mc_f_rest#*:}
    MC_F_MODE=${mc_f_rest%%:*} mc_f_rest=${mc_f_rest#*:}
    MC_F_TYPE=${mc_f_rest%%:*} mc_f_rest=${mc_f_rest#*:}
    # The owner's and group's names, then the path.
    mc_f_rest=${mc_f_rest#*:}
    MC_F_PATH=${mc_f_rest#*:}
}

# Sets mc_uid and mc_perm to what mc_stats says of path $1, or to nothing
# when it does not list it.
mc_stat_of() {
    mc_uid='' mc_perm=''
    mc_split_lines
    for mc_of_line in $mc_stats; do
        mc_stat_fields "$mc_of_line"
        if [ "$MC_F_PATH" = "$1" ]; then
            mc_uid=$MC_F_UID mc_perm=$MC_F_MODE
            break
        fi
    done
    mc_split_as_usual
}

# Sets mc_stats to `stat UID:MODE:TYPE:USER:GROUP:PATH` lines, in one
# stat, for `/proc/self/` (the stat process: its owner is the user this
# program runs as, with no `id -u` process; without /proc, root alone is
# trusted), every path of MC_PREFIXES, and the paths "$@"; a missing path
# has no line.
mc_stat_prefixes_and() {
    mc_split_lines
    # One argument per line of the list.
    # shellcheck disable=SC2086
    set -- ${MC_PREFIXES:-} "$@"
    mc_split_as_usual
    mc_stats=$(stat -c 'stat %u:%a:%F:%U:%G:%n' -- /proc/self/ "$@" 2> /dev/null) || true
}

mc_trusted() {
    [ "$1" = 0 ] || [ "$1" = "$mc_me" ]
}

# Whether mode $1 (octal, as stat's %a) lets the group or others write.
mc_writable_by_others() {
    case $1 in *[2367]? | *[2367]) return 0 ;; esac
    return 1
}

# Refuses a path inside the state directory that is a symlink: matrixctl
# follows none there.
mc_not_link() {
    [ ! -L "$1" ] || mc_fail "${1#"$ROOT"} is a symlink; matrixctl follows no symlink in its state directory (remove it)"
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
}

# The paths matrixctl wants, "$@", in a fixed handful of processes
# whatever their number: one stat for all of them and the directories of
# MC_PREFIXES (`stat UID:MODE:TYPE:OWNER:GROUP:PATH`), one sha256sum for
# the regular files among them, and a base64 only for a file whose content
# is not the one matrixctl wants there (`same PATH`, or `content BASE64 PATH`).
# MC_EXPECTED lists `SHA256 PATH` of the wanted contents. PATHs carry ROOT.
mc_observe_paths() {
    n=$#
    for p; do
        set -- "$@" "$ROOT$p"
    done
    shift "$n"
    # The same stat serves mc_unsafe_paths, which runs next. Its lines go
    # out as they are (the directories' too: matrixctl reads what it asked).
    mc_stat_prefixes_and "$@"
    MC_STATS_FRESH=1
    [ -z "$mc_stats" ] || printf '%s\n' "$mc_stats"
    [ $# -gt 0 ] || return 0
    # The regular files among the wanted paths.
    n=$#
    for p; do
        if [ -f "$p" ] && [ ! -L "$p" ]; then
            set -- "$@" "$p"
        fi
    done
    shift "$n"
    [ $# -gt 0 ] || return 0
    sums=$(sha256sum -- "$@") || mc_fail "cannot read the files matrixctl manages"
    mc_split_lines
    for line in $sums; do
        mc_split_as_usual
        # `HASH  PATH`
        hash=${line%% *} path=${line#* }
        path=${path# }
        case $MC_EXPECTED in
            *"
$hash $path
"*) printf 'same %s\n' "$path" ;;
            *)
                printf 'content '
                base64 -w0 < "$path"
                printf ' %s\n' "$path"
                ;;
        esac
    done
    mc_split_as_usual
}

# What interrupted applies left in the directories "$@" (paths without
# ROOT), as `leftover PATH` lines: the files in their staging directories,
# or the staging directory itself when it holds none (an apply cut after
# its renames), and files staged alone (`mc_tmp`: a restore's, or an older
# matrixctl's). The shell's own globs: no process, one directory read each.
mc_observe_leftovers() {
    for d; do
        s=$ROOT$d/$MC_STAGING_DIR
        if [ -L "$s" ]; then
            printf 'leftover %s\n' "${s#"$ROOT"}"
        elif [ -d "$s" ]; then
            mc_found=
            for f in "$s"/* "$s"/.[!.]* "$s"/..?*; do
                [ -e "$f" ] || [ -L "$f" ] || continue
                printf 'leftover %s\n' "${f#"$ROOT"}"
                mc_found=1
            done
            [ -n "$mc_found" ] || printf 'leftover %s\n' "${s#"$ROOT"}"
        fi
        for f in "$ROOT$d"/.*.matrixctl-tmp; do
            [ -e "$f" ] || [ -L "$f" ] || continue
            printf 'leftover %s\n' "${f#"$ROOT"}"
        done
    done
}

# The on-host record, then every recorded path not already observed, and
# what interrupted applies left in those paths' directories.
mc_observe_record() {
    if [ -L "$ROOT$MC_RECORD" ]; then
        printf 'unsafe %s: the record is a symlink; matrixctl follows no symlink in its state directory\n' "$ROOT$MC_RECORD"
        return 0
    fi
    if [ ! -f "$ROOT$MC_RECORD" ]; then
        printf 'record-absent\n'
        return 0
    fi
    # Line by line with the shell's own `read` (a record is text, one
    # entry per line), in one pass: no process.
    printf 'record\n'
    mc_gone_dirs=
    while IFS= read -r line || [ -n "$line" ]; do
        printf 'record-line %s\n' "$line"
        # `file HASH MODE SENSITIVE ROLE PATH`: a recorded path no longer
        # wanted is observed too.
        case $line in "file "*) ;; *) continue ;; esac
        path=${line#file * * * * }
        mc_listed "$MC_OBSERVED" "$path" && continue
        mc_observe "$path"
        mc_listed "$mc_gone_dirs" "${path%/*}" || mc_gone_dirs="$mc_gone_dirs${path%/*}
"
    done < "$ROOT$MC_RECORD"
    mc_split_lines
    # shellcheck disable=SC2086 # one directory per line
    set -- $mc_gone_dirs
    mc_split_as_usual
    mc_observe_leftovers "$@"
}

# Whether the list $1 (one item per line, each line ended) holds $2.
mc_listed() {
    case "
$1" in *"
$2
"*) return 0 ;; esac
    return 1
}

# Runs `sync` once on every path of the list $1 (one per line).
mc_sync_list() {
    [ -n "$1" ] || return 0
    mc_split_lines
    # shellcheck disable=SC2086 # one path per line
    sync -- $1
    mc_sync_status=$?
    mc_split_as_usual
    return $mc_sync_status
}

# Each account is looked up once per program, however many files name it.
mc_need_user() {
    # root is there on every host.
    [ "$1" != root ] || return 0
    mc_listed "${MC_USERS_SEEN:-}" "$1" && return 0
    id -u -- "$1" > /dev/null 2>&1 || mc_fail "user '$1' does not exist on this host (owner of $2)"
    MC_USERS_SEEN="${MC_USERS_SEEN:-}$1
"
}

mc_need_group() {
    [ "$1" != root ] || return 0
    mc_listed "${MC_GROUPS_SEEN:-}" "$1" && return 0
    getent group -- "$1" > /dev/null 2>&1 || mc_fail "group '$1' does not exist on this host (group of $2)"
    MC_GROUPS_SEEN="${MC_GROUPS_SEEN:-}$1
"
}

# Makes the staging directories of the directories "$@" (paths without
# ROOT), and the directories themselves, in one `mkdir` for all that are
# missing (0755: a directory a package would make; the staged files in it
# are 0600). One that exists must be a real directory (it is matrixctl's
# own, in a directory only root writes). The state directory's staging
# directory stays; the others are removed once their files are in place
# (mc_unstage).
mc_stage_dirs() {
    mc_missing='' mc_made=''
    for d; do
        s=$ROOT$d/$MC_STAGING_DIR
        if [ "$d" != "$MC_STATE_DIR" ]; then
            mc_listed "${MC_STAGING_DIRS:-}" "$s" || MC_STAGING_DIRS="${MC_STAGING_DIRS:-}$s
"
        fi
        if [ -d "$s" ]; then
            mc_not_link "$s"
        else
            mc_missing="$mc_missing$s
"
        fi
    done
    [ -n "$mc_missing" ] || return 0
    umask 022
    mc_split_lines
    # shellcheck disable=SC2086 # one path per line
    mkdir -p -- $mc_missing || mc_made=no
    mc_split_as_usual
    umask 077
    if [ "$mc_made" = no ]; then
        mc_split_lines
        for s in $mc_missing; do
            [ -d "$s" ] || mc_fail "cannot create directory ${s%/*}"
        done
        mc_split_as_usual
    fi
}

# Writes the content to the path's staged file (0600: the program's
# umask): with $5 = text, from MC_CONTENT by the shell's own printf (no
# process; Program::stage), otherwise stdin as base64. The live file is not
# touched. Its mode $2, owner $3 and group $4 are set, and it reaches the
# disk, together with the other staged files before the first rename
# (mc_flush_staged).
mc_stage() {
    p=$ROOT$1
    mc_staged_var "$p"
    t=$MC_STAGED_AS
    [ -d "${t%/*}" ] || mc_stage_dirs "${1%/*}"
    # A leftover of an interrupted apply (the directory is root's alone).
    if [ -e "$t" ] || [ -L "$t" ]; then rm -f -- "$t"; fi
    MC_STAGED="${MC_STAGED:-}$t
"
    if [ "${5:-}" = text ]; then
        printf '%s' "$MC_CONTENT" > "$t" || mc_fail "cannot write $1"
        MC_CONTENT=
    else
        base64 -d > "$t" || mc_fail "cannot write $1"
    fi
    MC_UNFLUSHED="${MC_UNFLUSHED:-}$2 ${3:--} ${4:--} $1
"
}

# Runs `chmod MODE` ($1 = mode) or `chown OWNER:GROUP` ($1 = owner) on the
# temporary files of the unflushed staged paths with that value $2, in one
# process; when that fails, file by file, to name the one that fails.
mc_staged_batch() {
    mc_batch_kind=$1 mc_batch_value=$2
    set --
    while IFS=' ' read -r mode owner group path; do
        [ -n "$path" ] || continue
        case $mc_batch_kind in
            mode) [ "$mode" = "$mc_batch_value" ] || continue ;;
            owner) [ "$owner:$group" = "$mc_batch_value" ] || continue ;;
        esac
        mc_staged_var "$ROOT$path"
        set -- "$@" "$MC_STAGED_AS"
    done << MC_LIST
$MC_UNFLUSHED
MC_LIST
    [ "$#" -gt 0 ] || return 0
    case $mc_batch_kind in
        mode) mc_batch_command=chmod mc_batch_spec=$mc_batch_value ;;
        owner)
            mc_batch_command='chown'
            mc_batch_owner=${mc_batch_value%%:*} mc_batch_group=${mc_batch_value#*:}
            [ "$mc_batch_owner" != - ] || mc_batch_owner=
            [ "$mc_batch_group" != - ] || mc_batch_group=
            mc_batch_spec=$mc_batch_owner${mc_batch_group:+:$mc_batch_group}
            ;;
    esac
    "$mc_batch_command" -- "$mc_batch_spec" "$@" 2> /dev/null && return 0
    for t in "$@"; do
        "$mc_batch_command" -- "$mc_batch_spec" "$t" 2> /dev/null && continue
        # The path the staged file stands for (mc_staged_var, backwards).
        n=${t%/"$MC_STAGING_DIR"/*}/${t##*/}
        mc_fail "cannot set the $mc_batch_kind of ${n#"$ROOT"} to $mc_batch_spec"
    done
}

# Gives every file staged since the last flush its mode, owner and group
# (one chmod per mode, one chown per owner and group), then flushes them
# to disk, and the paths "$@" with them, in one sync: a rename must never
# put in place a file whose bytes or attributes are not on disk yet.
mc_flush_staged() {
    mc_tmps='' mc_modes='' mc_owners=''
    for p; do
        mc_tmps="$mc_tmps$p
"
    done
    while IFS=' ' read -r mode owner group path; do
        [ -n "$path" ] || continue
        mc_listed "$mc_modes" "$mode" || mc_modes="$mc_modes$mode
"
        [ "$owner:$group" = "-:-" ] || mc_listed "$mc_owners" "$owner:$group" ||
            mc_owners="$mc_owners$owner:$group
"
        mc_staged_var "$ROOT$path"
        mc_tmps="$mc_tmps$MC_STAGED_AS
"
    done << MC_LIST
$MC_UNFLUSHED
MC_LIST
    # Modes and account names hold no blanks (roles' types refuse them).
    # A staged file is new, made under umask 077: 0600 already.
    for mode in $mc_modes; do
        [ "$mode" = 0600 ] || mc_staged_batch mode "$mode"
    done
    for owners in $mc_owners; do
        mc_staged_batch owner "$owners"
    done
    mc_sync_list "$mc_tmps" || mc_fail "cannot flush the staged files to disk"
    MC_UNFLUSHED=
}

# Flushes the directories of the renames so far, in one process: after it,
# the new files are in place for good. Then the emptied staging
# directories go, in one process.
mc_flush_renames() {
    mc_sync_list "${MC_RENAMED_DIRS:-}" 2> /dev/null || true
    MC_RENAMED_DIRS=
    mc_unstage
}

# Removes the staging directories this apply made or used (none holds a
# file any more, unless a run failed: then it stays for the next one).
mc_unstage() {
    [ -n "${MC_STAGING_DIRS:-}" ] || return 0
    mc_split_lines
    # shellcheck disable=SC2086 # one path per line
    rmdir -- $MC_STAGING_DIRS 2> /dev/null || true
    mc_split_as_usual
    MC_STAGING_DIRS=
}

# Marks a step of the transaction; a test hook (see program.rs) can pause
# there, once `runs/ID.paused` says so.
mc_step() {
    if [ "${MC_TEST_PAUSE_AT:-}" = "$1" ]; then
        printf '%s\n' "$1" > "$MC_RUN_FILE.paused"
        sleep "$MC_TEST_PAUSE_SECONDS" 9>&-
    fi
}

# Puts the staged files "$2"... of directory $1 in place: one rename each,
# so readers see old or new, whole, and one `mv` for all of them.
mc_commit() {
    d=$ROOT$1
    shift
    mc_flush_staged
    n=$#
    for name; do
        set -- "$@" "$d/$MC_STAGING_DIR/$name"
    done
    shift "$n"
    if ! mv -f -- "$@" "$d/"; then
        for t; do
            [ ! -e "$t" ] || mc_fail "cannot rename into place: ${d#"$ROOT"}/${t##*/}"
        done
        mc_fail "cannot rename into place: the files of ${d#"$ROOT"}"
    fi
    mc_listed "${MC_RENAMED_DIRS:-}" "$d" || MC_RENAMED_DIRS="${MC_RENAMED_DIRS:-}$d
"
    if [ -z "${MC_RENAMED_ONE:-}" ]; then
        MC_RENAMED_ONE=1
        mc_step first-renamed
    fi
}

mc_remove() {
    p=$ROOT$1
    case $1 in
        # A staging directory an interrupted apply left: matrixctl's own,
        # with whatever it still holds (rm never follows a symlink it is
        # given).
        */"$MC_STAGING_DIR")
            rm -rf -- "$p" || mc_fail "cannot remove $1"
            return 0
            ;;
        # A staged file an interrupted apply left: its directory goes too
        # (mc_unstage).
        */"$MC_STAGING_DIR"/*)
            mc_listed "${MC_STAGING_DIRS:-}" "${p%/*}" || MC_STAGING_DIRS="${MC_STAGING_DIRS:-}${p%/*}
"
            ;;
    esac
    if [ -L "$p" ] || [ -e "$p" ]; then
        rm -f -- "$p" || mc_fail "cannot remove $1"
        sync -- "${p%/*}" 2> /dev/null || true
    fi
}

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

# --- The transaction runs detached from the connection. ---
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

# --- Transactions: backup, journal, validators, handlers, rollback. ---
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

# --- The host as a system: packages, groups, users, directories, services. ---
# Observed as `sys KIND NAME STATE...` lines. Packages, accounts and
# services are the real system's: a host with another root (a directory in
# tests) reports them `unsupported`.
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

# Directories "$@", one stat for all (it leaves out those that are missing).
mc_observe_directories() {
    if [ -n "$ROOT" ]; then
        known=$(for d; do stat -c '%F|%a %U %G|%n' -- "$ROOT$d"; done 2> /dev/null) || true
    else
        known=$(stat -c '%F|%a %U %G|%n' -- "$@" 2> /dev/null) || true
    fi
    for d; do
        state=absent
        while IFS='|' read -r type owner name; do
            [ "$name" = "$ROOT$d" ] || continue
            case $type in
                directory) state="directory $owner" ;;
                "symbolic link") state="other symlink" ;;
                *) state="other $(printf '%s' "$type" | tr ' ' '-')" ;;
            esac
            break
        done << EOF
$known
EOF
        printf 'sys directory %s %s\n' "$d" "$state"
    done
}

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

# Sets MC_PSQL to psql itself: Debian's /usr/bin/psql is a Perl wrapper
# that costs more than the query.
mc_psql_binary() {
    for MC_PSQL in /usr/lib/postgresql/*/bin/psql; do :; done
    [ -x "$MC_PSQL" ] || MC_PSQL=psql
}

# Runs SQL from stdin as PostgreSQL's superuser, on the local server
# (psql's options after `--`; names only, never a password). setpriv, not
# runuser: no PAM session for a query.
mc_psql() {
    mc_psql_binary
    (cd / && setpriv --reuid=postgres --regid=postgres --init-groups -- \
        "$MC_PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$@") 9>&-
}

# Database $1 as `ENCODING COLLATE CTYPE OWNER`, or nothing when there is
# none.
mc_database_row() {
    printf "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'name';\n" |
        mc_psql -F ' ' -v name="$1"
}

# `sys database NAME present ENCODING COLLATE CTYPE OWNER`, `absent`, or
# `unknown` when no server answers (PostgreSQL not installed or stopped:
# apply starts it and looks again before creating anything).
# With owner $2 whose password is MC_DB_PASSWORD: when that login role
# exists already, `sys login OWNER ok` or `refused`, as the homeserver
# would log in (TCP to 127.0.0.1): matrixctl sets a password only on a
# role it creates, so one someone else made must already have it.
mc_observe_database() {
    if [ -n "$ROOT" ]; then printf 'sys database %s unsupported\n' "$1"; return 0; fi
    # No server installed (no postgres account) holds no database; one
    # installed but not answering (stopped) may: `unknown`. One psql for
    # the database and whether its login role exists.
    rows=$(printf "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'name';\nSELECT 'role-exists' FROM pg_roles WHERE rolname = :'owner';\n" |
        mc_psql -F ' ' -v name="$1" -v owner="$2" 2> /dev/null) || rows=error
    if [ "$rows" = error ] && ! getent passwd postgres > /dev/null 2>&1; then
        rows=
    fi
    role=
    case "$rows" in *role-exists*) role=1 ;; esac
    row=${rows%%role-exists*}
    row=${row%"
"}
    case "$row" in
        error) printf 'sys database %s unknown\n' "$1" ;;
        "") printf 'sys database %s absent\n' "$1" ;;
        *) printf 'sys database %s present %s\n' "$1" "$row" ;;
    esac
    [ -n "$role" ] || return 0
    mc_psql_binary
    if (cd / && PGPASSWORD=$MC_DB_PASSWORD PGCONNECT_TIMEOUT=5 "$MC_PSQL" -X -q -A -t \
        -h 127.0.0.1 -U "$2" -d postgres -c 'SELECT 1') > /dev/null 2>&1 9>&-; then
        printf 'sys login %s ok\n' "$2"
    else
        printf 'sys login %s refused\n' "$2"
    fi
}

# `os id|codename|version VALUE` from /etc/os-release (ID,
# VERSION_CODENAME, VERSION_ID), read by the shell itself; nothing for
# what it does not say.
mc_observe_os() {
    [ -r /etc/os-release ] || return 0
    while IFS='=' read -r key value; do
        value=${value#\"} value=${value%\"}
        case "$key" in
            ID) [ -z "$value" ] || printf 'os id %s\n' "$value" ;;
            VERSION_CODENAME) [ -z "$value" ] || printf 'os codename %s\n' "$value" ;;
            VERSION_ID) [ -z "$value" ] || printf 'os version %s\n' "$value" ;;
        esac
    done < /etc/os-release
}

# A role's look at the host's health: the script "$2", named "$1", run
# apart (its own shell, nothing on stdin, 30 s at most); it changes
# nothing. `health NAME-BASE64 EXIT-CODE OUTPUT-BASE64`.
mc_observe_health() {
    mc_code=0
    mc_out=$(timeout 30 sh -c "$2" 2>&1 < /dev/null) || mc_code=$?
    printf 'health %s %s %s\n' "$(printf '%s' "$1" | base64 -w0)" "$mc_code" "$(printf '%s' "$mc_out" | base64 -w0)"
}

# `version NAME VERSION` for each package "$@" that is installed, or else
# that apt would install now (its candidate, from the host's package
# lists): one dpkg-query, and one apt-cache for the rest. A package apt
# knows nothing of gets no line.
mc_observe_versions() {
    known=$(dpkg-query -W -f '${Package} ${db:Status-Status} ${Version}\n' -- "$@" 2> /dev/null) || true
    missing=
    for p; do
        v=
        while IFS=' ' read -r name status version; do
            if [ "$name" = "$p" ] && [ "$status" = installed ]; then v=$version; break; fi
        done << EOF
$known
EOF
        if [ -n "$v" ]; then printf 'version %s %s\n' "$p" "$v"; else missing="$missing $p"; fi
    done
    [ -n "$missing" ] || return 0
    # shellcheck disable=SC2086 # the names are words (package names)
    policy=$(LC_ALL=C apt-cache policy -- $missing 2> /dev/null) || true
    name=
    while IFS= read -r line; do
        case "$line" in
            " "*"Candidate: (none)") ;;
            " "*"Candidate: "*) [ -z "$name" ] || printf 'version %s %s\n' "$name" "${line##*Candidate: }" ;;
            " "*) ;;
            *:) name=${line%:} ;;
        esac
    done << EOF
$policy
EOF
}

# Creates database $1 owned by login role $2 (created too when missing,
# with the password on stdin); an existing one is checked, never altered.
# The server is started first if it is not running (its package may have
# been installed by this apply, under the guard that keeps services down).
mc_database() {
    mc_system_changed
    password=$(base64 -d)
    systemctl start postgresql > /dev/null 2>&1 || true
    tries=0
    until pg_isready -q 2> /dev/null; do
        tries=$((tries + 1))
        [ "$tries" -le 300 ] || mc_fail "PostgreSQL did not answer within 30 s (pg_isready)"
        sleep 0.1
    done
    row=$(mc_database_row "$1") || mc_fail "cannot ask PostgreSQL about database $1"
    if [ -n "$row" ]; then
        [ "$row" = "UTF8 C C $2" ] ||
            mc_fail "database $1 exists as \"$row\" (encoding, collation, ctype, owner), not \"UTF8 C C $2\"; matrixctl never alters a database: dump it, recreate it with \`CREATE DATABASE \"$1\" OWNER \"$2\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0\` (as postgres), restore it, and apply again"
        return 0
    fi
    # SQL string literal: quotes doubled (standard_conforming_strings is
    # on, so backslashes are literal).
    quoted=$(printf '%s' "$password" | sed "s/'/''/g")
    {
        # psql's meta-commands as arguments, not formats (printf would
        # read `\e` as an escape).
        printf '%s\n' "SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') AS missing \\gset" '\if :missing'
        printf 'CREATE ROLE "%s" LOGIN PASSWORD '"'"'%s'"'"';\n' "$2" "$quoted"
        printf '%s\n' '\endif'
        printf 'CREATE DATABASE "%s" OWNER "%s" ENCODING '"'"'UTF8'"'"' LC_COLLATE '"'"'C'"'"' LC_CTYPE '"'"'C'"'"' TEMPLATE template0;\n' "$1" "$2"
    } | mc_psql -v owner="$2" > "$ROOT$MC_STATE_DIR/output" 2>&1 ||
        mc_fail "creating database $1 failed: $(tail -n 3 "$ROOT$MC_STATE_DIR/output")"
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

# `sys certificate NAME pem BASE64` (the file, which matrixctl reads: an
# openssl run would cost tens of milliseconds per certificate), or
# `absent`.
mc_observe_certificate() {
    if [ -n "$ROOT" ]; then printf 'sys certificate %s unsupported\n' "$1"; return 0; fi
    if [ ! -f "$2" ]; then
        printf 'sys certificate %s absent\n' "$1"
        return 0
    fi
    printf 'sys certificate %s pem ' "$1"
    base64 -w0 < "$2"
    printf '\n'
}

# Obtains or renews certificate $1 with command $2 (its ACME client); a
# failure fails the apply, which rolls the files back.
# A certificate the CA did not issue (no DNS record yet, port 80 closed,
# the CA unreachable) fails nothing: every file and service is in place and
# the placeholder keeps serving; the run ends `pending`, and the next plan
# shows the certificate still to get.
mc_certificate() {
    out=$ROOT$MC_STATE_DIR/output
    if ! (cd / && sh -c "$2") > "$out" 2>&1 9>&-; then
        printf 'matrixctl: pending: no certificate for %s yet; the placeholder serves until an apply obtains one. The CA said:\n' "$1" >&2
        grep -v '^[[:space:]]*$' "$out" | tail -n 4 | sed 's/^/    /' >&2
        printf 'matrixctl: pending: is %s in DNS, pointing at this host, with port 80 open to the CA? (docs/host.md: certificates)\n' "$1" >&2
    fi
}

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

# Something on the host changed that a rollback cannot undo (a package, an
# account, a directory): the failure message must not say "nothing".
mc_system_changed() {
    MC_SYSTEM_CHANGED=1
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

mc_directory() {
    mc_system_changed
    p=$ROOT$1
    [ ! -L "$p" ] || mc_fail "$1 is a symlink, not a directory"
    (umask 022 && mkdir -p -- "$p") || mc_fail "cannot create directory $1"
    chown -- "$3:$4" "$p" || mc_fail "cannot give directory $1 to $3:$4"
    chmod "$2" -- "$p" || mc_fail "cannot set the mode of directory $1"
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

# Writes stdin (base64) to $1, readable by all (apt's key and source
# files), in one rename.
mc_put() {
    mc_system_changed
    p=$ROOT$1
    (umask 022 && mkdir -p -- "${p%/*}") || mc_fail "cannot create the directory of $1"
    t=$(mc_tmp "$p")
    base64 -d > "$t" || mc_fail "cannot write $1"
    chmod 0644 -- "$t"
    mv -f -- "$t" "$p" || mc_fail "cannot write $1"
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
