/* Lookups into the SL_ERR_MAP table. */
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>

struct row {
    int code;
    int status;
    const char *type;
    const char *msg;
};

static const struct row rows[] = {
#define X(name, status, type, msg) {SL_##name, status, type, msg},
    SL_ERR_MAP(X)
#undef X
};

static const struct row *find(int err)
{
    for (unsigned i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].code == err)
            return &rows[i];
    return err == SL_EINTERNAL ? &rows[0] : find(SL_EINTERNAL);
}

const char *sl_strerror(int err)
{
    return err == 0 ? "ok" : find(err)->msg;
}

int sl_err_status(int err)
{
    return err == 0 ? 200 : find(err)->status;
}

const char *sl_err_type(int err)
{
    return find(err)->type;
}

void sl_assert_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "sluice: assertion failed: %s at %s:%d\n", what, file, line);
    abort();
}
