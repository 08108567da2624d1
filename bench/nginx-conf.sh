# shellcheck shell=bash
# Sourced by bench scripts: nginx_conf DIR PORT writes DIR/nginx.conf, an
# nginx of one process in the foreground (no master, no access log) that
# answers /plaintext and /json as bench/techempower does, and makes the
# directories it wants. Run it as: nginx -p DIR/ -c DIR/nginx.conf -e DIR/error.log
nginx_conf() {
    mkdir -p "$1/logs"
    cat >"$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; multi_accept on; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 65s;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location = /plaintext { default_type text/plain; return 200 "Hello, World!"; }
        location = /json { default_type application/json; return 200 '{"message":"Hello, World!"}'; }
    }
}
EOF
}
