/* Request headers on their way upstream (headers.h): lines checked once, where they are added,
 * so no transport ever sees a line break inside a value. */
#include "upstream/headers.h"

#include <stdbool.h>
#include <string.h>

#include "core/log.h"

void sl_headers_init(sl_headers_t *h)
{
    sl_buf_init(&h->send);
    sl_buf_init(&h->omit);
}

void sl_headers_dispose(sl_headers_t *h)
{
    sl_buf_dispose(&h->send);
    sl_buf_dispose(&h->omit);
}

/* RFC 9110 §5.6.2 tchar. */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c && strchr("!#$%&'*+-.^_`|~", c))))
            return false;
    }
    return true;
}

/* RFC 9110 §5.5: CR, LF and NUL must never go out in a value; the other controls (tab aside)
 * are not field text either. */
static bool is_field_value(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static bool is_blank(const char *s)
{
    return s[strspn(s, " \t")] == '\0';
}

void sl_headers_omit(sl_headers_t *h, const char *name)
{
    SL_ASSERT(is_token(name));
    sl_buf_puts(&h->omit, name);
    sl_buf_puts(&h->omit, ":\r\n");
}

int sl_headers_add(sl_headers_t *h, const char *name, const char *value)
{
    SL_ASSERT(is_token(name));
    if (!is_field_value(value)) {
        sl_log(SL_LOG_WARN, "upstream header %s refused: a line break or control byte in its value",
               name);
        return SL_EINVAL;
    }
    if (is_blank(value)) {
        sl_headers_omit(h, name);
        return 0;
    }
    sl_buf_puts(&h->send, name);
    sl_buf_puts(&h->send, ": ");
    sl_buf_puts(&h->send, value);
    sl_buf_puts(&h->send, "\r\n");
    return 0;
}
