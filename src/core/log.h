/* Logging to stderr, one write per line so lines from workers never interleave. */
#ifndef SL_CORE_LOG_H
#define SL_CORE_LOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SL_LOG_DEBUG, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR } sl_log_level_t;

/* Set once at startup, before any worker runs (SLUICE_LOG=debug|info|warn|error); read-only
 * afterwards. */
void sl_log_set_level(sl_log_level_t lvl);
extern sl_log_level_t sl_log_min_level;
/* Whether lvl is written: one branch, so a debug line on a hot path costs nothing when off. */
static inline bool sl_log_enabled(sl_log_level_t lvl)
{
    return lvl >= sl_log_min_level;
}
void sl_log(sl_log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes one preformatted line (e.g. a JSON access-log record) followed by \n. */
void sl_log_line(const char *line, size_t len);
/* Writes complete lines (each ending in \n) gathered by a worker, in writes of at most
 * PIPE_BUF bytes cut at line ends, so lines from several workers never interleave. */
void sl_log_batch(const char *lines, size_t len);
/* The same, to any descriptor (the access-log writer thread, obs/logq.c). */
void sl_log_lines_fd(int fd, const char *lines, size_t len);
/* Monotonic milliseconds (fractional) and wall-clock seconds. */
double sl_now_ms(void);
int64_t sl_wall_s(void);

#endif
