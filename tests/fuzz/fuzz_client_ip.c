/* http/client_ip: CIDRs, addresses and the client behind trusted proxies. What must hold:
 * - a parsed CIDR has no bits below its prefix, contains its own network address, and its
 *   text (address/length) parses back to the same range; an IPv4 one covers only v4-mapped
 *   addresses;
 * - an address that parses formats to text of at most 45 bytes that parses back to itself;
 * - sl_client_ip writes a NUL-terminated address: the peer itself (headers never read) unless
 *   the peer is trusted, and whenever it says "not forwarded"; a forwarded answer is an address;
 * - what the client writes left of the answer does not change it: when the answer is an
 *   untrusted address, prefixing the header with another hop ("garbage, ") gives the same;
 * - X-Forwarded-For: appending an untrusted address (what a trusted proxy does) makes that
 *   address the client.
 *
 * Input: [flags][cidrs "\0" peer "\0" header]. cidrs: comma-separated (up to 8 parsed). flags
 * bit 0: the header is Forwarded, else X-Forwarded-For; bit 1: the peer is 127.0.0.1 and
 * 127.0.0.1/32 is trusted too (so headers are read whatever the peer text says). */
#include "fuzz.h"

#include "http/client_ip.h"

#define MAX_CIDRS 9

static void check_cidr(const char *text, const sl_cidr_t *c)
{
    FUZZ_CHECK(c->bits <= 128);
    FUZZ_CHECK(sl_cidr_match(c, 1, c->net));
    for (unsigned i = c->bits; i < 128; i++)
        FUZZ_CHECK(!(c->net[i / 8] & (0x80 >> (i % 8))));
    bool v4 = !strchr(text, ':');
    char addr[SL_IP_TEXT], again[SL_IP_TEXT + 8];
    sl_ip_format(c->net, addr);
    if (v4) {
        FUZZ_CHECK(c->bits >= 96);
        snprintf(again, sizeof again, "%s/%u", addr, c->bits - 96);
    } else {
        /* an IPv6 range may be written over v4-mapped space: the text is dotted then, so give
         * it back in the mapped form */
        snprintf(again, sizeof again, "%s%s/%u", strchr(addr, ':') ? "" : "::ffff:", addr,
                 c->bits);
    }
    sl_cidr_t back;
    const char *why = NULL;
    FUZZ_CHECK(sl_cidr_parse(again, &back, &why) == 0);
    FUZZ_CHECK(back.bits == c->bits && memcmp(back.net, c->net, 16) == 0);
}

static void check_address(const char *s, size_t n)
{
    uint8_t a[16], b[16];
    if (!sl_ip_parse(s, n, a))
        return;
    char out[SL_IP_TEXT];
    sl_ip_format(a, out);
    size_t len = strnlen(out, sizeof out);
    FUZZ_CHECK(len > 0 && len < sizeof out);
    FUZZ_CHECK(sl_ip_parse(out, len, b) && memcmp(a, b, 16) == 0);
}

static size_t read_cidrs(char *list, sl_cidr_t *set)
{
    size_t n = 0;
    for (char *p = list; p && n < MAX_CIDRS - 1;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        const char *why = NULL;
        check_address(p, strlen(p));
        if (sl_cidr_parse(p, &set[n], &why) == 0)
            check_cidr(p, &set[n++]);
        else
            FUZZ_CHECK(why && *why);
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

static bool ask(const sl_cidr_t *set, size_t n, const char *peer, bool fwd, const char *h,
                char out[SL_IP_TEXT])
{
    memset(out, 0x5a, SL_IP_TEXT); /* garbage left over must not pass for an answer */
    bool got = sl_client_ip(set, n, peer, fwd ? NULL : h, fwd ? h : NULL, out);
    FUZZ_CHECK(memchr(out, '\0', SL_IP_TEXT) != NULL);
    return got;
}

static void check_walk(const sl_cidr_t *set, size_t n, const char *peer, bool fwd, const char *h)
{
    char out[SL_IP_TEXT];
    uint8_t pa[16], a[16];
    bool peer_trusted = sl_ip_parse(peer, strlen(peer), pa) && sl_cidr_match(set, n, pa);
    bool got = ask(set, n, peer, fwd, h, out);
    if (!got) {
        FUZZ_CHECK(strncmp(out, peer, SL_IP_TEXT - 1) == 0);
        return;
    }
    FUZZ_CHECK(peer_trusted);
    FUZZ_CHECK(sl_ip_parse(out, strlen(out), a));
    size_t hn = strlen(h);
    char *more = sl_malloc(hn + 64);
    if (!sl_cidr_match(set, n, a)) {
        /* the client's own additions sit left of the answer */
        char again[SL_IP_TEXT];
        snprintf(more, hn + 64, "%s%s", fwd ? "@@@, " : "garbage, ", h);
        FUZZ_CHECK(ask(set, n, peer, fwd, more, again) && strcmp(again, out) == 0);
    }
    sl_free(more);
}

/* A trusted proxy appends the address it saw: that address is the client. */
static void check_append(const sl_cidr_t *set, size_t n, const char *peer, const char *h)
{
    uint8_t pa[16], u[16];
    if (!sl_ip_parse(peer, strlen(peer), pa) || !sl_cidr_match(set, n, pa))
        return;
    FUZZ_CHECK(sl_ip_parse("203.0.113.1", 11, u));
    if (sl_cidr_match(set, n, u))
        return;
    size_t hn = strlen(h);
    char *more = sl_malloc(hn + 32), out[SL_IP_TEXT];
    snprintf(more, hn + 32, "%s, 203.0.113.1", h);
    FUZZ_CHECK(ask(set, n, peer, false, more, out) && strcmp(out, "203.0.113.1") == 0);
    sl_free(more);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    uint8_t flags = fz_u8(&f);
    size_t rn = f.n;
    char *rest = fz_rest_str(&f);
    char *peer = memchr(rest, '\0', rn);
    peer = peer ? peer + 1 : rest + rn;
    const char *end = rest + rn;
    char *h = peer < end ? memchr(peer, '\0', (size_t)(end - peer)) : NULL;
    h = h ? h + 1 : (char *)end;

    sl_cidr_t set[MAX_CIDRS];
    size_t n = read_cidrs(rest, set);
    const char *who = peer;
    if (flags & 2) {
        const char *why = NULL;
        FUZZ_CHECK(sl_cidr_parse("127.0.0.1/32", &set[n++], &why) == 0);
        who = "127.0.0.1";
    }
    check_address(peer, strlen(peer));
    check_address(h, strlen(h));
    check_walk(set, n, who, flags & 1, h);
    if (!(flags & 1))
        check_append(set, n, who, h);
    (void)sl_ip_is_loopback(h);
    sl_free(rest);
    return 0;
}
