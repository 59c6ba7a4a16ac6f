/* What both database backends share: the usage query's shape, and stored text made safe for
 * JSON and for databases that insist on valid UTF-8. */
#include "store/db_sql.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* ---- the usage query ---- */

static const char *const group_names[SL_DB_GROUP_COUNT] = {
    [SL_DB_GROUP_KEY] = "key",           [SL_DB_GROUP_USER] = "user",
    [SL_DB_GROUP_MODEL] = "model",       [SL_DB_GROUP_DIALECT] = "dialect",
    [SL_DB_GROUP_PROVIDER] = "provider", [SL_DB_GROUP_DAY] = "day",
};

int sl_db_group(const char *group_by)
{
    if (!group_by)
        return SL_DB_GROUP_TOTAL;
    for (int i = 0; i < SL_DB_GROUP_COUNT; i++)
        if (strcmp(group_by, group_names[i]) == 0)
            return i;
    return -1;
}

/* Appends " WHERE column op <placeholder>" (or " AND ...") and records the parameter. */
static void filter(sl_buf_t *sql, const sl_db_sql_t *spell, const char *cond, sl_db_param_t p,
                   sl_db_param_t *params, size_t *n)
{
    sl_buf_puts(sql, *n == 0 ? " WHERE " : " AND ");
    sl_buf_puts(sql, cond);
    params[*n] = p;
    ++*n;
    if (spell->numbered)
        sl_buf_printf(sql, "$%zu", *n);
    else
        sl_buf_putc(sql, '?');
}

void sl_db_usage_sql(const sl_usage_query_t *q, const sl_db_sql_t *spell, sl_buf_t *sql,
                     sl_db_param_t *params, size_t *nparams)
{
    int g = sl_db_group(q->group_by);
    SL_ASSERT(g >= 0); /* the store refuses unknown groups before they get here */
    const char *expr = g == SL_DB_GROUP_TOTAL ? "''" : spell->group_expr[g];
    sl_buf_printf(sql, "SELECT %s, %s FROM usage", expr, spell->sums);
    size_t n = 0;
    if (q->key_name)
        filter(sql, spell, "key_name = ", (sl_db_param_t){.text = q->key_name}, params, &n);
    if (q->user_id)
        filter(sql, spell, "user_id = ", (sl_db_param_t){.text = q->user_id}, params, &n);
    if (q->model)
        filter(sql, spell, "model = ", (sl_db_param_t){.text = q->model}, params, &n);
    if (q->since)
        filter(sql, spell, "ts >= ", (sl_db_param_t){.num = q->since}, params, &n);
    if (q->until)
        filter(sql, spell, "ts < ", (sl_db_param_t){.num = q->until}, params, &n);
    /* Without GROUP BY an aggregate query always yields its one row, even over no rows. */
    if (g != SL_DB_GROUP_TOTAL)
        sl_buf_printf(sql, " GROUP BY 1 ORDER BY 1 LIMIT %d", SL_DB_ROWS_LIMIT);
    *nparams = n;
}

void sl_db_usage_row(sl_usage_sum_t *row, const char *group, const int64_t sums[5])
{
    /* Groups longer than the field are cut; they are display keys, not looked up again. */
    snprintf(row->group, sizeof row->group, "%s", group ? group : "");
    row->requests = sums[0];
    row->prompt_tokens = sums[1];
    row->completion_tokens = sums[2];
    row->errors = sums[3];
    row->cancelled = sums[4];
}

/* ---- text ---- */

void sl_db_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Length of the valid UTF-8 sequence at p (n bytes available), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0], cp, min;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Appends p[0..n) to b with each invalid byte as U+FFFD. */
static void append_repaired(sl_buf_t *b, const unsigned char *p, size_t n)
{
    sl_buf_append(b, "", 0); /* data is set even for empty text */
    for (size_t i = 0; i < n;) {
        size_t k = utf8_len(p + i, n - i);
        sl_buf_append(b, k ? (const char *)p + i : "\xef\xbf\xbd", k ? k : 3);
        i += k ? k : 1;
    }
}

json_t *sl_db_json_text(const char *p, size_t n)
{
    json_t *j = json_stringn(p, n);
    if (j)
        return j;
    sl_buf_t b;
    sl_buf_init(&b);
    append_repaired(&b, (const unsigned char *)p, n);
    j = json_stringn(b.data, b.len);
    sl_buf_dispose(&b);
    return j;
}

const char *sl_db_utf8(const char *s, sl_buf_t *tmp)
{
    if (!s)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    size_t i = 0, k;
    while (i < n && (k = utf8_len(p + i, n - i)) != 0)
        i += k;
    if (i == n)
        return s;
    sl_buf_reset(tmp);
    append_repaired(tmp, p, n);
    return tmp->data;
}
