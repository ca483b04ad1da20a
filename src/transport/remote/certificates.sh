# Certificates obtained and renewed by a role's command.

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
