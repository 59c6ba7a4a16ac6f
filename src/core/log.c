/* stderr logging and the clocks it stamps with. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

sl_log_level_t sl_log_min_level = SL_LOG_INFO;

void sl_log_set_level(sl_log_level_t lvl)
{
    sl_log_min_level = lvl;
}

static void write_all_fd(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return; /* stderr gone: nothing sensible left to do */
        p += w;
        n -= (size_t)w;
    }
}

static void write_all(const char *p, size_t n)
{
    write_all_fd(STDERR_FILENO, p, n);
}

void sl_log(sl_log_level_t lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (lvl < sl_log_min_level)
        return;
    char line[2048];
    int n = snprintf(line, sizeof line, "sluice: %s: ", names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    write_all(line, len);
}

void sl_log_line(const char *line, size_t len)
{
    char nl = '\n';
    /* One write keeps a record whole when several workers log at once (stderr is unbuffered
     * and writes up to PIPE_BUF are atomic on pipes). */
    if (len < 4095) {
        char tmp[4096];
        memcpy(tmp, line, len);
        tmp[len] = nl;
        write_all(tmp, len + 1);
        return;
    }
    write_all(line, len);
    write_all(&nl, 1);
}

void sl_log_batch(const char *lines, size_t len)
{
    sl_log_lines_fd(STDERR_FILENO, lines, len);
}

void sl_log_lines_fd(int fd, const char *lines, size_t len)
{
    while (len > 0) {
        size_t n = len < 4096 ? len : 4096;
        if (n < len) {
            /* Cut after the last newline that fits; one longer line goes alone. */
            const char *nl = memrchr(lines, '\n', n);
            if (nl)
                n = (size_t)(nl - lines) + 1;
            else if ((nl = memchr(lines, '\n', len)))
                n = (size_t)(nl - lines) + 1;
            else
                n = len;
        }
        write_all_fd(fd, lines, n);
        lines += n;
        len -= n;
    }
}

double sl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int64_t sl_wall_s(void)
{
    return (int64_t)time(NULL);
}
