/* Templates in the app (render.c): the environment behind vial_render, set
 * up by vial_run and freed with the app. */
#ifndef VIAL_APP_RENDER_H
#define VIAL_APP_RENDER_H

#include "vial.h"

/* Called by vial_run before it listens: fixes the search path (the app's
 * folder, then the blueprints'), turns auto reload on when debug, and
 * compiles every template, so a syntax error stops the start (logged as
 * NAME:LINE: message). 0, or the error's code. An app that never mentioned
 * templates and has no ./templates costs nothing. */
int vial_render_start(vial_app *app, int debug);

/* Frees the app's template state (vial_app_free). */
void vial_render_free(vial_app *app);

/* template_glue.c: registers Flask's globals (request, session, g, url_for,
 * get_flashed_messages, csrf_token) in a new environment. 0 or -ENOMEM. */
int vial_render_globals(vial_tmpl_env *env);
/* The request vial_render is rendering on this thread, NULL outside one. */
extern __thread vial_req *vial_render_current;

#endif
