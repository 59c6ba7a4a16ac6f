/* The access-log writer: workers hand it each loop turn's lines and go on; one thread of its
 * own writes them, so a slow disk (a journal commit, the store's fsync on the same disk) stalls
 * that thread and never a worker. The buffer between them is bounded: lines that do not fit
 * are dropped, counted (sluice_access_log_dropped_total) and reported in the log, never
 * silently. */
#ifndef SL_OBS_LOGQ_H
#define SL_OBS_LOGQ_H
#include <stddef.h>
#include <stdint.h>

typedef struct sl_logq sl_logq_t;

/* Default bound on lines waiting to be written (bytes). */
#define SL_LOGQ_CAP ((size_t)8 << 20)

/* Starts the writer thread, writing to fd (not closed by sluice). NULL if it cannot start. */
sl_logq_t *sl_logq_start(int fd, size_t cap);
/* Queues complete lines (each ending in \n). Any thread; one lock, and a wakeup only when the
 * writer is idle. A batch that does not fit whole is dropped whole and counted by lines. */
void sl_logq_push(sl_logq_t *q, const char *lines, size_t len);
/* Lines dropped so far, and lines written so far. */
uint64_t sl_logq_dropped(sl_logq_t *q);
uint64_t sl_logq_written(sl_logq_t *q);
/* Writes out everything queued, stops the thread and frees q. NULL is a no-op. */
void sl_logq_stop(sl_logq_t *q);

#endif
