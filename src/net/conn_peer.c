/* Who the client of a connection is: the TCP peer, read once per connection, or, behind a
 * trusted proxy, the address http/client_ip reads from the forwarding headers, once per
 * request. */
#include "net/conn.h"

#include "core/ctx.h"
#include "net/conn_int.h"

#include <stdio.h>

#include "config/config.h"

const char *sl_conn_tcp_peer(sl_conn_t *c)
{
    if (c->tcp_peer_read)
        return c->tcp_peer;
    c->tcp_peer_read = true; /* a syscall: at most once per connection */
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char *out = c->tcp_peer;
    out[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return out;
    if (ss.ss_family == AF_INET)
        (void)uv_ip4_name((const struct sockaddr_in *)&ss, out, SL_IP_TEXT); /* "" on failure */
    else if (ss.ss_family == AF_INET6)
        (void)uv_ip6_name((const struct sockaddr_in6 *)&ss, out, SL_IP_TEXT);
    return out;
}

/* Every line of a list header, comma-joined (RFC 9110 §5.3), or NULL when absent. One line is
 * returned as is; tmp holds a join. */
static const char *header_list(const sl_http_req_t *r, const char *lname, sl_buf_t *tmp)
{
    const char *first = sl_http_req_header(r, lname);
    const char *next = first ? sl_http_req_header_next(r, lname, first) : NULL;
    if (!next)
        return first;
    sl_buf_puts(tmp, first);
    for (; next; next = sl_http_req_header_next(r, lname, next)) {
        sl_buf_puts(tmp, ", ");
        sl_buf_puts(tmp, next);
    }
    return tmp->data;
}

const char *sl_conn_client_ip(sl_conn_t *c)
{
    if (c->client_known)
        return c->client_ip;
    c->client_known = true;
    const sl_config_t *cfg = c->x->cfg;
    const char *peer = sl_conn_tcp_peer(c);
    if (!cfg->ntrusted_proxies) {
        snprintf(c->client_ip, sizeof c->client_ip, "%s", peer);
        return c->client_ip;
    }
    sl_buf_t xff, fwd;
    sl_buf_init(&xff);
    sl_buf_init(&fwd);
    (void)sl_client_ip(cfg->trusted_proxies, cfg->ntrusted_proxies, peer,
                       header_list(&c->req, "x-forwarded-for", &xff),
                       header_list(&c->req, "forwarded", &fwd), c->client_ip); /* peer or not */
    sl_buf_dispose(&xff);
    sl_buf_dispose(&fwd);
    return c->client_ip;
}

void sl_conn_peer(sl_conn_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s", sl_conn_client_ip(c));
}
