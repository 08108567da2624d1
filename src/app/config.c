/* The server's configuration: defaults, and the command line (vial's options
 * and the app's own, --help). Runs before vial_run, on the main thread. */
#include "vial.h"
#include "runtime/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vial_config vial_config_default(void)
{
    return (vial_config){
        .host = "127.0.0.1",
        .port = 8080,
        .threads = 0,
        .workers = 16,
        .queue_max = 4096,
        .stack_size = 128 * 1024,
        .grace_ms = 2000,
        .server_header = 0,
        .max_body = 1024 * 1024,
        .stall_ms = 100,
        .body_grace_ms = 30000,
        .body_min_rate = 1024,
        .body_memory_max = (size_t)256 << 20,
        .max_fields = 1000,
        .access_log_format = "combined",
        .log_level = "info",
        .request_id = -1,
        .processes = 1,
        .compress = -1,
        .unix_mode = -1,
        .ws_deflate = 1,
        .ws_deflate_min = 128,
        .ws_deflate_memory_max = (size_t)64 << 20,
        .tls_min_version = "1.2",
        .tls_handshake_timeout_ms = 10000,
        .backend = "io_uring",
    };
}

enum { OPT_STR, OPT_INT, OPT_SIZE, OPT_BOOL, OPT_CHOICE, OPT_LIST, OPT_MODE };

/* One of vial's options: where it lands in vial_config and its range. A
 * BOOL option also answers to --no-NAME; a CHOICE is a string among the
 * '|'-separated words of `arg`. A LIST is a comma-separated string that a
 * repeated flag (or file line) extends; a MODE is octal permission bits. */
typedef struct server_opt {
    const char *name, *arg, *help;
    int kind;
    size_t off;
    long long lo, hi;
} server_opt;

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)

