/* The template lexer: data between tags, and the tokens inside {{ }} and
 * {% %}, with Jinja's whitespace control ('-' strips the whitespace on that
 * side of a tag, newlines included), comments and raw blocks. */
#include "template/tmpl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

char *tmpl_normalize(vial_arena *a, const char *src, size_t len, size_t *outlen)
{
    char *d = vial_arena_alloc(a, len + 1);
    if (!d)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '\r') {
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
            d[o++] = '\n';
        } else if (c == '\v' || c == '\f' || c == 0x1c || c == 0x1d || c == 0x1e) {
            d[o++] = '\n';
        } else if (c == 0xc2 && i + 1 < len && (unsigned char)src[i + 1] == 0x85) {
            d[o++] = '\n', i++;
        } else if (c == 0xe2 && i + 2 < len && (unsigned char)src[i + 1] == 0x80 &&
                   ((unsigned char)src[i + 2] == 0xa8 || (unsigned char)src[i + 2] == 0xa9)) {
            d[o++] = '\n', i += 2;
        } else {
            d[o++] = (char)c;
        }
    }
    if (o && d[o - 1] == '\n')
        o--;
    d[o] = 0;
    *outlen = o;
    return d;
}

void lex_init(lexer *lx, vial_arena *a, const char *src, size_t len)
{
    memset(lx, 0, sizeof *lx);
    lx->src = lx->p = src;
    lx->end = src + len;
    lx->line = 1;
    lx->a = a;
}

static int lerr(lexer *lx, int line, const char *msg)
{
    snprintf(lx->err, sizeof lx->err, "%s", msg);
    lx->errline = line;
    return -1;
}

static void count_lines(lexer *lx, const char *from, const char *to)
{
    for (; from < to; from++)
        if (*from == '\n')
            lx->line++;
}

/* Is there a tag start at p ("{{", "{%", "{#")? */
static int tag_at(lexer *lx, const char *p)
{
    if (p + 1 >= lx->end || p[0] != '{')
        return 0;
    return p[1] == '{' || p[1] == '%' || p[1] == '#' ? p[1] : 0;
}

/* At "{%": is this "{%[-+]? raw [-]?%}"? Returns the end of the tag or NULL. */
static const char *match_word_tag(lexer *lx, const char *p, const char *word, bool *strip_before,
                                  bool *strip_after)
{
    const char *q = p + 2;
    *strip_before = false;
    if (q < lx->end && (*q == '-' || *q == '+'))
        *strip_before = *q == '-', q++;
    while (q < lx->end && is_ws(*q))
        q++;
    size_t wl = strlen(word);
    if ((size_t)(lx->end - q) < wl || memcmp(q, word, wl) != 0)
        return NULL;
    q += wl;
    while (q < lx->end && is_ws(*q))
        q++;
    *strip_after = false;
    if (q < lx->end && (*q == '-' || *q == '+'))
        *strip_after = *q == '-', q++;
    if (lx->end - q >= 2 && q[0] == '%' && q[1] == '}')
        return q + 2;
    return NULL;
}

static const char *skip_ws(lexer *lx, const char *p)
{
    while (p < lx->end && is_ws(*p))
        p++;
    return p;
}

