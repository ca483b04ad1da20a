# Directories with their owner, group and mode.

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

mc_directory() {
    mc_system_changed
    p=$ROOT$1
    [ ! -L "$p" ] || mc_fail "$1 is a symlink, not a directory"
    (umask 022 && mkdir -p -- "$p") || mc_fail "cannot create directory $1"
    chown -- "$3:$4" "$p" || mc_fail "cannot give directory $1 to $3:$4"
    chmod "$2" -- "$p" || mc_fail "cannot set the mode of directory $1"
}
