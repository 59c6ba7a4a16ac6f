/* One JSON POST on the worker's curl multi, its answer body handed to a callback: for small
 * side calls (monoai's user validator) that must never block the loop. Bounded in time (connect
 * and total deadline) and in size (the answer body), and cancellable until it answers. */
#ifndef SL_UPSTREAM_HTTP_JSON_H
#define SL_UPSTREAM_HTTP_JSON_H
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct sl_multi sl_multi_t;
typedef struct sl_http_json sl_http_json_t;

/* The answer, once. err is 0 for a 2xx answer, else SL_ETIMEOUT (deadline passed),
 * SL_EUNAVAIL (could not connect), SL_ETOOBIG (body over the cap) or SL_EUPSTREAM (any other
 * failure, including a non-2xx status). status is the HTTP status (0 when none came); body is
 * NUL-terminated and borrowed for the call. The call is already gone when this runs. */
typedef void (*sl_http_json_done_cb)(void *ud, int err, long status, const char *body, size_t len);

typedef struct sl_http_json_opts {
    uint64_t timeout_ms; /* connect and total deadline; 0 = 2 s */
    size_t max_body;     /* answer bytes accepted; 0 = 64 KiB */
} sl_http_json_opts_t;

/* POSTs body (Content-Type: application/json, copied) to an http:// or https:// url; done runs
 * later, on the multi's loop, never from inside this call. Redirects are not followed. On
 * failure nothing was started and done is never called. */
SL_MUST_CHECK int sl_http_json_post(sl_multi_t *m, const char *url, const char *body,
                                    const sl_http_json_opts_t *opts, sl_http_json_done_cb done,
                                    void *ud, sl_http_json_t **out);
/* Stops a call that has not answered yet (its connection is closed); done is never called.
 * Not valid once done ran. */
void sl_http_json_cancel(sl_http_json_t *h);

#endif
