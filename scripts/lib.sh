# Shared by scripts/demo and scripts/test: install what is missing, build and install
# the extension, start throwaway clusters owned by the postgres user.
set -euo pipefail

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_ISOLATION_REGRESS=/usr/lib/postgresql/$PG_VERSION/lib/pgxs/src/test/isolation/pg_isolation_regress
PGRX_VERSION=0.18.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\n==> %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_packages() {
    local missing=()
    for p in postgresql-$PG_VERSION postgresql-server-dev-$PG_VERSION libclang-dev clang sudo; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_pgrx() {
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        say "installing cargo-pgrx $PGRX_VERSION (a few minutes)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "pg$PG_VERSION" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        say "cargo pgrx init (uses the Debian server, downloads nothing)"
        cargo pgrx init --pg$PG_VERSION "$PG_BIN/pg_config"
    fi
}

# cargo pgrx copies the library over the installed one in place, which changes the
# code under any running server that has it mapped (a demo cluster, say) and crashes
# it. Unlinking first leaves those servers their old copy.
unlink_installed_library() {
    as_root rm -f "$("$PG_BIN/pg_config" --pkglibdir)/pg_cache.so"
}

install_extension() {
    say "building and installing pg_cache"
    unlink_installed_library
    (cd "$ROOT" && cargo pgrx install --release --pg-config "$PG_BIN/pg_config" >/dev/null)
    # Earlier releases' install scripts (cargo pgrx copies only upgrade scripts), so
    # that a database can be created at an old version and upgraded, as in the field.
    local ext
    ext="$("$PG_BIN/pg_config" --sharedir)/extension"
    for f in "$ROOT"/sql/pg_cache--[0-9]*.sql; do
        case "$(basename "$f")" in *--*--*) ;; *) as_root cp "$f" "$ext/" ;; esac
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_cluster DIR PORT [extra postgresql.conf lines...]: a new cluster in DIR,
# owned by postgres, listening on 127.0.0.1:PORT with pg_cache preloaded.
start_cluster() {
    local dir=$1 port=$2
    shift 2
    as_root mkdir -p "$dir"
    as_root chown postgres: "$dir"
    as_root chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_root runuser -u postgres -- "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust >/dev/null
    fi
    as_root runuser -u postgres -- bash -c "cat > '$dir/pg_cache.conf'" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cache'
max_prepared_transactions = 10
$(printf '%s\n' "$@")
CONF
    grep -q "include 'pg_cache.conf'" "$dir/postgresql.conf" ||
        as_root runuser -u postgres -- bash -c "echo \"include 'pg_cache.conf'\" >> '$dir/postgresql.conf'"
    # CLUSTER_ULIMIT_V (kB), when set, caps the server's address space (ulimit -v),
    # as vm.overcommit_memory = 2 or a container limit would.
    as_root runuser -u postgres -- bash -c "${CLUSTER_ULIMIT_V:+ulimit -v $CLUSTER_ULIMIT_V && }exec '$PG_BIN/pg_ctl' -D '$dir' -l '$dir/server.log' -w start" >/dev/null
}

# start_standby DIR PORT PRIMARY_PORT [extra lines...]: a hot standby of the cluster
# on PRIMARY_PORT (pg_basebackup -R over loopback), listening on PORT.
start_standby() {
    local dir=$1 port=$2 primary=$3
    shift 3
    as_root mkdir -p "$dir"
    as_root chown postgres: "$dir"
    as_root chmod 700 "$dir"
    as_root runuser -u postgres -- "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$dir" -R -X stream --checkpoint=fast >/dev/null
    start_cluster "$dir" "$port" "$@"
}

stop_cluster() {
    local dir=$1
    [ -f "$dir/postmaster.pid" ] && as_root runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
}
