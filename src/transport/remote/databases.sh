# PostgreSQL databases and their login roles.

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
        # Its owner alone connects (PostgreSQL lets every role in by
        # default): another role on the server cannot, password or not.
        printf 'REVOKE CONNECT, TEMPORARY ON DATABASE "%s" FROM PUBLIC;\n' "$1"
    } | mc_psql -v owner="$2" > "$ROOT$MC_STATE_DIR/output" 2>&1 ||
        mc_fail "creating database $1 failed: $(tail -n 3 "$ROOT$MC_STATE_DIR/output")"
}
