/* The request headers a provider sends upstream, in sluice's own form (no transport's): the
 * providers and xfer.c add them, a transport takes them with the rest of the wire
 * (xfer_transport.h). Two blocks of lines, ready for an HTTP/1.1 request head:
 * - send: "Name: value\r\n" for each header to send, in order; h1.c appends it to its head as
 *   it is, xfer_curl.c turns each line into a curl_slist entry;
 * - omit: "Name:\r\n" for each header the transport must not add of its own accord (curl's
 *   "Expect: 100-continue"). Only curl adds optional headers; the built-in client adds Host and
 *   Content-Length, which every request needs, so it has nothing to omit.
 * Invariant: a name is an HTTP token and a value holds no CR, LF or other control byte (tab
 * aside), so no text from config or a client can end a line early and add a header of its own.
 * Embedded by its owner (init/dispose); moved by struct copy plus init of the source. */
#ifndef SL_UPSTREAM_HEADERS_H
#define SL_UPSTREAM_HEADERS_H
#include "core/buf.h"
#include "core/err.h"

typedef struct sl_headers {
    sl_buf_t send; /* owned: "Name: value\r\n" lines */
    sl_buf_t omit; /* owned: "Name:\r\n" lines */
} sl_headers_t;

void sl_headers_init(sl_headers_t *h);
void sl_headers_dispose(sl_headers_t *h);
/* Adds "name: value" (both copied; name is a token written in the code). A value with CR, LF
 * or another control byte but tab is refused: SL_EINVAL, logged with the name (never the
 * value: it may be a key), nothing added. An empty or blank value omits the header instead,
 * as curl reads "Name:", so both transports send the same. */
SL_MUST_CHECK int sl_headers_add(sl_headers_t *h, const char *name, const char *value);
/* Asks the transport not to add a header of its own (name is a token written in the code). */
void sl_headers_omit(sl_headers_t *h, const char *name);

#endif
