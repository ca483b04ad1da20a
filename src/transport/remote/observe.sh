# What a plan asks of the host: its files, the record, leftovers, the
# host's release, package versions and the roles' health looks.

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
    # Lists are built as lines and split once: `set -- "$@" X` in a loop
    # copies every argument each time (hundreds of files on a machine
    # with many customers).
    if [ -n "$ROOT" ]; then
        mc_list=
        for p; do
            mc_list="$mc_list$ROOT$p
"
        done
        mc_split_lines
        # shellcheck disable=SC2086 # one argument per line
        set -- $mc_list
        mc_split_as_usual
    fi
    # The same stat serves mc_unsafe_paths, which runs next. Its lines go
    # out as they are (the directories' too: matrixctl reads what it asked).
    mc_stat_prefixes_and "$@"
    # shellcheck disable=SC2034 # read by mc_unsafe_paths, in paths.sh
    MC_STATS_FRESH=1
    [ -z "$mc_stats" ] || printf '%s\n' "$mc_stats"
    [ $# -gt 0 ] || return 0
    # The regular files among the wanted paths.
    mc_list=
    for p; do
        if [ -f "$p" ] && [ ! -L "$p" ]; then
            mc_list="$mc_list$p
"
        fi
    done
    mc_split_lines
    # shellcheck disable=SC2086 # one argument per line
    set -- $mc_list
    mc_split_as_usual
    [ $# -gt 0 ] || return 0
    sums=$(sha256sum -- "$@") || mc_fail "cannot read the files matrixctl manages"
    # Each `HASH  PATH` against the expected ones, in awk's hash table (a
    # shell pattern over MC_EXPECTED costs its whole length per file: a
    # machine with fifty customers wants hundreds of files).
    verdicts=$(printf '%s\n--sums--\n%s\n' "$MC_EXPECTED" "$sums" | awk '
        $0 == "--sums--" { sums = 1; next }
        !sums { if ($0 != "") expected[$0] = 1; next }
        $0 != "" {
            hash = substr($0, 1, 64); path = substr($0, 67)
            print (((hash " " path) in expected) ? "same " : "differs ") path
        }') || mc_fail "cannot compare the files matrixctl manages"
    mc_split_lines
    for line in $verdicts; do
        mc_split_as_usual
        case $line in
            "same "*) printf '%s\n' "$line" ;;
            *)
                path=${line#differs }
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
    # In one awk (a record is text, one entry per line): the shell's `read`
    # costs a syscall per byte, and a pattern over MC_OBSERVED per line
    # its whole length (a machine's record has hundreds of entries).
    printf 'record\n'
    mc_read=$(printf '%s\n' "$MC_OBSERVED" | awk '
        NR == FNR { if ($0 != "") observed[$0] = 1; next }
        { print "record-line " $0 }
        # `file HASH MODE SENSITIVE ROLE PATH`: a recorded path no longer
        # wanted is observed too.
        /^file / {
            path = $0
            sub(/^file [^ ]* [^ ]* [^ ]* [^ ]* /, "", path)
            if (!(path in observed)) print "gone " path
        }' - "$ROOT$MC_RECORD") || mc_fail "cannot read the record $ROOT$MC_RECORD"
    mc_gone_dirs=
    mc_split_lines
    for line in $mc_read; do
        mc_split_as_usual
        case $line in
            "gone "*)
                path=${line#gone }
                mc_observe "$path"
                mc_listed "$mc_gone_dirs" "${path%/*}" || mc_gone_dirs="$mc_gone_dirs${path%/*}
"
                ;;
            *) printf '%s\n' "$line" ;;
        esac
    done
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