static const server_opt server_opts[] = {
    {"host", "ADDR", "listen address; IPv6 too (::1); unix:/path for a Unix socket", OPT_STR,
     offsetof(vial_config, host), 0, 0},
    {"port", "N", "listen port; 0: any free one, logged", OPT_INT, offsetof(vial_config, port), 0,
     65535},
    {"threads", "N", "event-loop threads; 0: one per core", OPT_INT, offsetof(vial_config, threads),
     0, 1024},
    {"workers", "N", "worker-pool threads for sync views", OPT_INT, offsetof(vial_config, workers), 1,
     4096},
    {"queue-max", "N", "sync jobs waiting for a worker before 503", OPT_INT,
     offsetof(vial_config, queue_max), 1, 1 << 20},
    {"stack-size", "BYTES", "coroutine stack size", OPT_SIZE, offsetof(vial_config, stack_size),
     16 * KIB, 256 * MIB},
    {"grace-ms", "MS", "shutdown grace for in-flight requests", OPT_INT,
     offsetof(vial_config, grace_ms), 1, 3600000},
    {"max-body", "BYTES", "request body limit, 413 beyond", OPT_SIZE, offsetof(vial_config, max_body),
     1, 1024 * GIB},
    {"stall-ms", "MS", "log async code holding a loop longer; -1: off", OPT_INT,
     offsetof(vial_config, stall_ms), -1, 60000},
    {"body-grace-ms", "MS", "time a request body may take before its minimum rate applies; -1: off",
     OPT_INT, offsetof(vial_config, body_grace_ms), -1, 3600000},
    {"body-min-rate", "BYTES", "bytes/s a body must average after the grace time (else 408); -1: off",
     OPT_INT, offsetof(vial_config, body_min_rate), -1, 1 << 30},
    {"body-memory-max", "BYTES", "request-body bytes held in memory at once, server-wide", OPT_SIZE,
     offsetof(vial_config, body_memory_max), 64 * KIB, 1024 * GIB},
    {"max-fields", "N", "query arguments, form fields or multipart parts per request (413 beyond)",
     OPT_INT, offsetof(vial_config, max_fields), 1, 1000000},
    {"access-log", "PATH", "one line per request to PATH (appended; reopened on SIGUSR1); -: stderr",
     OPT_STR, offsetof(vial_config, access_log), 0, 0},
    {"access-log-format", "combined|json", "access log line format", OPT_CHOICE,
     offsetof(vial_config, access_log_format), 0, 0},
    {"log-level", "error|warn|info|debug", "vial's own messages at this level and above", OPT_CHOICE,
     offsetof(vial_config, log_level), 0, 0},
    {"metrics-path", "PATH", "serve Prometheus metrics at this path (e.g. /metrics)", OPT_STR,
     offsetof(vial_config, metrics_path), 0, 0},
    {"health-path", "PATH", "answer 200 here while serving, 503 while draining (e.g. /healthz)",
     OPT_STR, offsetof(vial_config, health_path), 0, 0},
    {"drain-delay-ms", "MS", "after SIGTERM, keep serving this long with the health check at 503",
     OPT_INT, offsetof(vial_config, drain_delay_ms), 0, 3600000},
    {"processes", "N", "worker processes under a supervisor (crash restart, SIGHUP reload); 1: none",
     OPT_INT, offsetof(vial_config, processes), 1, 1024},
    {"shed-target-ms", "MS", "503 new requests while their wait to start stays above MS; 0: off",
     OPT_INT, offsetof(vial_config, shed_target_ms), 0, 60000},
    {"request-id", NULL, "echo X-Request-ID (the client's, or a generated one)", OPT_BOOL,
     offsetof(vial_config, request_id), 0, 1},
    {"server-header", NULL, "send \"Server: vial\" on every response", OPT_BOOL,
     offsetof(vial_config, server_header), 0, 1},
    {"debug", NULL, "development mode: templates are compiled again when their files change",
     OPT_BOOL, offsetof(vial_config, debug), 0, 1},
    {"compress", NULL, "compress responses (gzip, br) by Accept-Encoding; see vial_compress", OPT_BOOL,
     offsetof(vial_config, compress), 0, 1},
    /* listening and proxies (listen.c, proxy.c) */
    {"listen", "ADDR[,ADDR...]",
     "listen on these instead of --host/--port (repeatable): 127.0.0.1:8080, [::1]:8080, unix:/path",
     OPT_LIST, offsetof(vial_config, listen), 0, 0},
    {"unix-mode", "MODE", "permissions of Unix socket files, octal (0660); -1: as the umask leaves them",
     OPT_MODE, offsetof(vial_config, unix_mode), -1, 07777},
    {"trusted-proxy", "CIDR[,CIDR...]",
     "peers whose X-Forwarded-For/-Proto are believed: 10.0.0.0/8, ::1/128, 127.0.0.1, unix",
     OPT_STR, offsetof(vial_config, trusted_proxy), 0, 0},
    {"ws-deflate", NULL, "websocket permessage-deflate when the client offers it", OPT_BOOL,
     offsetof(vial_config, ws_deflate), 0, 1},
    {"ws-deflate-min", "BYTES", "websocket messages shorter than this are sent uncompressed", OPT_SIZE,
     offsetof(vial_config, ws_deflate_min), 1, 1024 * MIB},
    {"ws-deflate-memory-max", "BYTES", "zlib state of all websockets at once (then uncompressed, or 1013)",
     OPT_SIZE, offsetof(vial_config, ws_deflate_memory_max), 16 * KIB, 1024 * GIB},
    /* TLS (src/http/tls.c) */
    {"tls-cert", "FILE", "serve TLS on the TCP listeners: certificate chain, PEM (leaf first)", OPT_STR,
     offsetof(vial_config, tls_cert), 0, 0},
    {"tls-key", "FILE", "the certificate's private key, PEM, unencrypted", OPT_STR,
     offsetof(vial_config, tls_key), 0, 0},
    {"tls-ciphers", "LIST", "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites: OpenSSL's)", OPT_STR,
     offsetof(vial_config, tls_ciphers), 0, 0},
    {"tls-min-version", "1.2|1.3", "oldest TLS version accepted", OPT_CHOICE,
     offsetof(vial_config, tls_min_version), 0, 0},
    {"tls-handshake-timeout-ms", "MS", "close a connection whose TLS handshake takes longer", OPT_INT,
     offsetof(vial_config, tls_handshake_timeout_ms), 1, 3600000},
    {"backend", "io_uring|epoll", "event-loop backend; io_uring falls back to epoll where refused",
     OPT_CHOICE, offsetof(vial_config, backend), 0, 0},
};
#define NOPTS (sizeof server_opts / sizeof server_opts[0])

