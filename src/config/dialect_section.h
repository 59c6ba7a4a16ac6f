/* Each dialect owns its config section (like h2o's configurators): a table of the keys it reads
 * under dialects.<name>, beside the keys every dialect has (enabled, prefix, model, auth, ...),
 * and the hooks that set its defaults, free its settings and resolve what depends on the whole
 * file. The config module reads every registered section; adding a dialect adds a section in
 * the dialect's own files and touches no header here. */
#ifndef SL_CONFIG_DIALECT_SECTION_H
#define SL_CONFIG_DIALECT_SECTION_H
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "config/ytree.h"

typedef enum sl_cfgkey_kind {
    SL_CFGKEY_BOOL,     /* bool: true or false */
    SL_CFGKEY_STR,      /* char *, owned (freed for the dialect); non-empty when min = 1 */
    SL_CFGKEY_UINT,     /* unsigned, within [min, max] */
    SL_CFGKEY_DURATION, /* uint64_t milliseconds ("30s", "250ms", ...) */
    SL_CFGKEY_PARSE,    /* anything else: parse() reads the value */
} sl_cfgkey_kind_t;

/* One key of a dialect's own settings; off is where its value goes in them (offsetof). */
typedef struct sl_cfgkey {
    const char *name;
    sl_cfgkey_kind_t kind;
    size_t off;
    uint64_t min, max;
    /* PARSE: reads v into own (the whole settings struct); errors through sl_ytree_error. */
    int (*parse)(sl_ytree_t *t, const yaml_node_t *v, void *own);
} sl_cfgkey_t;

typedef struct sl_dialect_section {
    const char *name;        /* the key under dialects: */
    const sl_cfgkey_t *keys; /* its own keys, ended by {NULL}; NULL = none */
    size_t own_size;         /* bytes of its own settings (d->own, zeroed); 0 = none */
    /* Defaults before the file is read: the common ones it changes and its own. NULL = none. */
    void (*defaults)(sl_dialect_cfg_t *d);
    /* Frees what PARSE keys allocated in own (STR keys are freed for it). NULL = none. */
    void (*dispose)(void *own);
    /* After the whole file is read, before the common auth default is resolved. NULL = none. */
    void (*finish)(const sl_config_t *c, sl_dialect_cfg_t *d);
} sl_dialect_section_t;

/* Makes a section known to every config parsed afterwards, in registration order (which gives
 * each dialect its index). Call at start-up, before any config is read and before threads
 * exist; registering the same section again is a no-op. At most SL_CONFIG_MAX_DIALECTS. */
void sl_config_register_dialect(const sl_dialect_section_t *s);

#endif
