/* The app's per-request state: everything the Flask model keeps about one
 * request (the app, the matched rule and its parameters, the lazily parsed
 * views of the request, g, the error being handled, the response's abort
 * state and its JSON writer). The http exchange carries it as an opaque
 * pointer (rq->app_data), so the protocol layer knows none of these.
 * vial_app_serve keeps it in its own frame, where the exchange used to keep
 * these fields: serving a request costs no more than it did. */
#ifndef VIAL_APP_REQUEST_STATE_H
#define VIAL_APP_REQUEST_STATE_H

#include "vial.h"
#include "app/kvindex.h"
#include "app/router.h"
#include "http/exchange.h"
#include "http/server.h"

#include <stdint.h>

struct vial_rule;
struct vial_cookies;  /* app/cookies.c: parsed Cookie header */
struct vial_form;     /* app/form.c: parsed form fields and files */
struct vial_json_doc; /* app/json_parse.c: parsed JSON body */
struct vial_session;  /* app/session.c: decoded session cookie */
struct vial_g;        /* app/context.c: Flask's g */
struct vial_zstream;  /* app/compress.c: a compressed stream's encoder */

/* The streaming JSON writer (json_writer.c), one per response. */
struct vial_json {
    vial_res *rs;
    uint32_t depth;
    int err;
    /* per depth, as bitsets: a value was written at this level / it is an
     * object. 520 levels: parsed JSON may nest 512 deep and be echoed. */
    uint8_t need_comma[520 / 8];
    uint8_t after_key;
    uint8_t is_obj[520 / 8];
};

typedef struct vial_req_state {
    /* Pointers, then ints: no padding between the fields init clears, so
     * the compiler clears them with a few wide stores. */
    struct vial_app *app;
    /* The app's response finalisation (after_request hooks, session save),
     * run before a streamed head is sent; idempotent. */
    void (*finalize)(vial_req *rq);
    void *lifecycle; /* dispatch's state for finalize */
    const struct vial_rule *route; /* set by the router */

    /* lazily built views of the request, owned by their modules */
    struct vial_cookies *cookies;
    struct vial_form *form;
    struct vial_json_doc *json;
    struct vial_session *session;
    struct vial_g *g;
    struct vial_zstream *zstream;

    const char *error_msg;     /* error being handled (vial_error_message) */
    const char *error_message; /* the response's: vial_fail / vial_abort_msg */
    /* The last helper that returned VIAL_EHTTP (vial_req_json...): its
     * message, used if that code comes back out of the view. */
    const char *helper_msg;
    const char *req_id;        /* vial_req_id's answer, once asked */
    uint64_t streamed;         /* body bytes sent by vial_stream_write (access log) */
    int error_code;            /* error being handled (vial_error_code) */
    int aborted;               /* vial_abort's status, or 0 */
    int failed;                /* vial_fail was called */
    int helper_code;
    int built;                 /* a response-building call ran (status, body, json...) */
    int shed;                  /* shutting down: the pool refused its sync work; the
                                * rest of its sync functions are skipped */
    int finalized;
    unsigned nparams;

    /* not cleared by init: filled before they are read */
    vial_kv params[VIAL_MAX_PARAMS];
    int64_t param_ints[VIAL_MAX_PARAMS];
    double param_doubles[VIAL_MAX_PARAMS];
    vial_json json_out;
    vial_kv_index args_ix; /* over rq->args, built at the first lookup by name */
} vial_req_state;

/* The request's limit on query arguments, form fields and multipart parts
 * (vial_config.max_fields; the default under the test client). */
static inline unsigned vial_req_max_fields(const vial_req *rq)
{
    return rq->server && rq->server->cfg.max_fields > 0 ? (unsigned)rq->server->cfg.max_fields : 1000u;
}

/* Clears st for app and hangs it on rq. vial_app_serve keeps it in its own
 * frame, which outlives everything that reads it. */
static inline void vial_req_state_init(vial_req *rq, vial_req_state *st, struct vial_app *app)
{
    /* Field by field, which compiles to a few wide stores (a memset of the
     * same bytes becomes a rep stos). */
    st->app = app;
    st->finalize = NULL;
    st->lifecycle = NULL;
    st->route = NULL;
    st->cookies = NULL;
    st->form = NULL;
    st->json = NULL;
    st->session = NULL;
    st->g = NULL;
    st->zstream = NULL;
    st->error_msg = NULL;
    st->error_message = NULL;
    st->helper_msg = NULL;
    st->req_id = NULL;
    st->streamed = 0;
    st->error_code = 0;
    st->aborted = 0;
    st->failed = 0;
    st->helper_code = 0;
    st->built = 0;
    st->shed = 0;
    st->finalized = 0;
    st->nparams = 0;
    st->args_ix.built = 0;
    st->args_ix.failed = 0;
    rq->app_data = st;
}

/* The same for a request built by hand (tests, fuzzers), in rq's arena.
 * Returns it, or NULL when out of memory. */
vial_req_state *vial_req_state_attach(vial_req *rq, struct vial_app *app);

static inline vial_req_state *vial_rqs(const vial_req *rq)
{
    return (vial_req_state *)rq->app_data;
}

#endif