static int lex_data(lexer *lx, token *t)
{
    for (;;) {
        const char *start = lx->p;
        if (lx->lstrip_next) {
            start = skip_ws(lx, start);
            lx->lstrip_next = false;
        }
        count_lines(lx, lx->p, start);
        const char *p = start;
        int kind = 0;
        while (p < lx->end && !(kind = tag_at(lx, p)))
            p++;
        const char *dend = p;
        bool strip = kind && p + 2 < lx->end && p[2] == '-';
        bool sb, sa;
        const char *rawend = kind == '%' ? match_word_tag(lx, p, "raw", &sb, &sa) : NULL;
        if (rawend)
            strip = sb;
        if (strip)
            while (dend > start && is_ws(dend[-1]))
                dend--;
        t->type = T_DATA;
        t->line = lx->line;
        t->s = start;
        t->n = (uint32_t)(dend - start);
        count_lines(lx, start, p);
        lx->p = p;
        if (!kind) {
            if (t->n)
                return 0;
            t->type = T_EOF;
            return 0;
        }
        if (rawend) {
            /* the raw text runs to the next {% endraw %} */
            int rline = lx->line;
            const char *q = rawend;
            if (sa)
                q = skip_ws(lx, q);
            const char *r = q, *tend = NULL;
            bool eb = false, ea = false;
            for (; r < lx->end; r++)
                if (r[0] == '{' && r + 1 < lx->end && r[1] == '%' &&
                    (tend = match_word_tag(lx, r, "endraw", &eb, &ea)))
                    break;
            if (!tend)
                return lerr(lx, rline, "Missing end of raw directive");
            const char *re = r;
            if (eb)
                while (re > q && is_ws(re[-1]))
                    re--;
            /* emit the text before the raw tag and the raw text as one or two
             * data tokens: concatenate them in the arena */
            size_t n1 = t->n, n2 = (size_t)(re - q);
            char *buf = vial_arena_alloc(lx->a, n1 + n2 + 1);
            if (!buf)
                return lerr(lx, rline, "out of memory");
            if (n1)
                memcpy(buf, t->s, n1);
            if (n2)
                memcpy(buf + n1, q, n2);
            t->s = buf;
            t->n = (uint32_t)(n1 + n2);
            count_lines(lx, p, tend);
            lx->p = tend;
            lx->lstrip_next = ea;
            if (t->n)
                return 0;
            continue;
        }
        if (kind == '#') {
            const char *q = p + 2;
            const char *e = NULL;
            for (; q + 1 < lx->end; q++)
                if (q[0] == '#' && q[1] == '}') {
                    e = q;
                    break;
                }
            if (!e)
                return lerr(lx, lx->line, "Missing end of comment tag");
            lx->lstrip_next = e > p + 2 && e[-1] == '-';
            count_lines(lx, p, e + 2);
            lx->p = e + 2;
            if (t->n)
                return 0;
            continue;
        }
        if (t->n)
            return 0;
        /* the tag itself */
        t->type = kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN;
        t->line = lx->line;
        lx->p = p + 2;
        if (lx->p < lx->end && (*lx->p == '-' || (kind == '%' && *lx->p == '+')))
            lx->p++;
        lx->in = t->type;
        lx->depth = 0;
        return 0;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static int lex_string(lexer *lx, token *t)
{
    char q = *lx->p;
    const char *s = lx->p + 1, *e = s;
    while (e < lx->end && *e != q) {
        if (*e == '\\' && e + 1 < lx->end)
            e++;
        e++;
    }
    if (e >= lx->end)
        return lerr(lx, lx->line, "unexpected char '\"' or \"'\": unterminated string");
    char *o = vial_arena_alloc(lx->a, (size_t)(e - s) + 1);
    if (!o)
        return lerr(lx, lx->line, "out of memory");
    size_t n = 0;
    for (const char *p = s; p < e; p++) {
        if (*p != '\\') {
            o[n++] = *p;
            continue;
        }
        char c = *++p;
        switch (c) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case 'a': o[n++] = '\a'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'v': o[n++] = '\v'; break;
        case '\\': case '\'': case '"': o[n++] = c; break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
            int want = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int i = 0; i < want; i++) {
                int h = p + 1 < e ? hexval(p[1]) : -1;
                if (h < 0)
                    return lerr(lx, lx->line, "truncated \\x/\\u escape in string");
                cp = cp * 16 + (uint32_t)h;
                p++;
            }
            if (cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
                return lerr(lx, lx->line, "invalid escape in string");
            n += put_utf8(o + n, cp); /* never longer than the escape */
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t cp = (uint32_t)(c - '0');
                for (int i = 0; i < 2 && p + 1 < e && p[1] >= '0' && p[1] <= '7'; i++)
                    cp = cp * 8 + (uint32_t)(*++p - '0');
                n += put_utf8(o + n, cp);
            } else {
                o[n++] = '\\';
                o[n++] = c;
            }
        }
    }
    o[n] = 0;
    count_lines(lx, lx->p, e);
    t->type = T_STRING;
    t->s = o;
    t->n = (uint32_t)n;
    lx->p = e + 1;
    return 0;
}

static bool isdig(char c) { return c >= '0' && c <= '9'; }

