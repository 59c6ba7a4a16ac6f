/* upstream/h1_url: which upstream URLs the built-in HTTP/1.1 client takes. An eligible URL gives
 * a numeric address of the right family and port, a Host value (NUL-terminated, under 80 bytes)
 * taken from the URL, and a request path that lies inside the URL (or is "/"); a URL is never
 * eligible when SLUICE_UPSTREAM_CLIENT=curl, nor through a proxy that no_proxy does not exempt.
 * no_proxy matching: "*" matches every host, and a plain name matches itself.
 *
 * Input: [flags][no_proxy "\0" url]. flags bit 0: http_proxy set; bit 1: all_proxy set; bit 2:
 * SLUICE_UPSTREAM_CLIENT=curl. */
#include "fuzz.h"

#include <netinet/in.h>
#include <strings.h>

#include "upstream/h1.h"

static void check_target(const char *url, const sl_h1_target_t *t)
{
    size_t n = strlen(url);
    size_t hl = strnlen(t->host, sizeof t->host);
    FUZZ_CHECK(hl > 0 && hl < sizeof t->host);
    FUZZ_CHECK(memmem(url, n, t->host, hl) != NULL);
    FUZZ_CHECK(t->addr.ss_family == AF_INET || t->addr.ss_family == AF_INET6);
    FUZZ_CHECK(t->path && t->path_len > 0);
    if (!(t->path_len == 1 && t->path[0] == '/'))
        FUZZ_CHECK(t->path >= url && t->path + t->path_len <= url + n);
    FUZZ_CHECK(t->path[0] == '/');
    FUZZ_CHECK(strncasecmp(url, "http://", 7) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    uint8_t flags = fz_u8(&f);
    char *rest = fz_rest_str(&f);
    size_t rn = size ? size - 1 : 0;
    const char *nul = memchr(rest, '\0', rn);
    const char *no_proxy = rest, *url = nul ? nul + 1 : "";

    sl_h1_env_t env = {
        .client = flags & 4 ? "curl" : NULL,
        .http_proxy = flags & 1 ? "http://proxy:3128" : NULL,
        .all_proxy = flags & 2 ? "socks5://proxy:1080" : "",
        .no_proxy = no_proxy,
    };
    sl_h1_target_t t;
    memset(&t, 0xa5, sizeof t); /* garbage left over must not be read as an answer */
    if (sl_h1_eligible(url, &env, &t)) {
        FUZZ_CHECK(!(flags & 4));
        check_target(url, &t);
        if (flags & 3) { /* through a proxy only when exempted: the host must match no_proxy */
            char host[sizeof t.host];
            const char *h = t.host;
            size_t hl = strlen(h);
            if (h[0] == '[') { /* the Host value keeps brackets and port; no_proxy gets neither */
                const char *close = strchr(h, ']');
                FUZZ_CHECK(close != NULL);
                hl = (size_t)(close - h - 1);
                h++;
            } else if (strrchr(h, ':')) {
                hl = (size_t)(strrchr(h, ':') - h);
            }
            memcpy(host, h, hl);
            host[hl] = '\0';
            FUZZ_CHECK(sl_h1_no_proxy_match(no_proxy, host));
        }
    }
    FUZZ_CHECK(!sl_h1_no_proxy_match(NULL, url));
    FUZZ_CHECK(sl_h1_no_proxy_match("*", url));
    /* A plain name is matched by itself as the only entry. */
    if (*url && !strpbrk(url, ", \t/") && url[0] != '.' && url[0] != '[')
        FUZZ_CHECK(sl_h1_no_proxy_match(url, url));
    (void)sl_h1_no_proxy_match(no_proxy, url);
    sl_free(rest);
    return 0;
}