/* "16K", "1024G", "1000": sizes as --help and the errors show them. */
static void fmt_size(char *out, size_t cap, long long v)
{
    static const char units[] = "GMK";
    static const long long mult[] = {GIB, MIB, KIB};
    for (int i = 0; i < 3; i++)
        if (v && v % mult[i] == 0) {
            snprintf(out, cap, "%lld%c", v / mult[i], units[i]);
            return;
        }
    snprintf(out, cap, "%lld", v);
}

/* Decimal, optionally signed, with a K/M/G suffix for sizes. strtoll is used
 * in base 10 with no locale-dependent part (no grouping, no decimals). */
static int parse_number(const char *s, int sizes, long long lo, long long hi, long long *out)
{
    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno)
        return -EINVAL;
    if (sizes && *end) {
        long long m = *end == 'K' || *end == 'k'   ? KIB
                      : *end == 'M' || *end == 'm' ? MIB
                      : *end == 'G' || *end == 'g' ? GIB
                                                   : 0;
        if (!m || end[1] || v > hi / m)
            return -EINVAL;
        v *= m;
        end++;
    }
    if (*end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

static const char *prog_name(const char *argv0)
{
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    return slash ? slash + 1 : argv0 ? argv0 : "app";
}

static void help_line(const char *left, const char *help, const char *def)
{
    if (strlen(left) < 24)
        printf("  %-24s%s", left, help);
    else
        printf("  %s\n  %-24s%s", left, "", help);
    if (def)
        printf(" (default: %s)", def);
    printf("\n");
}

static void print_help(const vial_config *cfg, const char *prog)
{
    char left[96], def[64];
    printf("usage: %s [options]\n\nServer options:\n", prog);
    for (size_t i = 0; i < NOPTS; i++) {
        const server_opt *o = &server_opts[i];
        const char *field = (const char *)cfg + o->off;
        const char *d = def;
        switch (o->kind) {
        case OPT_STR:
        case OPT_CHOICE:
        case OPT_LIST:
            d = *(const char *const *)field;
            break;
        case OPT_MODE:
            if (*(const int *)field < 0)
                d = "-1";
            else
                snprintf(def, sizeof def, "0%o", (unsigned)*(const int *)field);
            break;
        case OPT_INT:
            snprintf(def, sizeof def, "%d", *(const int *)field);
            break;
        case OPT_SIZE:
            fmt_size(def, sizeof def, (long long)*(const size_t *)field);
            break;
        case OPT_BOOL:
            d = *(const int *)field < 0 ? (o->off == offsetof(vial_config, compress) ? "as the app sets it"
                                                                                      : "with --access-log")
                : *(const int *)field ? "on" : "off";
            break;
        }
        if (o->kind == OPT_BOOL)
            snprintf(left, sizeof left, "--[no-]%s", o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name, o->arg);
        help_line(left, o->help, d);
    }
    help_line("--config FILE", "read options from FILE: \"name = value\" lines, # comments; "
              "VIAL_NAME variables override it, flags override both", NULL);
    help_line("-h, --help", "print this help and exit", NULL);
    if (cfg->options && cfg->options[0].name) {
        printf("\nOptions of %s:\n", prog);
        for (const vial_option *o = cfg->options; o->name; o++) {
            if (o->arg)
                snprintf(left, sizeof left, "--%s %s", o->name, o->arg);
            else
                snprintf(left, sizeof left, "--%s", o->name);
            const char *const *sv = o->arg ? (const char *const *)o->dest : NULL;
            help_line(left, o->help ? o->help : "", sv && *sv ? *sv : NULL);
        }
    }
    fflush(stdout);
}

/* The error and the hint, on stderr. Always -EINVAL. */
static int usage_error(const char *prog, const char *fmt, const char *a, const char *b)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, a, b);
    vial_log(VIAL_LOG_ERROR, "%s", msg);
    fprintf(stderr, "Try '%s --help' for the options.\n", prog);
    return -EINVAL;
}

