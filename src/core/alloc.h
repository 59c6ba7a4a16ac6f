/* Allocation that never returns NULL: on exhaustion it aborts with the caller's file:line,
 * so callers never check. Raw malloc/free live only in alloc.c. */
#ifndef SL_CORE_ALLOC_H
#define SL_CORE_ALLOC_H
#include <stddef.h>

void *sl_malloc_at(size_t n, const char *file, int line);
void *sl_calloc_at(size_t n, size_t size, const char *file, int line);
void *sl_realloc_at(void *p, size_t n, const char *file, int line);
char *sl_strdup_at(const char *s, const char *file, int line);
char *sl_strndup_at(const char *s, size_t n, const char *file, int line);
/* Plain function forms, for libraries that take allocator hooks (jansson). */
void *sl_malloc_fn(size_t n);
/* Freeing NULL is a no-op. */
void sl_free(void *p);

#define sl_malloc(n)     sl_malloc_at((n), __FILE__, __LINE__)
#define sl_calloc(n, s)  sl_calloc_at((n), (s), __FILE__, __LINE__)
#define sl_realloc(p, n) sl_realloc_at((p), (n), __FILE__, __LINE__)
#define sl_strdup(s)     sl_strdup_at((s), __FILE__, __LINE__)
#define sl_strndup(s, n) sl_strndup_at((s), (n), __FILE__, __LINE__)

#endif
