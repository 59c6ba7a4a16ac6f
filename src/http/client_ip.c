/* The client address behind trusted proxies: CIDR matching and the X-Forwarded-For and
 * Forwarded (RFC 7239) parsers, walked right to left. */
#include "http/client_ip.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool sl_ip_parse(const char *s, size_t n, uint8_t out[16])
{
    char buf[SL_IP_TEXT];
    if (n == 0 || n >= sizeof buf || memchr(s, '\0', n))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, out + 12) == 1) {
        memcpy(out, v4_mapped, sizeof v4_mapped);
        return true;
    }
    return inet_pton(AF_INET6, buf, out) == 1;
}

static bool is_mapped(const uint8_t a[16])
{
    return memcmp(a, v4_mapped, sizeof v4_mapped) == 0;
}

void sl_ip_format(const uint8_t a[16], char out[SL_IP_TEXT])
{
    const char *ok = is_mapped(a) ? inet_ntop(AF_INET, a + 12, out, SL_IP_TEXT)
                                  : inet_ntop(AF_INET6, a, out, SL_IP_TEXT);
    if (!ok) /* cannot happen with a buffer this size; an empty address says "unknown" */
        out[0] = '\0';
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int sl_cidr_parse(const char *s, sl_cidr_t *out, const char **why)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    *why = "expected an address range like 10.0.0.0/8 or ::1/128";
    if (!sl_ip_parse(s, alen, out->net))
        return SL_EINVAL;
    bool v4 = !memchr(s, ':', alen);
    unsigned max = v4 ? 32 : 128, bits = max;
    if (slash) {
        const char *d = slash + 1;
        size_t nd = strlen(d);
        if (nd == 0 || nd > 3 || strspn(d, "0123456789") != nd)
            return SL_EINVAL;
        bits = 0;
        for (; *d; d++)
            bits = bits * 10 + (unsigned)(*d - '0');
        if (bits > max) {
            *why = v4 ? "an IPv4 prefix length is 0 to 32" : "an IPv6 prefix length is 0 to 128";
            return SL_EINVAL;
        }
    }
    out->bits = v4 ? 96 + bits : bits;
    for (unsigned i = out->bits; i < 128; i++)
        if (out->net[i / 8] & (0x80 >> (i % 8))) {
            *why = "bits are set below the prefix length (write the network address, e.g. "
                   "10.0.0.0/8)";
            return SL_EINVAL;
        }
    return 0;
}

bool sl_cidr_match(const sl_cidr_t *set, size_t n, const uint8_t a[16])
{
    for (size_t i = 0; i < n; i++)
        if (prefix_equal(a, set[i].net, set[i].bits))
            return true;
    return false;
}

bool sl_ip_is_loopback(const char *text)
{
    static const uint8_t one[16] = {[15] = 1};
    uint8_t a[16];
    if (!text || !sl_ip_parse(text, strlen(text), a))
        return false;
    return (is_mapped(a) && a[12] == 127) || memcmp(a, one, 16) == 0;
}

/* ---- hops: the rightmost SL_CLIENT_IP_MAX_HOPS of a header, oldest first ---- */

typedef struct hop {
    bool addr; /* false: unknown, obfuscated or malformed */
    uint8_t a[16];
} hop_t;

typedef struct hops {
    hop_t h[SL_CLIENT_IP_MAX_HOPS];
    size_t n; /* hops seen; only the last SL_CLIENT_IP_MAX_HOPS are kept */
} hops_t;

static void push(hops_t *hs, const hop_t *h)
{
    hs->h[hs->n % SL_CLIENT_IP_MAX_HOPS] = *h;
    hs->n++;
}

static bool is_port(const char *p, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n && n <= 5; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return n >= 1 && n <= 5 && v <= 65535;
}

/* A node as both headers write it: "1.2.3.4", "1.2.3.4:80", "[2001:db8::1]", "[::1]:80", or a
 * bare IPv6 literal (no port). Anything else is not an address. */
static bool parse_node(const char *p, size_t n, uint8_t a[16])
{
    if (n && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close)
            return false;
        size_t in = (size_t)(close - p - 1), after = n - in - 2;
        if (after && (close[1] != ':' || !is_port(close + 2, after - 1)))
            return false;
        return memchr(p + 1, ':', in) && sl_ip_parse(p + 1, in, a); /* brackets hold IPv6 */
    }
    const char *colon = memchr(p, ':', n);
    size_t alen = colon ? (size_t)(colon - p) : n;
    if (colon && memchr(p, '.', alen) && !memchr(colon + 1, ':', n - alen - 1)) /* IPv4:port */
        return is_port(colon + 1, n - alen - 1) && sl_ip_parse(p, alen, a) && is_mapped(a);
    return sl_ip_parse(p, n, a);
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* X-Forwarded-For: comma-separated nodes; empty list elements do not count (RFC 9110 §5.6.1). */
static void parse_xff(const char *p, hops_t *hs)
{
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && is_ows(*b))
            b++;
        while (e > b && is_ows(e[-1]))
            e--;
        if (e > b) {
            hop_t h = {0};
            h.addr = parse_node(b, (size_t)(e - b), h.a);
            push(hs, &h);
        }
        p = *end ? end + 1 : end;
    }
}

