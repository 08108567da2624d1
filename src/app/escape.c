/* The public HTML-escape helpers, over the one escaper in runtime/codec.c
 * (which the template engine uses too). */
#include "vial.h"
#include "app/request_state.h"
#include "runtime/codec.h"

#include <errno.h>
#include <string.h>

size_t vial_html_escape_len(const char *s, size_t n)
{
    return s ? vial_html_escaped_len(s, n) : 0;
}

int vial_html_escape(char *out, size_t cap, const char *s, size_t n)
{
    if (!s && n)
        return -EINVAL;
    size_t len = s ? vial_html_escaped_len(s, n) : 0;
    if (len >= cap) {
        /* Never a cut-off prefix: half an entity ("&am") is broken HTML. */
        if (cap)
            out[0] = 0;
        return -ENOSPC;
    }
    if (len)
        vial_html_escape_to(out, s, n);
    out[len] = 0;
    return 0;
}

const char *vial_escape(vial_req *rq, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    size_t len = vial_html_escaped_len(s, n);
    char *out = vial_alloc(rq, len + 1);
    if (!out)
        return NULL;
    vial_html_escape_to(out, s, n);
    out[len] = 0;
    return out;
}