static int bad_value(const char *prog, const server_opt *o, const char *origin)
{
    char what[96], lo[32], hi[32];
    switch (o->kind) {
    case OPT_STR:
        snprintf(what, sizeof what, !strcmp(o->name, "host") ? "an address" : "a value");
        break;
    case OPT_CHOICE:
        snprintf(what, sizeof what, "one of %s", o->arg);
        break;
    case OPT_LIST:
        snprintf(what, sizeof what, "a value");
        break;
    case OPT_MODE:
        snprintf(what, sizeof what, "octal permission bits (0660) or -1");
        break;
    case OPT_INT:
        snprintf(what, sizeof what, "a number %lld-%lld", o->lo, o->hi);
        break;
    default:
        fmt_size(lo, sizeof lo, o->lo);
        fmt_size(hi, sizeof hi, o->hi);
        snprintf(what, sizeof what, "a size %s-%s (bytes, or K, M, G)", lo, hi);
        break;
    }
    char name[96];
    snprintf(name, sizeof name, "%s--%s", origin, o->name);
    return usage_error(prog, "%s needs %s", name, what);
}

static int choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        size_t w = strcspn(p, "|");
        if (w == n && !memcmp(p, v, n))
            return 1;
        p += w + (p[w] == '|');
    }
    return 0;
}

/* Values read from a config file, kept (and reachable) for the life of the
 * process, as argv's strings are. */
struct kept {
    struct kept *next;
    char s[];
};
static struct kept *kept_values;

/* a, or "a,b" when b is given, kept. */
static char *keep_joined(const char *a, const char *b)
{
    size_t n = strlen(a), m = b ? strlen(b) + 1 : 0;
    struct kept *k = malloc(sizeof *k + n + m + 1);
    if (!k)
        return NULL;
    memcpy(k->s, a, n + 1);
    if (b) {
        k->s[n] = ',';
        memcpy(k->s + n + 1, b, m);
    }
    k->next = kept_values;
    kept_values = k;
    return k->s;
}

static char *keep_string(const char *v)
{
    return keep_joined(v, NULL);
}

/* "0660", "660", "-1". */
static int parse_mode(const char *v, long long *out)
{
    if (!v || !*v)
        return -EINVAL;
    if (!strcmp(v, "-1")) {
        *out = -1;
        return 0;
    }
    long long m = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '7' || (m = m * 8 + (*p - '0')) > 07777)
            return -EINVAL;
    }
    *out = m;
    return 0;
}

/* append: a LIST option given again in the same place (flags, one file)
 * extends its value instead of replacing it. */
static int set_server_opt(vial_config *cfg, const server_opt *o, const char *v, int append)
{
    char *field = (char *)cfg + o->off;
    long long n;
    switch (o->kind) {
    case OPT_LIST: {
        const char *old = *(const char **)field;
        if (!v || !*v)
            return -EINVAL;
        if (append && old && *old && !(v = keep_joined(old, v)))
            return -ENOMEM;
        *(const char **)field = v;
        return 0;
    }
    case OPT_MODE:
        if (parse_mode(v, &n) < 0)
            return -EINVAL;
        *(int *)field = (int)n;
        return 0;
    case OPT_STR:
        if (!v || !*v)
            return -EINVAL;
        *(const char **)field = v;
        return 0;
    case OPT_CHOICE:
        if (!v || !choice_ok(o->arg, v))
            return -EINVAL;
        *(const char **)field = v;
        return 0;
    case OPT_INT:
        if (parse_number(v, 0, o->lo, o->hi, &n) < 0)
            return -EINVAL;
        *(int *)field = (int)n;
        return 0;
    case OPT_SIZE:
        if (parse_number(v, 1, o->lo, o->hi, &n) < 0)
            return -EINVAL;
        *(size_t *)field = (size_t)n;
        return 0;
    }
    return -EINVAL;
}

/* Whether the option's name (opt[0..len), before any '=') is name. */
static int match(const char *opt, size_t len, const char *name)
{
    return strlen(name) == len && !memcmp(opt, name, len);
}

static int parse_bool(const char *v)
{
    static const char *const yes[] = {"1", "on", "yes", "true"}, *const no[] = {"0", "off", "no", "false"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(v, yes[i]))
            return 1;
        if (!strcmp(v, no[i]))
            return 0;
    }
    return -1;
}

/* An option given by name with its value from the config file or the
 * environment (`origin` names where, for the error). Booleans and the app's
 * flags take 1/0, on/off, yes/no, true/false. */
