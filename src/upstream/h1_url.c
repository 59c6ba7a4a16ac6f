/* Which upstream URLs the built-in HTTP/1.1 client takes (h1.h): pure functions of the URL and
 * the proxy environment, so that everything curl would treat specially stays on curl. */
#include <arpa/inet.h>
#include <ctype.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/h1.h"

static const char *env2(const char *lower, const char *upper)
{
    const char *v = getenv(lower);
    return v && *v ? v : getenv(upper);
}

void sl_h1_env_load(sl_h1_env_t *env)
{
    env->client = getenv("SLUICE_UPSTREAM_CLIENT");
    env->http_proxy = env2("http_proxy", "HTTP_PROXY");
    env->all_proxy = env2("all_proxy", "ALL_PROXY");
    env->no_proxy = env2("no_proxy", "NO_PROXY");
}

/* An address/prefix entry ("10.0.0.0/8", "::1/128") against an address literal. */
static bool cidr_match(const char *entry, size_t len, const char *host)
{
    char net[64];
    const char *slash = memchr(entry, '/', len);
    if (!slash || (size_t)(slash - entry) >= sizeof net)
        return false;
    memcpy(net, entry, (size_t)(slash - entry));
    net[slash - entry] = '\0';
    long bits = strtol(slash + 1, NULL, 10);
    unsigned char a[16], b[16];
    size_t n = 4;
    if (inet_pton(AF_INET, net, a) == 1 && inet_pton(AF_INET, host, b) == 1)
        n = 4;
    else if (inet_pton(AF_INET6, net, a) == 1 && inet_pton(AF_INET6, host, b) == 1)
        n = 16;
    else
        return false;
    if (bits < 0 || bits > (long)n * 8)
        return false;
    size_t whole = (size_t)bits / 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    unsigned rest = (unsigned)bits % 8;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

static bool entry_match(const char *e, size_t len, const char *host)
{
    if (len == 1 && *e == '*')
        return true;
    if (memchr(e, '/', len))
        return cidr_match(e, len, host);
    if (len >= 2 && e[0] == '[' && e[len - 1] == ']') { /* [::1] */
        e++;
        len -= 2;
    }
    if (len && *e == '.') { /* ".example.com" = example.com and below */
        e++;
        len--;
    }
    size_t hl = strlen(host);
    if (hl == len)
        return strncasecmp(host, e, len) == 0;
    /* a domain suffix: host ends with "." + entry */
    return hl > len && host[hl - len - 1] == '.' && strncasecmp(host + hl - len, e, len) == 0;
}

bool sl_h1_no_proxy_match(const char *no_proxy, const char *host)
{
    if (!no_proxy)
        return false;
    const char *p = no_proxy;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p > s && entry_match(s, (size_t)(p - s), host))
            return true;
    }
    return false;
}

static bool set(const char *v)
{
    return v && *v;
}

/* host (NUL-terminated, no brackets) → a numeric address, or localhost → 127.0.0.1. */
static bool numeric(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (strcasecmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return true;
    }
    return false;
}

bool sl_h1_eligible(const char *url, const sl_h1_env_t *env, sl_h1_target_t *out)
{
    if (!url || (env->client && strcmp(env->client, "curl") == 0))
        return false;
    size_t len = strlen(url);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) != 0)
        return false;
    if (!(u.field_set & (1 << UF_SCHEMA)) || !(u.field_set & (1 << UF_HOST)) ||
        (u.field_set & (1 << UF_USERINFO)))
        return false;
    if (u.field_data[UF_SCHEMA].len != 4 ||
        strncasecmp(url + u.field_data[UF_SCHEMA].off, "http", 4) != 0)
        return false;
    char host[64];
    size_t hl = u.field_data[UF_HOST].len;
    if (hl == 0 || hl >= sizeof host)
        return false;
    memcpy(host, url + u.field_data[UF_HOST].off, hl);
    host[hl] = '\0';
    uint16_t port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
    if (!numeric(host, port, &out->addr))
        return false;
    /* A proxy curl would use for this URL keeps it on curl. */
    if ((set(env->http_proxy) || set(env->all_proxy)) && !sl_h1_no_proxy_match(env->no_proxy, host))
        return false;
    /* The Host header: the authority as written (brackets and port included). */
    size_t a0 = u.field_data[UF_HOST].off, a1 = a0 + hl;
    if (a0 > 0 && url[a0 - 1] == '[')
        a0--, a1++;
    if (u.field_set & (1 << UF_PORT))
        a1 = u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
    if (a1 - a0 >= sizeof out->host)
        return false;
    memcpy(out->host, url + a0, a1 - a0);
    out->host[a1 - a0] = '\0';
    if (u.field_set & (1 << UF_PATH)) {
        out->path = url + u.field_data[UF_PATH].off;
        out->path_len = u.field_data[UF_PATH].len;
        if (u.field_set & (1 << UF_QUERY))
            out->path_len =
                u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len - u.field_data[UF_PATH].off;
    } else {
        out->path = "/";
        out->path_len = 1;
    }
    return true;
}
