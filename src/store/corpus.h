/* The rag dialect's corpus (seed 004, DESIGN §4/§8): .md/.txt files indexed as passages in an
 * SQLite FTS5 table, searched with bm25 and re-scored. The text helpers (chunking, titles,
 * query sanitizing, rerank) are pure; the sl_corpus_* database calls run on the store thread
 * only, against the store's SQLite connection. */
#ifndef SL_STORE_CORPUS_H
#define SL_STORE_CORPUS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct sqlite3 sqlite3;

/* ---- text (pure) ---- */

/* Passages aim at this many bytes; a paragraph longer than 1.5x is cut at a sentence end or a
 * space, never inside a UTF-8 character. */
#define SL_CORPUS_PASSAGE 800

/* Splits text into passages at paragraph boundaries (blank lines), joining paragraphs while
 * they fit in target bytes. Each passage is trimmed and handed to cb (bytes valid during the
 * call only). Returns the number of passages. */
typedef void (*sl_corpus_passage_cb)(void *ud, const char *p, size_t n);
size_t sl_corpus_chunk(const char *text, size_t len, size_t target, sl_corpus_passage_cb cb,
                       void *ud);

/* The file's first Markdown heading ("# Title", any level, trailing #s dropped), else the file
 * name without directory and extension. Replaces out's contents. */
void sl_corpus_title(const char *text, size_t len, const char *path, sl_buf_t *out);

#define SL_CORPUS_MAX_TERMS 24
#define SL_CORPUS_TERM_MAX  48

/* The question's search terms: runs of letters and digits, lowercased, Latin-1 accents folded
 * (qué → que), common English and Spanish words dropped (unless nothing else is left), one-
 * character and duplicate terms dropped, at most SL_CORPUS_MAX_TERMS of at most
 * SL_CORPUS_TERM_MAX - 1 bytes. Nothing of the user's text other than letters and digits
 * survives, so no FTS5 syntax ("", *, NEAR(, -, :, ^, AND/OR/NOT as operators) can. */
typedef struct sl_corpus_terms {
    char term[SL_CORPUS_MAX_TERMS][SL_CORPUS_TERM_MAX];
    size_t n;
} sl_corpus_terms_t;
void sl_corpus_terms(const char *question, sl_corpus_terms_t *out);
/* The FTS5 MATCH expression for terms: each one a quoted string, joined by OR ("" when there
 * are none: nothing to search). Replaces out's contents. */
void sl_corpus_fts_query(const sl_corpus_terms_t *t, sl_buf_t *out);
/* Share of the terms (0..1) that occur in text as whole words, compared the way
 * sl_corpus_terms folds them. 0 when there are no terms. */
double sl_corpus_coverage(const sl_corpus_terms_t *t, const char *text, size_t len);

/* One retrieved passage to re-score. bm25 is FTS5's (lower is better, usually negative). */
typedef struct sl_corpus_cand {
    int64_t id;
    double bm25;
    double coverage;
    double score; /* out */
    size_t index; /* the caller's; carried along */
} sl_corpus_cand_t;

#define SL_CORPUS_W_COVERAGE 0.6
#define SL_CORPUS_W_BM25     0.4

/* The rerank: score = 0.6 * coverage + 0.4 * (-bm25 / max over the candidates of -bm25),
 * both in 0..1; sorts best first (ties: better bm25, then lower id), so the order depends on
 * the candidates alone. */
void sl_corpus_rerank(sl_corpus_cand_t *c, size_t n);

/* ---- the index (store thread) ---- */

/* Creates the corpus tables when missing; before any other call on db. */
SL_MUST_CHECK int sl_corpus_open(sqlite3 *db, sl_buf_t *err);

/* Brings the index in line with dir: files (recursively; .md, .markdown, .txt; hidden ones
 * skipped) whose mtime or size changed are read and chunked again, removed ones dropped, and
 * the answer cache cleared when anything changed. A new dir replaces the whole index. Runs in a
 * savepoint: inside the store's batch transaction or on its own. */
SL_MUST_CHECK int sl_corpus_sync(sqlite3 *db, const char *dir, sl_buf_t *err);

/* The phases after the cache: retrieval (FTS5 bm25 over the sanitized terms, 5 x top_k
 * candidates, at least 20) and rerank; fills res with "sources" [{id, title, path, score,
 * snippet, text}] (best first, at most top_k), "retrieval_ms" and "rerank_ms". */
SL_MUST_CHECK int sl_corpus_search(sqlite3 *db, const char *question, unsigned top_k, json_t *res,
                                   sl_buf_t *err);

/* The answer cache: an exact-key answer younger than ttl_s ({"answer", "sources"} JSON text,
 * NULL when none; *hit owned by the caller), and storing one. */
SL_MUST_CHECK int sl_corpus_cache_get(sqlite3 *db, const char *key, int64_t now, int64_t ttl_s,
                                      char **hit, sl_buf_t *err);
SL_MUST_CHECK int sl_corpus_cache_put(sqlite3 *db, const char *key, const char *value, int64_t now,
                                      sl_buf_t *err);

#endif
