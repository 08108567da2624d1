/* Response heads: status line, the cached Date header, framing headers.
 * Plain memcpy into the connection's output buffer; no allocation. */
#include "http/server.h"
#include "runtime/numfmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

const char *vial_status_reason(int s)
{
    switch (s) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:
        if (s >= 500) return "Server Error";
        if (s >= 400) return "Client Error";
        if (s >= 300) return "Redirection";
        if (s >= 200) return "Success";
        return "Informational";
    }
}

/* The Date line is rebuilt at most once a second per thread. */
static __thread time_t date_sec = -1;
static __thread char date_line[48];
static __thread size_t date_len;

static const char *date_header(size_t *len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != date_sec) {
        /* not strftime: its %a and %b follow the application's locale */
        memcpy(date_line, "Date: ", 6);
        size_t n = 6 + vial_http_date(ts.tv_sec, date_line + 6);
        memcpy(date_line + n, "\r\n", 2);
        date_len = n + 2;
        date_sec = ts.tv_sec;
    }
    *len = date_len;
    return date_line;
}

typedef struct {
    char *p, *end;
    int overflow;
} out_t;

static inline void put(out_t *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUTS(o, lit) put(o, lit, sizeof(lit) - 1)

static void put_uint(out_t *o, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + sizeof tmp - n, (size_t)n);
}

static void put_status_line(out_t *o, int status)
{
    if (status == 200) {
        PUTS(o, "HTTP/1.1 200 OK\r\n");
        return;
    }
    PUTS(o, "HTTP/1.1 ");
    put_uint(o, (uint64_t)status);
    PUTS(o, " ");
    const char *r = vial_status_reason(status);
    put(o, r, strlen(r));
    PUTS(o, "\r\n");
}

static void put_common(out_t *o, int server_header)
{
    size_t dl;
    const char *d = date_header(&dl);
    put(o, d, dl);
    if (server_header)
        PUTS(o, "Server: vial\r\n");
}

int vial_write_head(const vial_req *rq, char *buf, size_t cap, int keep_alive, int chunked,
                    int server_header)
{
    const vial_res *rs = &rq->res;
    out_t o = {buf, buf + cap, 0};
    int status = rs->status;
    put_status_line(&o, status);
    put_common(&o, server_header);
    if (rs->content_type) {
        PUTS(&o, "Content-Type: ");
        put(&o, rs->content_type, strlen(rs->content_type));
        PUTS(&o, "\r\n");
    }
    for (uint32_t i = 0; i < rs->nheaders; i++) {
        const vial_res_header_t *h = &rs->headers[i];
        put(&o, h->name, h->name_len);
        PUTS(&o, ": ");
        put(&o, h->value, h->value_len);
        PUTS(&o, "\r\n");
    }
    int no_body = (status >= 100 && status < 200) || status == 204 || status == 304;
    if (chunked) {
        PUTS(&o, "Transfer-Encoding: chunked\r\n");
    } else if (!no_body && !rs->stream_close) {
        PUTS(&o, "Content-Length: ");
        put_uint(&o, status == 205 ? 0 : rs->body_len);
        PUTS(&o, "\r\n");
    }
    if (!keep_alive)
        PUTS(&o, "Connection: close\r\n");
    else if (rq->head.version_minor == 0)
        PUTS(&o, "Connection: keep-alive\r\n");
    PUTS(&o, "\r\n");
    return o.overflow ? -1 : (int)(o.p - buf);
}

int vial_write_error(int status, char *buf, size_t cap, int server_header)
{
    out_t o = {buf, buf + cap, 0};
    const char *r = vial_status_reason(status);
    size_t rlen = strlen(r);
    put_status_line(&o, status);
    put_common(&o, server_header);
    PUTS(&o, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    put_uint(&o, rlen);
    PUTS(&o, "\r\nConnection: close\r\n\r\n");
    put(&o, r, rlen);
    return o.overflow ? -1 : (int)(o.p - buf);
}
