/* One table of error codes: each has an HTTP status, an OpenAI error.type and a default
 * message. Fallible functions return 0 or a negative SL_E* code from this table. */
#ifndef SL_CORE_ERR_H
#define SL_CORE_ERR_H

#define SL_MUST_CHECK __attribute__((warn_unused_result))

/*  name         HTTP  OpenAI error.type         default message */
#define SL_ERR_MAP(X)                                                                              \
    X(EINVAL, 400, "invalid_request_error", "bad request")                                         \
    X(EAUTH, 401, "invalid_request_error", "invalid API key")                                      \
    X(EFORBIDDEN, 403, "invalid_request_error", "forbidden")                                       \
    X(ENOTFOUND, 404, "invalid_request_error", "not found")                                        \
    X(EMETHOD, 405, "invalid_request_error", "method not allowed")                                 \
    X(ETOOBIG, 413, "invalid_request_error", "request body too large")                             \
    X(EURI, 414, "invalid_request_error", "request target too long")                               \
    X(ERATE, 429, "rate_limit_error", "rate limit reached")                                        \
    X(EQUOTA, 429, "insufficient_quota", "quota exhausted")                                        \
    X(EHEADERS, 431, "invalid_request_error", "request header fields too large")                   \
    X(EINTERNAL, 500, "server_error", "internal error")                                            \
    X(EUPSTREAM, 502, "server_error", "the upstream provider failed")                              \
    X(EUNAVAIL, 503, "server_error", "service unavailable")                                        \
    X(ETIMEOUT, 504, "timeout_error", "the upstream provider timed out")                           \
    X(EAGAIN, 0, "", "try again")                                                                  \
    X(ECONFIG, 0, "", "invalid configuration")

enum {
    SL_OK = 0,
#define X(name, status, type, msg) SL_##name,
    SL_ERR_FIRST_ = -1000,
    SL_ERR_MAP(X)
#undef X
};

/* Invariants, always checked (never used for input). */
#define SL_ASSERT(c) ((c) ? (void)0 : sl_assert_fail(#c, __FILE__, __LINE__))
void sl_assert_fail(const char *what, const char *file, int line) __attribute__((noreturn));

const char *sl_strerror(int err);
int sl_err_status(int err);
const char *sl_err_type(int err);

#endif
