/* Typed, strict reads from a libyaml document tree, with errors as "name:line:col: message".
 * Private to src/config: the schema (config.c, routing.c, sections.c) is written in terms of
 * these. */
#ifndef SL_CONFIG_YTREE_H
#define SL_CONFIG_YTREE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct sl_ytree {
    yaml_document_t doc; /* owned */
    const char *name;    /* borrowed: the caller's, outlives the tree */
    sl_buf_t *err;       /* borrowed: the caller's error text; may be NULL */
} sl_ytree_t;

/* Parses text as exactly one YAML document. On failure err holds libyaml's complaint with
 * its mark, nothing is left to dispose and the result is SL_ECONFIG. */
SL_MUST_CHECK int sl_ytree_load(sl_ytree_t *t, const char *text, size_t len, const char *name,
                                sl_buf_t *err);
void sl_ytree_dispose(sl_ytree_t *t);

/* The root node, or NULL for an empty document. */
yaml_node_t *sl_ytree_root(sl_ytree_t *t);
yaml_node_t *sl_ytree_node(sl_ytree_t *t, int id);
/* The text of a key that sl_ytree_check_map has accepted as a scalar. */
const char *sl_ytree_text(const yaml_node_t *n);
/* A plain empty, ~ or null scalar: YAML's way of writing nothing. */
bool sl_ytree_is_null(const yaml_node_t *n);

/* Appends "name:line:col: message" (line and column 1-based, from n's start) and returns
 * SL_ECONFIG, so callers can write `return sl_ytree_error(...)`. */
SL_MUST_CHECK int sl_ytree_error(sl_ytree_t *t, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* n must be a mapping with scalar, unique keys, each in allowed (NULL-terminated). A key in
 * later (NULL-terminated, may be NULL) is refused as not supported by this version yet.
 * what names the mapping in messages ("limits"); NULL for the top level. */
SL_MUST_CHECK int sl_ytree_check_map(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                                     const char *const *allowed, const char *const *later);
/* The value under key in mapping n, or NULL when the key is absent. */
yaml_node_t *sl_ytree_get(sl_ytree_t *t, const yaml_node_t *n, const char *key);
/* n must be a sequence; what names it in the message. */
SL_MUST_CHECK int sl_ytree_check_seq(sl_ytree_t *t, const yaml_node_t *n, const char *what);

/* Whole decimal number, digits only (no sign, no spaces); false when malformed or too big. */
bool sl_ytree_parse_uint(const char *s, uint64_t *out);
/* Pairs in mapping n, items in sequence n. */
size_t sl_ytree_map_len(const yaml_node_t *n);
size_t sl_ytree_seq_len(const yaml_node_t *n);
/* Non-empty, and only letters, digits, '_', '-' and '.' (names shown in logs and labels). */
bool sl_ytree_is_plain_name(const char *s);

/* Scalar reads. Each expands ${NAME} from the environment first (an unset variable is an
 * error), then checks the type; what (usually the key) starts the message. */
/* A string; *out is owned by the caller (sl_free). Empty strings are allowed. */
SL_MUST_CHECK int sl_ytree_str(sl_ytree_t *t, const yaml_node_t *n, const char *what, char **out);
/* sl_ytree_str into *dst, freeing what *dst held before (a default). */
SL_MUST_CHECK int sl_ytree_set_str(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                                   char **dst);
/* A whole number in [min, max]. */
SL_MUST_CHECK int sl_ytree_uint(sl_ytree_t *t, const yaml_node_t *n, const char *what, uint64_t min,
                                uint64_t max, uint64_t *out);
/* A finite number > 0, e.g. 40 or 2.5. */
SL_MUST_CHECK int sl_ytree_positive(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                                    double *out);
/* 500ms, 30s, 2m, 1h in milliseconds; 0 or off give 0 (none). */
SL_MUST_CHECK int sl_ytree_duration(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                                    uint64_t *ms);
/* Bytes: 1024, 512KiB, 4MiB, 1GiB, 10KB, 2MB, 1GB, 100B; at least 1. */
SL_MUST_CHECK int sl_ytree_size(sl_ytree_t *t, const yaml_node_t *n, const char *what, size_t *out);
/* A string that must not be empty (an empty ${VAR} is refused); *out as sl_ytree_str's. */
SL_MUST_CHECK int sl_ytree_nonempty(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                                    char **out);
/* A non-empty string without a space or line break at either end (keys compared byte for
 * byte); *out as sl_ytree_str's. */
SL_MUST_CHECK int sl_ytree_secret(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                                  char **out);
/* "host:port" (port 0..65535; 0 = any free one) into *host (replaced, owned by the caller) and
 * *port. */
SL_MUST_CHECK int sl_ytree_host_port(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                                     char **host, int *port);

#endif