/* digits with single underscores between them: returns the end, or NULL */
static const char *scan_digits(const char *p, const char *end)
{
    if (p >= end || !isdig(*p))
        return NULL;
    while (p < end && isdig(*p)) {
        p++;
        if (p + 1 < end && *p == '_' && isdig(p[1]))
            p++;
    }
    return p;
}

static int lex_number(lexer *lx, token *t, bool after_dot)
{
    const char *s = lx->p, *p = scan_digits(s, lx->end);
    bool isfloat = false;
    if (!after_dot) {
        const char *q = p;
        if (q < lx->end && *q == '.' && scan_digits(q + 1, lx->end)) {
            q = scan_digits(q + 1, lx->end);
            isfloat = true;
        }
        if (q < lx->end && (*q == 'e' || *q == 'E')) {
            const char *r = q + 1;
            if (r < lx->end && (*r == '+' || *r == '-'))
                r++;
            if ((r = scan_digits(r, lx->end)))
                q = r, isfloat = true;
        }
        p = q;
    }
    char buf[400];
    size_t n = 0;
    for (const char *c = s; c < p && n < sizeof buf - 1; c++)
        if (*c != '_')
            buf[n++] = *c;
    buf[n] = 0;
    t->s = vial_arena_strndup(lx->a, buf, n);
    t->n = (uint32_t)n;
    if (isfloat) {
        t->type = T_FLOAT;
        t->d = strtod(buf, NULL);
    } else {
        t->type = T_INT;
        t->big = false;
        int64_t v = 0;
        const char *c = t->s;
        while (*c == '0' && c[1])
            c++;
        t->s = c;
        t->n = (uint32_t)strlen(c);
        for (; *c; c++) {
            if (v > (INT64_MAX - (*c - '0')) / 10) {
                t->big = true;
                break;
            }
            v = v * 10 + (*c - '0');
        }
        t->i = v;
    }
    lx->p = p;
    return 0;
}

int lex_next(lexer *lx, token *t)
{
    if (!lx->in)
        return lex_data(lx, t);
    bool after_dot = t->type == T_OP && t->n == 1 && t->s[0] == '.';
    for (;;) {
        while (lx->p < lx->end && is_ws(*lx->p)) {
            if (*lx->p == '\n')
                lx->line++;
            lx->p++;
        }
        t->line = lx->line;
        if (lx->p >= lx->end)
            return lerr(lx, lx->line, "unexpected end of template");
        const char *p = lx->p;
        size_t left = (size_t)(lx->end - p);
        /* the end of the tag (only when brackets balance) */
        if (lx->depth == 0) {
            char close = lx->in == T_VAR_BEGIN ? '}' : '%';
            int off = p[0] == '-' ? 1 : (p[0] == '+' && close == '%') ? 1 : 0;
            if (left >= (size_t)off + 2 && p[off] == close && p[off + 1] == '}') {
                t->type = lx->in == T_VAR_BEGIN ? T_VAR_END : T_BLOCK_END;
                lx->lstrip_next = p[0] == '-';
                lx->p = p + off + 2;
                lx->in = 0;
                return 0;
            }
        }
        char c = *p;
        if (c == '\'' || c == '"')
            return lex_string(lx, t);
        if (isdig(c))
            return lex_number(lx, t, after_dot);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            const char *e = p;
            while (e < lx->end && ((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') || *e == '_' || isdig(*e)))
                e++;
            t->type = T_NAME;
            t->s = p;
            t->n = (uint32_t)(e - p);
            lx->p = e;
            return 0;
        }
        static const char *two[] = {"//", "**", "==", "!=", "<=", ">="};
        for (size_t i = 0; i < sizeof two / sizeof two[0]; i++)
            if (left >= 2 && p[0] == two[i][0] && p[1] == two[i][1]) {
                t->type = T_OP;
                t->s = p;
                t->n = 2;
                lx->p = p + 2;
                return 0;
            }
        if (strchr("+-*/%~<>=()[]{},.:|;", c) && c) {
            if (c == '(' || c == '[' || c == '{')
                lx->depth++;
            else if ((c == ')' || c == ']' || c == '}') && lx->depth > 0)
                lx->depth--;
            t->type = T_OP;
            t->s = p;
            t->n = 1;
            lx->p = p + 1;
            return 0;
        }
        char msg[64];
        snprintf(msg, sizeof msg, "unexpected char '%c'", c);
        return lerr(lx, lx->line, msg);
    }
}
