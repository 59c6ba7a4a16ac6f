/* The upstream context of one worker thread: both transports an upstream call can go out on,
 * made and closed together — libcurl's multi (upstream/multi.h: https, names, proxies) and the
 * built-in HTTP/1.1 client's connection pool (upstream/h1.h: plain http:// to a numeric host).
 * The transports never know each other; xfer.c picks one per call (xfer_transport.h). */
#ifndef SL_UPSTREAM_UPSTREAM_H
#define SL_UPSTREAM_UPSTREAM_H
#include <uv.h>

/* Declared, not included: their headers (curl's among them) stay with the files that use them. */
typedef struct sl_multi sl_multi_t;
typedef struct sl_h1_pool sl_h1_pool_t;

typedef struct sl_upstream {
    sl_multi_t *multi; /* owned */
    sl_h1_pool_t *h1;  /* owned */
} sl_upstream_t;

sl_upstream_t *sl_upstream_new(uv_loop_t *loop);
/* Ends every transfer still running on either transport (each hears its done), then closes
 * their handles; memory goes once the loop has run the close callbacks. NULL is a no-op. */
void sl_upstream_close(sl_upstream_t *u);

#endif
