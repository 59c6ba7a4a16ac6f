/* Shell-style globs for model names (routing, a key's allowed models). */
#ifndef SL_CORE_GLOB_H
#define SL_CORE_GLOB_H
#include <stdbool.h>

/* '*' matches any run of characters (also empty), '?' one UTF-8 character, anything else
 * itself, byte for byte. */
bool sl_glob_match(const char *pattern, const char *s);

#endif
