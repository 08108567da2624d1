/* Internal hooks of the task layer used by dispatch. */
#ifndef VIAL_APP_TASKS_H
#define VIAL_APP_TASKS_H

#include "vial.h"

/* Cancels and awaits every task the running coroutine still owns (a view
 * returned while its tasks run: none may outlive it). */
void vial_tasks_reap(vial_req *rq);

#endif
