/* The `sluice keys` command. */
#include "admin/cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "store/keys.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: sluice keys create --name NAME [--rpm N] [--tpm N] [--budget-tokens N]\n"
            "                          [--models GLOB,GLOB] [--expires 30d|12h|90m]\n"
            "                          [--config FILE]\n"
            "       sluice keys list [--config FILE]\n"
            "       sluice keys revoke KEY_ID [--config FILE]\n");
    return 2;
}

static bool parse_count(const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 0)
        return false;
    *out = v;
    return true;
}

/* 30d, 12h, 90m, 3600s → seconds. */
static bool parse_expiry(const char *s, int64_t *secs)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    int64_t mul = !strcmp(end, "d")   ? 86400
                  : !strcmp(end, "h") ? 3600
                  : !strcmp(end, "m") ? 60
                  : !strcmp(end, "s") ? 1
                                      : 0;
    if (end == s || v <= 0 || !mul)
        return false;
    *secs = v * mul;
    return true;
}

static const char *store_of(const char *config_path, sl_config_t **cfg)
{
    sl_buf_t err;
    sl_buf_init(&err);
    if (!config_path) {
        *cfg = sl_config_default();
    } else if (sl_config_load(config_path, cfg, &err) != 0) {
        fprintf(stderr, "%s\n", err.data ? err.data : "invalid config");
        sl_buf_dispose(&err);
        return NULL;
    }
    sl_buf_dispose(&err);
    return (*cfg)->postgres_url ? (*cfg)->postgres_url : (*cfg)->sqlite_path;
}

static void print_key(void *ud, const sl_key_rec_t *k)
{
    printf("%s\t%s\trpm=%" PRId64 "\ttpm=%" PRId64 "\tbudget=%" PRId64 "\tspent=%" PRId64
           "\tmodels=%s\texpires=%" PRId64 "\t%s\n",
           k->id, k->name, k->rpm, k->tpm, k->budget_tokens, k->spent_tokens,
           k->models[0] ? k->models : "*", k->expires_at, k->revoked ? "revoked" : "active");
}

static int run(const char *cmd, const char *arg, const char *db, const sl_key_rec_t *tmpl)
{
    sl_buf_t err;
    sl_buf_init(&err);
    int rc;
    if (!strcmp(cmd, "create")) {
        char secret[128];
        sl_key_rec_t out;
        rc = sl_keys_create(db, tmpl, secret, sizeof secret, &out, &err);
        if (rc == 0)
            printf("%s\nid %s name %s (the key is shown only now: store it safely)\n", secret,
                   out.id, out.name);
    } else if (!strcmp(cmd, "list")) {
        rc = sl_keys_list(db, print_key, NULL, &err);
    } else {
        rc = sl_keys_revoke(db, arg, &err);
        if (rc == 0)
            printf("revoked %s\n", arg);
    }
    if (rc != 0)
        fprintf(stderr, "sluice keys %s: %s\n", cmd, err.data ? err.data : sl_strerror(rc));
    sl_buf_dispose(&err);
    return rc == 0 ? 0 : 1;
}

int sl_cli_keys(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1], *config = NULL, *arg = NULL;
    sl_key_rec_t tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    bool ok = !strcmp(cmd, "create") || !strcmp(cmd, "list") || !strcmp(cmd, "revoke");
    for (int i = 2; ok && i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!a)
            break;
        int64_t secs = 0;
        if (!strcmp(a, "--config") && v)
            config = v, i++;
        else if (!strcmp(a, "--name") && v && strlen(v) < sizeof tmpl.name)
            snprintf(tmpl.name, sizeof tmpl.name, "%s", v), i++;
        else if (!strcmp(a, "--rpm") && v)
            ok = parse_count(v, &tmpl.rpm), i++;
        else if (!strcmp(a, "--tpm") && v)
            ok = parse_count(v, &tmpl.tpm), i++;
        else if (!strcmp(a, "--budget-tokens") && v)
            ok = parse_count(v, &tmpl.budget_tokens), i++;
        else if (!strcmp(a, "--models") && v && strlen(v) < sizeof tmpl.models)
            snprintf(tmpl.models, sizeof tmpl.models, "%s", v), i++;
        else if (!strcmp(a, "--expires") && v && (ok = parse_expiry(v, &secs)))
            tmpl.expires_at = sl_wall_s() + secs, i++;
        else if (!arg && a[0] != '-')
            arg = a;
        else
            ok = false;
    }
    if (!ok || (!strcmp(cmd, "create") && !tmpl.name[0]) || (!strcmp(cmd, "revoke") && !arg))
        return usage();
    sl_config_t *cfg = NULL;
    const char *db = store_of(config, &cfg);
    int rc = db ? run(cmd, arg, db, &tmpl) : 1;
    sl_config_unref(cfg);
    return rc;
}
