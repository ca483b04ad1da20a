# Files staged beside their targets, then renamed into place.

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
        # shellcheck disable=SC2153 # set in common.sh
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
