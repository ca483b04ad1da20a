# Paths nobody else could have bent.

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
        # Most lines are the managed files themselves: passed over unsplit.
        case $line in *:directory:*) ;; *) continue ;; esac
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
        # The path is the line's last field: only a line ending in it can be it.
        case $mc_of_line in *":$1") ;; *) continue ;; esac
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
