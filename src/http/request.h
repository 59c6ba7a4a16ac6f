/* One HTTP/1.x request read off a connection: http-parser glue with our limits (DESIGN §6:
 * header bytes, body bytes enforced while reading). The rest of sluice sees only this struct,
 * so the parser underneath can be swapped for llhttp. */
#ifndef SL_HTTP_REQUEST_H
#define SL_HTTP_REQUEST_H
#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

typedef struct sl_http_req {
    http_parser parser;
    sl_buf_t url;  /* owned; target as sent, NUL-terminated */
    sl_buf_t hdrs; /* owned; "name\0value\0" pairs, names lowercased */
    sl_buf_t body; /* owned; de-chunked */
    size_t head_bytes;
    size_t max_header, max_body;
    bool started;     /* at least one byte of this request arrived */
    bool method_read; /* the request line got as far as the target: method is known */
    bool headers_done;
    bool complete; /* whole message read; the parser is paused until reset */
    enum { SL_HDR_NONE, SL_HDR_NAME, SL_HDR_VALUE } hstate; /* what the last header piece was */
    unsigned nfields;                                       /* header lines so far */
    bool line_ended; /* the head's last byte so far ended a line (request.c feed_head) */
    bool keep_alive;
    bool expect_continue;
    int error; /* SL_EINVAL, SL_ETOOBIG, SL_EHEADERS, SL_EURI once the input is unusable */
    const char *error_msg;
} sl_http_req_t;

void sl_http_req_init(sl_http_req_t *r, size_t max_header, size_t max_body);
void sl_http_req_dispose(sl_http_req_t *r);
/* Forgets the current request (after its response) and gets ready for the next one. */
void sl_http_req_reset(sl_http_req_t *r);
/* Parses bytes; returns how many were consumed. Stops early once a message is complete
 * (r->complete) or the input is unusable (r->error): malformed framing, a control byte in a
 * header value, obs-fold (a line folded onto the previous one, RFC 9112 §5.2), an HTTP/1.1
 * request without exactly one Host, a head over max_header (a target alone over it: SL_EURI),
 * a body over max_body. Trailer fields of a chunked body count against max_header and are
 * dropped: they never become request headers. */
size_t sl_http_req_feed(sl_http_req_t *r, const char *p, size_t n);
/* Value of a header by lowercase name, or NULL. */
const char *sl_http_req_header(const sl_http_req_t *r, const char *lname);
/* The value of the next line of that header after prev (a value this request returned), or
 * NULL: for headers sent on several lines (X-Forwarded-For, Forwarded). */
const char *sl_http_req_header_next(const sl_http_req_t *r, const char *lname, const char *prev);
/* The path part of the target (without ?query), and its length. */
const char *sl_http_req_path(const sl_http_req_t *r, size_t *len);
const char *sl_http_req_method(const sl_http_req_t *r);
/* The query parameter name, percent-decoded ('+' is a space) into out (reset first; always
 * NUL-terminated, also when empty). False when absent or malformed; a value that decodes to a
 * NUL byte is malformed, since every caller hands it on as a C string. */
bool sl_http_req_query(const sl_http_req_t *r, const char *name, sl_buf_t *out);

#endif
