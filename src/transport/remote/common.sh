# matrixctl's program on the target host: this part, what every other
# uses, first; the parts of src/transport/remote/ joined in the order
# src/transport/program.rs lists them. It arrives on stdin, never as
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
    # shellcheck disable=SC2034 # read by the callers, in files.sh
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

# Something on the host changed that a rollback cannot undo (a package, an
# account, a directory): the failure message must not say "nothing".
mc_system_changed() {
    # shellcheck disable=SC2034 # read by mc_end, in transaction.sh
    MC_SYSTEM_CHANGED=1
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
