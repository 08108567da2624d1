/* Internal interfaces of the response-side helpers: signed cookie sessions
 * (session.c), static files (static.c) and the HTTP-date helpers they share
 * with Set-Cookie (cookie_out.c). */
#ifndef VIAL_APP_SESSION_H
#define VIAL_APP_SESSION_H

#include "vial.h"
#include "runtime/numfmt.h"

#include <stddef.h>
#include <stdint.h>

/* --- sessions ----------------------------------------------------------------- */

/* The session cookie's name and limits. */
#define VIAL_SESSION_COOKIE "session"
/* Cookies older than this are ignored (Flask's permanent_session_lifetime,
 * which Flask applies to every session cookie). */
#define VIAL_SESSION_MAX_AGE (31LL * 24 * 3600)
/* An incoming cookie longer than this is not even verified. Browsers keep
 * about 4 KiB per cookie; twice that leaves room for proxies that allow more. */
#define VIAL_SESSION_MAX_COOKIE 8192

/* The app's session state (struct vial_app's session_cfg). One allocation
 * with no pointers inside, so vial_app_free releases it with free(). */
struct vial_session_config {
    /* HMAC-SHA256(secret, "vial.session.v1"): the secret itself never keys
     * the MAC, so other features may derive their own keys from it. */
    unsigned char key[32];
};

/* Writes the Set-Cookie when the session changed (deletes the cookie when
 * the session became empty) and adds "Vary: Cookie" when it was read.
 * Called by dispatch after the after_request hooks (Flask's save_session);
 * a no-op when the request never touched the session. Returns 0 or -errno. */
int vial_session_save(vial_req *rq);

/* --- static files ------------------------------------------------------------------ */

/* Frees what vial_static registered for app (its directories). Call from
 * vial_app_free. */
void vial_static_release(vial_app *app);
/* The Content-Type for a file name, by its last extension
 * ("application/octet-stream" when unknown); rendered templates use it too. */
const char *vial_static_type_for(const char *path);

/* --- HTTP dates (cookie_out.c) ----------------------------------------------------- */

/* Formatting (vial_http_date, VIAL_HTTP_DATE_SIZE) is in runtime/numfmt.h. */
/* Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime form) into Unix
 * time. Returns 0, or -1 when s is not one. */
int vial_http_date_parse(const char *s, int64_t *out);

#endif
