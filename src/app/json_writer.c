/* Streaming JSON writer: appends straight to the response body. It tracks
 * only nesting and commas, so writing JSON costs what printing it costs. */
#include "app/app.h"
#include "runtime/codec.h"
#include "runtime/numfmt.h"

#include <errno.h>
#include <string.h>

#define MAX_DEPTH 520

#define BIT_GET(a, i) (((a)[(i) >> 3] >> ((i)&7)) & 1)
#define BIT_SET(a, i, v) ((a)[(i) >> 3] = (uint8_t)(((a)[(i) >> 3] & ~(1u << ((i)&7))) | ((unsigned)(v) << ((i)&7))))

vial_json *vial_json_begin(vial_res *rs, int status)
{
    vial_json *j = &vial_rqs(rs->rq)->json_out;
    memset(j, 0, sizeof *j);
    j->rs = rs;
    vial_res_drop_file(rs);
    vial_rqs(rs->rq)->built = 1;
    rs->status = status;
    rs->content_type = "application/json";
    rs->body_len = 0;
    return j;
}

/* Appends in place when the body has room: a JSON document is many tiny
 * pieces, and the call chain vial_res_append_body -> body_reserve per piece cost
 * more than the bytes. */
static inline void put(vial_json *j, const char *s, size_t n)
{
    vial_res *rs = j->rs;
    if (j->err)
        return;
    if (rs->body_cap && rs->body_cap - rs->body_len >= n) {
        memcpy(rs->body + rs->body_len, s, n);
        rs->body_len += n;
        return;
    }
    if (vial_res_append_body(rs, s, n) < 0)
        j->err = -ENOMEM;
}

/* Before any value: a comma when it is not the first at this level, and in an
 * object, values must follow keys. */
static void value_prefix(vial_json *j)
{
    if (j->depth && BIT_GET(j->is_obj, j->depth)) {
        if (!j->after_key)
            j->err = j->err ? j->err : -EINVAL;
        j->after_key = 0;
        return;
    }
    if (BIT_GET(j->need_comma, j->depth))
        put(j, ",", 1);
    BIT_SET(j->need_comma, j->depth, 1);
}

static void open_(vial_json *j, char c, int obj)
{
    value_prefix(j);
    if (j->depth + 1 >= MAX_DEPTH) {
        j->err = -EINVAL;
        return;
    }
    put(j, &c, 1);
    j->depth++;
    BIT_SET(j->need_comma, j->depth, 0);
    BIT_SET(j->is_obj, j->depth, obj);
}

void vial_json_obj(vial_json *j) { open_(j, '{', 1); }
void vial_json_arr(vial_json *j) { open_(j, '[', 0); }

void vial_json_end(vial_json *j)
{
    if (!j->depth || j->after_key) {
        j->err = -EINVAL;
        return;
    }
    put(j, BIT_GET(j->is_obj, j->depth) ? "}" : "]", 1);
    j->depth--;
}

static void put_string(vial_json *j, const char *s, size_t n)
{
    put(j, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(j, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t el = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = vial_hex_lower[c >> 4]; esc[5] = vial_hex_lower[c & 15];
            el = 6;
        }
        put(j, esc, el);
    }
    put(j, s + run, n - run);
    put(j, "\"", 1);
}

void vial_json_keyn(vial_json *j, const char *key, size_t len)
{
    if (!j->depth || !BIT_GET(j->is_obj, j->depth) || j->after_key) {
        j->err = -EINVAL;
        return;
    }
    if (BIT_GET(j->need_comma, j->depth))
        put(j, ",", 1);
    BIT_SET(j->need_comma, j->depth, 1);
    put_string(j, key, len);
    put(j, ":", 1);
    j->after_key = 1;
}

void vial_json_key(vial_json *j, const char *key)
{
    vial_json_keyn(j, key, strlen(key));
}

void vial_json_strn(vial_json *j, const char *s, size_t n)
{
    value_prefix(j);
    put_string(j, s, n);
}

void vial_json_str(vial_json *j, const char *s)
{
    if (!s) {
        vial_json_null(j);
        return;
    }
    vial_json_strn(j, s, strlen(s));
}

void vial_json_int(vial_json *j, int64_t v)
{
    char buf[VIAL_FMT_INT_SIZE];
    value_prefix(j);
    put(j, buf, vial_fmt_i64(buf, v));
}

void vial_json_double(vial_json *j, double v)
{
    char buf[VIAL_FMT_DOUBLE_SIZE];
    value_prefix(j);
    size_t n = vial_fmt_double(buf, v);
    if (!n) {
        /* JSON has no NaN or Infinity; writing null would hide the bug
         * (and Python's NaN is not JSON either) */
        if (!j->err)
            j->err = -EDOM;
        return;
    }
    put(j, buf, n);
}

void vial_json_raw_number(vial_json *j, const char *text, size_t n)
{
    value_prefix(j);
    put(j, text, n);
}

void vial_json_bool(vial_json *j, int v)
{
    value_prefix(j);
    put(j, v ? "true" : "false", v ? 4 : 5);
}

void vial_json_null(vial_json *j)
{
    value_prefix(j);
    put(j, "null", 4);
}

int vial_json_finish(vial_json *j)
{
    if (!j->err && (j->depth || j->after_key))
        j->err = -EINVAL;
    return j->err;
}
