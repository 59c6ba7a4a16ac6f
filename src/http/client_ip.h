/* Who the client is (DESIGN §6): the TCP peer, or, when the peer is a trusted proxy
 * (trusted_proxies), the address it forwarded in X-Forwarded-For or Forwarded (RFC 7239).
 * Pure: text in, text out, no I/O and no allocation; every input is the client's to choose. */
#ifndef SL_HTTP_CLIENT_IP_H
#define SL_HTTP_CLIENT_IP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define SL_IP_TEXT 46 /* INET6_ADDRSTRLEN: the longest address text, NUL included */
/* Forwarded hops considered per request, the rightmost ones; a chain longer than this whose
 * window holds only trusted proxies names no client (the peer is used). */
#define SL_CLIENT_IP_MAX_HOPS 64

/* An address range. IPv4 is held as v4-mapped IPv6 (::ffff:a.b.c.d), so 10.0.0.0/8 also
 * matches a dual-stack peer ::ffff:10.1.2.3. */
typedef struct sl_cidr {
    uint8_t net[16]; /* host bits zero */
    unsigned bits;   /* prefix length over the 16 bytes: IPv4 /n is 96 + n */
} sl_cidr_t;

/* Parses an IPv4 (dotted quad) or IPv6 literal of n bytes (no brackets, port or zone). */
bool sl_ip_parse(const char *s, size_t n, uint8_t out[16]);
/* The address as text: dotted quad for IPv4 and v4-mapped IPv6, else RFC 5952 IPv6. */
void sl_ip_format(const uint8_t a[16], char out[SL_IP_TEXT]);
/* Parses "10.0.0.0/8", "::1/128", or a bare address (one host). SL_EINVAL with *why (static
 * text) when it is not one, or when bits below the prefix are set ("10.1.0.0/8"). */
SL_MUST_CHECK int sl_cidr_parse(const char *s, sl_cidr_t *out, const char **why);
/* Is a inside any of the n ranges? */
bool sl_cidr_match(const sl_cidr_t *set, size_t n, const uint8_t a[16]);
/* Is text a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104)? */
bool sl_ip_is_loopback(const char *text);

/* The client's address into out. Unless peer (the TCP peer's address text) is inside trusted,
 * it is peer itself, and the headers are not read. From a trusted peer: the X-Forwarded-For
 * value xff when present, else the Forwarded value fwd (for= only; quoted, IPv6 in brackets,
 * ports stripped), each the comma-joined lines of that header (NULL = absent); walking its
 * hops right to left, trusted addresses are skipped and the first other address is the client.
 * A hop that is unknown, obfuscated or malformed ends the walk: the client is the peer. When
 * every hop is trusted, the leftmost is. Returns true when the address came from a header. */
bool sl_client_ip(const sl_cidr_t *trusted, size_t ntrusted, const char *peer, const char *xff,
                  const char *fwd, char out[SL_IP_TEXT]);

#endif
