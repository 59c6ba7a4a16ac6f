/* Random identifiers (session ids): unguessable, from the kernel's CSPRNG. */
#ifndef SL_CORE_ID_H
#define SL_CORE_ID_H
#include <stddef.h>

/* Writes prefix followed by 32 hex characters (128 random bits) and a NUL into out. */
void sl_random_id(char *out, size_t cap, const char *prefix);

#endif
