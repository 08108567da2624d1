/* Internal interfaces of the app's security middleware: CSRF protection
 * (csrf.c) and CORS (cors.c). Their state hangs off the app (struct
 * vial_app's csrf and cors); each registers its own before/after hooks. */
#ifndef VIAL_APP_SECURITY_H
#define VIAL_APP_SECURITY_H

#include "vial.h"

/* Frees what vial_csrf_protect / vial_csrf_exempt registered. From vial_app_free. */
void vial_csrf_release(vial_app *app);
/* Checked by vial_run before it listens: 0, or -ENOKEY (logged) when CSRF
 * protection is on without a secret key, so the mistake stops the start
 * instead of failing every form post. */
int vial_csrf_check_setup(const vial_app *app);

/* Adds the CORS headers (the after_request hook's) to rq's response: for
 * the errors the HTTP layer raised (413), which run no hook. */
void vial_cors_headers(vial_req *rq);

/* Frees what vial_cors / vial_bp_cors registered. From vial_app_free. */
void vial_cors_release(vial_app *app);

#endif
