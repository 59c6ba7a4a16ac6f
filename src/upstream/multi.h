/* libcurl's multi interface driven by a libuv loop (DESIGN §2): curl tells us which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION → uv_poll) and when to time out (CURLMOPT_TIMERFUNCTION →
 * uv_timer); finished transfers are reported to their owner outside any curl callback, so the
 * owner may remove and clean up its easy handle there. */
#ifndef SL_UPSTREAM_MULTI_H
#define SL_UPSTREAM_MULTI_H
#include <curl/curl.h>
#include <uv.h>

#include "core/err.h"

typedef struct sl_multi sl_multi_t;

/* Called once per transfer when curl finished it (result is CURLE_OK or the failure). */
typedef void (*sl_multi_done_cb)(void *ud, CURLcode result);

sl_multi_t *sl_multi_new(uv_loop_t *loop);
/* Ends the transfers still running (each hears its done callback and must remove itself), then
 * closes the uv handles and the h1 pool. Memory is released once the loop has run the close
 * callbacks. */
void sl_multi_close(sl_multi_t *m);
/* An easy handle from the worker's pool (or a new one): setting up a handle costs more than a
 * small request itself, so finished handles are reset and reused. */
CURL *sl_multi_easy(sl_multi_t *m);
/* Gives a handle back (already removed from the multi); it is reset, or cleaned up when the
 * pool is full. */
void sl_multi_easy_done(sl_multi_t *m, CURL *easy);
/* Starts a transfer; ud is handed back to done. */
SL_MUST_CHECK int sl_multi_add(sl_multi_t *m, CURL *easy, sl_multi_done_cb done, void *ud);
/* Stops a transfer at once (closing its connection if it was mid-response). Never call it from
 * inside a curl callback. */
void sl_multi_remove(sl_multi_t *m, CURL *easy);

#endif
