# Sourced by bench scripts: start_server BIN ARGS... runs a vial program with
# --port 0 and its stderr in $SERVER_LOG (a temp file the caller removes),
# and sets $pid and $port once its "listening on" line names the port (up
# to 5 s). stop_server stops it by PID.
SERVER_LOG=$(mktemp)

start_server() {
    "$@" --port 0 2>"$SERVER_LOG" &
    pid=$!
    port=
    for _ in $(seq 50); do
        port=$(sed -n 's/.*listening on http:[^ ]*:\([0-9]*\) .*/\1/p' "$SERVER_LOG")
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    echo "the server did not start:" >&2
    cat "$SERVER_LOG" >&2
    kill "$pid"
    return 1
}

stop_server() {
    kill "$pid"
    wait "$pid" || true
}
