#include "app/request_state.h"

#include <stddef.h>
#include <string.h>

/* The exchange's inline arena is sized so the handler keeps 4 KiB after this. */
_Static_assert(sizeof(vial_req_state) <= 768, "grow VIAL_ARENA_INLINE with vial_req_state");

vial_req_state *vial_req_state_attach(vial_req *rq, struct vial_app *app)
{
    vial_req_state *st = vial_arena_alloc(&rq->arena, sizeof *st);
    if (!st)
        return NULL;
    /* params and the JSON writer are written before they are read */
    memset(st, 0, offsetof(vial_req_state, params));
    st->app = app;
    rq->app_data = st;
    return st;
}
