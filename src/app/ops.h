/* Operations: the access log (accesslog.c), the metrics and the health
 * check (metrics.c), and request ids (request_id.c). vial_run sets them up
 * from the config; dispatch feeds them once per request. */
#ifndef VIAL_APP_OPS_H
#define VIAL_APP_OPS_H

#include "vial.h"

#include <stdint.h>

/* What vial_run turned on, kept in the app (all off under the test client). */
typedef struct vial_ops {
    int access_log;  /* lines are written */
    int metrics;     /* counters are kept */
    int request_id;  /* X-Request-ID is echoed */
    const char *metrics_path, *health_path;
    size_t metrics_len, health_len; /* 0: not served */
    uint64_t shed_target_ns;        /* load shedding (shed.c); 0: off */
    const struct vial_proxies *proxies; /* --trusted-proxy (proxy.h), or NULL */
} vial_ops;

/* --- access log ---------------------------------------------------------- */

/* Opens cfg->access_log (appending; "-": stderr) and starts its writer
 * thread. 0, or a negative errno (logged). */
int vial_accesslog_open(const vial_config *cfg);
/* Writes what is buffered, stops the writer, closes the file. */
void vial_accesslog_close(void);
/* One line for the finished request: formatted here, on the loop thread,
 * into this thread's buffer; the writer thread writes it out. */
void vial_accesslog_request(vial_req *rq, uint64_t body_bytes, uint64_t duration_ns);
/* The server refused a request itself (vial_reject_fn, server.h): its line,
 * with "-" for what was not parsed. data is the app. */
void vial_accesslog_reject(void *data, vial_req *rq, int status);

/* --- metrics and health -------------------------------------------------- */

/* Stats ids: 0 for requests no rule matched, 1 and 2 for the health and
 * metrics probes, then each rule's (vial_rule.stats_id). */
enum { VIAL_STATS_NONE, VIAL_STATS_HEALTH, VIAL_STATS_METRICS, VIAL_STATS_RULES };
/* How many ids there are; before the first request. */
void vial_metrics_init(unsigned nids);
/* The per-request record is inlined from metrics.h. A websocket session
 * opened (+1) / closed (-1). */
void vial_metrics_ws(int delta);
/* Fills rq->res with the Prometheus text of every thread's figures. */
void vial_metrics_render(vial_req *rq);
/* 200 "ok" while serving, 503 "draining" once shutdown began. */
void vial_health_render(vial_req *rq);

/* --- load shedding (shed.c) ---------------------------------------------- */

/* Sets the target (ns; 0: off) and starts sampling the pool's waits. */
void vial_shed_init(uint64_t target_ns);
/* Whether rq is to be shed: the waits to start (in the pool's queue, for
 * its loop) have stayed above the target. Counts the shed ones. */
int vial_shed_check(vial_req *rq);
/* The answer to a shed request: 503, Retry-After: 1, a short body. */
void vial_shed_render(vial_req *rq);
/* Requests shed so far (vial_requests_shed_total). */
uint64_t vial_shed_total(void);

/* --- request id ---------------------------------------------------------- */

/* Adds X-Request-ID to rq's response (once). */
void vial_request_id_echo(vial_req *rq);

#endif