static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Past the next comma outside a quoted string (or to the end): where the next element is. */
static const char *resync(const char *p)
{
    bool quoted = false;
    for (; *p; p++) {
        if (quoted && *p == '\\' && p[1])
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (!quoted && *p == ',')
            return p + 1;
    }
    return p;
}

/* A forwarded-pair's value at *pp: a token, or a quoted-string unescaped into buf. Unquoted
 * values are read up to a delimiter, so the common for=192.0.2.1:80 (a port without the quotes
 * RFC 7239 asks for) still counts. False when malformed or longer than buf. */
static bool read_value(const char **pp, char *buf, size_t cap, size_t *len)
{
    const char *p = *pp;
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && p[1])
                p++;
            if (n + 1 >= cap)
                return false;
            buf[n++] = *p;
        }
        if (*p != '"')
            return false;
        p++;
    } else {
        for (; *p && !strchr(";, \t\"", *p); p++) {
            if (n + 1 >= cap)
                return false;
            buf[n++] = *p;
        }
    }
    buf[n] = '\0';
    *pp = p;
    *len = n;
    return n > 0;
}

/* One forwarded-element: pairs separated by ';'. Returns where the next element starts. An
 * element without for= (only proto=, by=, ...) adds no hop; a malformed one adds a stop. */
static const char *parse_element(const char *p, hops_t *hs)
{
    hop_t h = {0};
    bool have_for = false, bad = false;
    for (;;) {
        while (is_ows(*p))
            p++;
        const char *name = p;
        while (is_tchar(*p))
            p++;
        size_t nlen = (size_t)(p - name);
        char val[128];
        size_t vlen = 0;
        if (nlen && *p == '=') {
            p++;
            bad = !read_value(&p, val, sizeof val, &vlen);
        } else if (nlen) {
            bad = true; /* a name without a value */
        }
        if (bad)
            break;
        if (nlen == 3 && strncasecmp(name, "for", 3) == 0) {
            bad = have_for; /* a parameter occurs once per element (RFC 7239 §4) */
            have_for = true;
            /* "unknown" and obfuscated "_name" identifiers are not addresses (§6.2, §6.3) */
            h.addr = parse_node(val, vlen, h.a);
        }
        while (is_ows(*p))
            p++;
        if (bad || !*p || *p == ',')
            break;
        if (*p != ';') {
            bad = true;
            break;
        }
        p++;
    }
    if (bad) {
        h.addr = false;
        push(hs, &h);
        return resync(p);
    }
    if (have_for)
        push(hs, &h);
    return *p == ',' ? p + 1 : p;
}

static void parse_forwarded(const char *p, hops_t *hs)
{
    while (*p)
        p = parse_element(p, hs);
}

bool sl_client_ip(const sl_cidr_t *trusted, size_t ntrusted, const char *peer, const char *xff,
                  const char *fwd, char out[SL_IP_TEXT])
{
    uint8_t pa[16];
    snprintf(out, SL_IP_TEXT, "%s", peer ? peer : "");
    if (!ntrusted || !peer || !sl_ip_parse(peer, strlen(peer), pa) ||
        !sl_cidr_match(trusted, ntrusted, pa) || (!xff && !fwd))
        return false;
    hops_t hs;
    hs.n = 0;
    if (xff)
        parse_xff(xff, &hs);
    else
        parse_forwarded(fwd, &hs);
    size_t kept = hs.n < SL_CLIENT_IP_MAX_HOPS ? hs.n : SL_CLIENT_IP_MAX_HOPS;
    const hop_t *leftmost = NULL;
    for (size_t k = 0; k < kept; k++) {
        const hop_t *h = &hs.h[(hs.n - 1 - k) % SL_CLIENT_IP_MAX_HOPS];
        if (!h->addr)
            return false; /* who is behind an unknown hop cannot be told */
        if (!sl_cidr_match(trusted, ntrusted, h->a)) {
            sl_ip_format(h->a, out);
            return true;
        }
        leftmost = h;
    }
    if (!leftmost || hs.n > kept)
        return false; /* no hops, or the chain goes on beyond the window */
    sl_ip_format(leftmost->a, out);
    return true;
}
