# Pinned releases: DEST/VERSION holds one (its SHA-256 in
# DEST/VERSION/.matrixctl-sha256, written last), DEST/current points at
# the one in use.

# `sys artifact DEST present|absent CURRENT`: whether version $2 with sum
# $3 is in $1, and which version `current` points at (`-`: none).
mc_observe_artifact() {
    if [ -n "$ROOT" ]; then printf 'sys artifact %s unsupported\n' "$1"; return 0; fi
    have=absent
    [ "$(cat -- "$1/$2/.matrixctl-sha256" 2> /dev/null)" != "$3" ] || have=present
    current=$(readlink -- "$1/current" 2> /dev/null) || current=-
    printf 'sys artifact %s %s %s\n' "$1" "$have" "${current:--}"
}

# Fetches version $2 of artifact $1 (name) from $3 into $4/$2, checks its
# SHA-256 ($5) before anything else, and lays it out ($6: tar, zip or
# binary; $7: leading components a tar member loses), owned by $8:$9.
# Nothing live changes here: `current` is switched by mc_artifact_switch.
mc_artifact_fetch() {
    dest=$4 version=$2
    [ "$(cat -- "$dest/$version/.matrixctl-sha256" 2> /dev/null)" != "$5" ] || return 0
    (umask 022 && mkdir -p -- "$dest") || mc_fail "cannot create $dest"
    part=$dest/.$version.matrixctl-part
    rm -rf -- "$part" "$part.download"
    case $3 in
        /*) cp -- "$3" "$part.download" 2> /dev/null || mc_fail "artifact $1 $version: cannot read $3 on the host" ;;
        http://* | https://*)
            if command -v curl > /dev/null 2>&1; then
                curl -fsSL --retry 2 -o "$part.download" -- "$3" 2> "$ROOT$MC_STATE_DIR/output"
            elif command -v wget > /dev/null 2>&1; then
                wget -q -O "$part.download" -- "$3" 2> "$ROOT$MC_STATE_DIR/output"
            elif ! command -v python3 > /dev/null 2>&1; then
                mc_fail "artifact $1 $version: the host has no curl, wget or python3 to fetch $3 with: install one (apt-get install curl), or name it among the role's packages"
            else
                python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$3" "$part.download" 2> "$ROOT$MC_STATE_DIR/output"
            fi || {
                rm -f -- "$part.download"
                mc_fail "artifact $1 $version: downloading $3 failed: $(tail -n 1 "$ROOT$MC_STATE_DIR/output" 2> /dev/null)"
            }
            ;;
        *) mc_fail "artifact $1 $version: $3 is neither an http(s) URL nor a path on the host" ;;
    esac
    sum=$(sha256sum -- "$part.download" | cut -d' ' -f1)
    if [ "$sum" != "$5" ]; then
        rm -f -- "$part.download"
        mc_fail "artifact $1 $version: $3 has SHA-256 $sum, and $5 is pinned: nothing was changed"
    fi
    mc_system_changed
    # Readable by the service that runs it, whatever the run's umask.
    mkdir -m 0755 -- "$part" || mc_fail "cannot create $part"
    case $6 in
        tar) tar -xf "$part.download" -C "$part" --no-same-owner --strip-components="$7" ;;
        zip) python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$part.download" "$part" ;;
        binary) cp -- "$part.download" "$part/$1" && chmod 0755 -- "$part/$1" ;;
    esac || { rm -rf -- "$part" "$part.download"; mc_fail "artifact $1 $version: cannot unpack $3 ($6)"; }
    rm -f -- "$part.download"
    chown -R -- "$8:$9" "$part" || mc_fail "cannot give $part to $8:$9"
    printf '%s\n' "$5" > "$part/.matrixctl-sha256"
    rm -rf -- "${dest:?}/$version"
    mv -- "$part" "$dest/$version" || mc_fail "cannot move $part to $dest/$version"
}

# Points $1/current at version $2 in one rename; a rollback points it back
# (MC_ARTIFACTS_SWITCHED: `DEST PREVIOUS` lines, `-` for none).
mc_artifact_switch() {
    previous=$(readlink -- "$1/current" 2> /dev/null) || previous=-
    [ "$previous" != "$2" ] || return 0
    MC_ARTIFACTS_SWITCHED="${MC_ARTIFACTS_SWITCHED:-}$1 ${previous:--}
"
    # shellcheck disable=SC2015 # either failing is the same failure
    ln -sfn -- "$2" "$1/.current.matrixctl-new" && mv -fT -- "$1/.current.matrixctl-new" "$1/current" ||
        mc_fail "cannot point $1/current at $2"
}

# Puts every `current` this run switched back where it pointed.
mc_rollback_artifacts() {
    printf '%s' "${MC_ARTIFACTS_SWITCHED:-}" | while IFS=' ' read -r dest previous; do
        [ -n "$dest" ] || continue
        if [ "$previous" = - ]; then
            rm -f -- "$dest/current"
        else
            ln -sfn -- "$previous" "$dest/.current.matrixctl-new" && mv -fT -- "$dest/.current.matrixctl-new" "$dest/current"
        fi
    done
}