static int set_named(vial_config *cfg, const char *prog, const char *name, const char *v,
                     const char *origin, int append)
{
    for (size_t k = 0; k < NOPTS; k++) {
        const server_opt *o = &server_opts[k];
        if (strcmp(name, o->name))
            continue;
        if (o->kind == OPT_BOOL) {
            int b = parse_bool(v);
            if (b < 0)
                return usage_error(prog, "%s needs on or off", origin, "");
            *(int *)((char *)cfg + o->off) = b;
            return 0;
        }
        if (set_server_opt(cfg, o, v, append) < 0) {
            char where[160];
            snprintf(where, sizeof where, "%s: ", origin);
            return bad_value(prog, o, where);
        }
        return 0;
    }
    for (const vial_option *o = cfg->options; o && o->name; o++) {
        if (strcmp(name, o->name))
            continue;
        if (o->arg) {
            *(const char **)o->dest = v;
            return 0;
        }
        int b = parse_bool(v);
        if (b < 0)
            return usage_error(prog, "%s needs on or off", origin, "");
        *(int *)o->dest = b;
        return 0;
    }
    return usage_error(prog, "%s: unknown option %s", origin, name);
}

/* --config FILE: "name = value" per line (the option's long name), blank
 * lines and # comments skipped, spaces around both trimmed. The values
 * live for the rest of the process, as argv does. */
static int read_config_file(vial_config *cfg, const char *prog, const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        char eb[128];
        return usage_error(prog, "cannot read --config %s: %s", path, strerror_r(errno, eb, sizeof eb));
    }
    char line[4096], origin[600];
    int lineno = 0, r = 0, listen_seen = 0;
    while (r == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line + strspn(line, " \t");
        p[strcspn(p, "\r\n")] = 0;
        if (!*p || *p == '#')
            continue;
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        char *eq = strchr(p, '=');
        if (!eq) {
            r = usage_error(prog, "%s: expected \"name = value\"%s", origin, "");
            break;
        }
        char *k_end = eq;
        while (k_end > p && (k_end[-1] == ' ' || k_end[-1] == '\t'))
            k_end--;
        *k_end = 0;
        char *v = eq + 1;
        v += strspn(v, " \t");
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = 0;
        char *keep = keep_string(v);
        if (!keep) {
            r = -ENOMEM;
            break;
        }
        /* "listen" on several lines: every one of them. */
        int again = !strcmp(p, "listen") && listen_seen;
        listen_seen |= !strcmp(p, "listen");
        r = set_named(cfg, prog, p, keep, origin, again);
    }
    fclose(f);
    return r;
}

/* VIAL_ACCESS_LOG for access-log. */
static void env_name(char *out, size_t cap, const char *opt)
{
    size_t n = (size_t)snprintf(out, cap, "VIAL_");
    for (; *opt && n + 1 < cap; opt++)
        out[n++] = *opt == '-' ? '_' : (char)(*opt >= 'a' && *opt <= 'z' ? *opt - 32 : *opt);
    out[n] = 0;
}

static int read_env_one(vial_config *cfg, const char *prog, const char *name)
{
    char var[96];
    env_name(var, sizeof var, name);
    const char *v = getenv(var);
    return v ? set_named(cfg, prog, name, v, var, 0) : 0;
}

/* Precedence: the config file, then VIAL_<NAME> variables, then flags. */
static int read_file_and_env(vial_config *cfg, const char *prog, int argc, char **argv)
{
    const char *file = getenv("VIAL_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc)
                return usage_error(prog, "--config needs %s%s", "FILE", "");
            file = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            file = argv[i] + 9;
        }
    }
    int r = file && *file ? read_config_file(cfg, prog, file) : 0;
    for (size_t k = 0; k < NOPTS && r == 0; k++)
        r = read_env_one(cfg, prog, server_opts[k].name);
    for (const vial_option *o = cfg->options; o && o->name && r == 0; o++)
        r = read_env_one(cfg, prog, o->name);
    return r;
}

/* What vial_config_args was given, for a reload (SIGHUP) to read the
 * config file, the environment and the flags again on the same base. */
static vial_config args_base;
static int args_argc, args_saved;
static char **args_argv;

