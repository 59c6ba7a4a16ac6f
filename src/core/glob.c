/* Shell-style globs for model names: '*' and '?', counted in UTF-8 characters. */
#include "core/glob.h"

#include <stddef.h>

/* One UTF-8 character on: '?' and '*' count characters, not bytes. */
static const char *next_char(const char *s)
{
    s++;
    while (((unsigned char)*s & 0xC0) == 0x80) /* continuation bytes 10xxxxxx */
        s++;
    return s;
}

/* Iterative with one backtrack point, the last '*': a later star supersedes an earlier one,
 * so the cost is O(len(pattern) * len(s)) at worst, never exponential. */
bool sl_glob_match(const char *p, const char *s)
{
    const char *star_p = NULL, *star_s = NULL;
    while (*s) {
        if (*p == '*') {
            star_p = ++p;
            star_s = s;
        } else if (*p == '?') {
            p++;
            s = next_char(s);
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star_p) {
            p = star_p;
            s = star_s = next_char(star_s);
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}
