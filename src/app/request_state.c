#include "app/request_state.h"

vial_req_state *vial_req_state_attach(vial_req *rq, struct vial_app *app)
{
    vial_req_state *st = vial_arena_alloc(&rq->arena, sizeof *st);
    if (st)
        vial_req_state_init(rq, st, app);
    return st;
}