int vial_config_reread(vial_config *cfg)
{
    if (!args_saved)
        return 0;
    vial_config fresh = args_base;
    args_saved = 0; /* keep the first call's base */
    int r = vial_config_args(&fresh, args_argc, args_argv);
    args_saved = 1;
    if (r < 0)
        return r;
    for (size_t k = 0; k < NOPTS; k++) {
        const server_opt *o = &server_opts[k];
        size_t size = o->kind == OPT_SIZE ? sizeof(size_t)
                      : o->kind == OPT_STR || o->kind == OPT_CHOICE ? sizeof(const char *)
                                                                    : sizeof(int);
        memcpy((char *)cfg + o->off, (const char *)&fresh + o->off, size);
    }
    return 0;
}

int vial_config_args(vial_config *cfg, int argc, char **argv)
{
    const char *prog = prog_name(argc > 0 ? argv[0] : NULL);
    if (!args_saved) {
        args_base = *cfg;
        args_argc = argc;
        args_argv = argv;
        args_saved = 1;
    }
    for (const vial_option *o = cfg->options; o && o->name; o++) {
        for (size_t k = 0; k < NOPTS; k++) {
            const char *n = server_opts[k].name;
            if (!strcmp(o->name, n) || (!strncmp(o->name, "no-", 3) && !strcmp(o->name + 3, n)) ||
                !strcmp(o->name, "help"))
                return usage_error(prog, "the app's option --%s%s is one of vial's", o->name, "");
        }
        if (!o->dest)
            return usage_error(prog, "the app's option --%s%s has nowhere to store it", o->name, "");
        if (!strcmp(o->name, "config"))
            return usage_error(prog, "the app's option --%s%s is one of vial's", o->name, "");
    }
    /* A broken config file must not hide --help. */
    int help = 0, listen_seen = 0;
    for (int i = 1; i < argc; i++)
        help |= !strcmp(argv[i], "-h") || !strcmp(argv[i], "--help");
    if (!help) {
        int r = read_file_and_env(cfg, prog, argc, argv);
        if (r < 0)
            return r;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            print_help(cfg, prog);
            exit(0);
        }
        if (strncmp(a, "--", 2) || !a[2])
            return usage_error(prog, "unexpected argument %s%s", a, "");
        if (!strcmp(a, "--config")) {
            i++; /* read first, by read_file_and_env */
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        /* A value comes after '=' or as the next argument, unless that looks
         * like the next option: "--host --port 80" is a missing host. */
        const char *next = i + 1 < argc && strncmp(argv[i + 1], "--", 2) ? argv[i + 1] : NULL;

        const server_opt *so = NULL;
        int negated = 0;
        for (size_t k = 0; k < NOPTS && !so; k++) {
            if (match(name, len, server_opts[k].name))
                so = &server_opts[k];
            else if (server_opts[k].kind == OPT_BOOL && len > 3 && !memcmp(name, "no-", 3) &&
                     match(name + 3, len - 3, server_opts[k].name))
                so = &server_opts[k], negated = 1;
        }
        if (so && so->kind == OPT_BOOL) {
            if (eq)
                return usage_error(prog, "--%s%s takes no value", negated ? "no-" : "", so->name);
            *(int *)((char *)cfg + so->off) = !negated;
            continue;
        }
        if (so) {
            const char *v = eq ? eq + 1 : next;
            if (!eq && v)
                i++;
            int again = so->kind == OPT_LIST && listen_seen;
            listen_seen |= so->kind == OPT_LIST;
            if (set_server_opt(cfg, so, v, again) < 0)
                return bad_value(prog, so, "");
            continue;
        }
        const vial_option *ao = NULL;
        for (const vial_option *o = cfg->options; o && o->name && !ao; o++)
            if (match(name, len, o->name))
                ao = o;
        if (!ao) {
            char shown[64];
            snprintf(shown, sizeof shown, "--%.*s", (int)(len < 48 ? len : 48), name);
            return usage_error(prog, "unknown option %s%s", shown, "");
        }
        if (!ao->arg) {
            if (eq)
                return usage_error(prog, "--%s takes no value%s", ao->name, "");
            *(int *)ao->dest = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : next;
        if (!v)
            return usage_error(prog, "--%s needs %s", ao->name, ao->arg);
        if (!eq)
            i++;
        *(const char **)ao->dest = v;
    }
    return 0;
}
