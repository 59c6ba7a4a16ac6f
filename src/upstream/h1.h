/* The built-in HTTP/1.1 client for plain http:// upstreams on a numeric address or localhost
 * (vLLM, llama.cpp, Ollama, local OpenAI-compatible servers): one request at a time per
 * connection, on the worker's libuv loop, with a per-worker keep-alive pool. It is a transport
 * of sl_xfer (xfer_transport.h: sl_xfer_h1); everything else goes through libcurl.
 *
 * Which URLs it takes (sl_h1_eligible): scheme http, no user:password@, host an IPv4/IPv6
 * literal or "localhost" (→ 127.0.0.1), and no proxy that curl would use for it: http_proxy /
 * HTTP_PROXY / all_proxy / ALL_PROXY set (non-empty) and the host not matched by no_proxy /
 * NO_PROXY. SLUICE_UPSTREAM_CLIENT=curl sends every URL to curl. */
#ifndef SL_UPSTREAM_H1_H
#define SL_UPSTREAM_H1_H
#include <stdbool.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct sl_h1_pool sl_h1_pool_t;

/* The environment the choice depends on (strings borrowed; NULL or "" = unset). */
typedef struct sl_h1_env {
    const char *client;     /* SLUICE_UPSTREAM_CLIENT: "curl" = never the built-in client */
    const char *http_proxy; /* http_proxy, else HTTP_PROXY */
    const char *all_proxy;  /* all_proxy, else ALL_PROXY */
    const char *no_proxy;   /* no_proxy, else NO_PROXY */
} sl_h1_env_t;

/* Where an eligible URL goes. */
typedef struct sl_h1_target {
    struct sockaddr_storage addr;
    char host[80];    /* the Host header: the URL's host[:port] as written */
    const char *path; /* borrowed from the URL: path and query ("/" when empty) */
    size_t path_len;
} sl_h1_target_t;

/* Reads the process environment into env (strings borrowed from it). */
void sl_h1_env_load(sl_h1_env_t *env);
/* Whether the built-in client takes url (pure: env decides, nothing else is read). */
bool sl_h1_eligible(const char *url, const sl_h1_env_t *env, sl_h1_target_t *out);
/* True when no_proxy (curl's syntax: "*", comma-separated names, domain suffixes, CIDR)
 * matches host (a name or an address literal, IPv6 without brackets). */
bool sl_h1_no_proxy_match(const char *no_proxy, const char *host);

/* The worker's pool of idle upstream connections (and its shared read buffer). */
sl_h1_pool_t *sl_h1_pool_new(uv_loop_t *loop);
/* Ends the transfers still running on it (each hears done: disconnected), closes every
 * connection; memory goes once the loop has run the close callbacks. NULL is a no-op. */
void sl_h1_pool_close(sl_h1_pool_t *p);

/* For tests: TCP connections opened and requests sent since the pool was made. */
typedef struct sl_h1_stats {
    unsigned long connects, requests, reused, retries, idle;
} sl_h1_stats_t;
void sl_h1_pool_stats(const sl_h1_pool_t *p, sl_h1_stats_t *out);

#endif
