/* The dialects in this binary: the one list a new dialect joins (besides its own files). */
#include "dialect/dialect.h"

/* Each defined in its own file; named only here. */
extern const sl_dialect_t sl_dialect_openai;
extern const sl_dialect_t sl_dialect_chat;
extern const sl_dialect_t sl_dialect_monoai;
extern const sl_dialect_t sl_dialect_aichat;
extern const sl_dialect_t sl_dialect_rag;

static const sl_dialect_t *const all[] = {
    &sl_dialect_openai, &sl_dialect_chat, &sl_dialect_monoai, &sl_dialect_aichat, &sl_dialect_rag,
};

const sl_dialect_t *const *sl_dialects(size_t *n)
{
    *n = sizeof all / sizeof all[0];
    return all;
}

void sl_dialects_register(void)
{
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sl_config_register_dialect(all[i]->config);
}
