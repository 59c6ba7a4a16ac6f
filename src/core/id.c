/* Random identifiers. */
#include "core/id.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

#include "core/err.h"

void sl_random_id(char *out, size_t cap, const char *prefix)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[16];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        SL_ASSERT(n > 0); /* only fails before the pool is seeded at boot, or with EINTR */
        got += (size_t)n;
    }
    int len = snprintf(out, cap, "%s", prefix);
    SL_ASSERT(len >= 0 && (size_t)len + 33 <= cap);
    for (size_t i = 0; i < sizeof raw; i++) {
        out[len + 2 * (int)i] = hex[raw[i] >> 4];
        out[len + 2 * (int)i + 1] = hex[raw[i] & 15];
    }
    out[len + 32] = '\0';
}
