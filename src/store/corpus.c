/* The corpus index in SQLite (corpus.h): files → passages in an FTS5 table, kept in line with the
 * directory by mtime and size, searched with bm25 and re-scored; plus the answer cache. Store
 * thread only. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/corpus.h"
#include "store/db.h"
#include "store/db_sql.h"

#define MAX_FILE  (8u << 20) /* larger files are skipped, with a warning */
#define MAX_DEPTH 16

/* remove_diacritics 2: "que" finds "qué" (the corpus of seed 004 is Spanish). path is stored,
 * not searched. */
static const char schema[] =
    "CREATE TABLE IF NOT EXISTS rag_meta(k TEXT PRIMARY KEY NOT NULL, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rag_files(path TEXT PRIMARY KEY NOT NULL, mtime INTEGER NOT NULL,"
    " size INTEGER NOT NULL, title TEXT NOT NULL, passages INTEGER NOT NULL);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS rag_passages USING fts5(title, body, path UNINDEXED,"
    " tokenize = 'unicode61 remove_diacritics 2');"
    "CREATE TABLE IF NOT EXISTS rag_cache(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL,"
    " ts INTEGER NOT NULL);";

static int db_fail(sqlite3 *db, sl_buf_t *err, const char *what)
{
    sl_buf_printf(err, "corpus %s: %s", what, sqlite3_errmsg(db));
    return sqlite3_errcode(db) == SQLITE_BUSY ? SL_EUNAVAIL : SL_EINTERNAL;
}

static int exec(sqlite3 *db, const char *sql, sl_buf_t *err, const char *what)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : db_fail(db, err, what);
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, sl_buf_t *err)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK)
        return 0;
    *st = NULL;
    return db_fail(db, err, "prepare");
}

int sl_corpus_open(sqlite3 *db, sl_buf_t *err)
{
    return exec(db, schema, err, "schema");
}

/* ---- sync ---- */

typedef struct sync {
    sqlite3 *db;
    sl_buf_t *err;
    sqlite3_stmt *get, *del_file, *del_passages, *add_file, *add_passage;
    char **seen; /* owned, each owned: every indexed path found this time */
    size_t nseen, capseen;
    unsigned changed, files, passages;
    const char *path; /* the file being indexed */
    const char *title;
    int rc; /* the first failure inside a chunk callback */
} sync_t;

static bool wanted(const char *name)
{
    const char *dot = strrchr(name, '.');
    return name[0] != '.' && dot &&
           (!strcasecmp(dot, ".md") || !strcasecmp(dot, ".markdown") || !strcasecmp(dot, ".txt"));
}

static int step_done(sync_t *y, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    (void)sqlite3_reset(st); /* the step's code is the one that matters */
    return rc == SQLITE_DONE ? 0 : db_fail(y->db, y->err, what);
}

static void on_passage(void *ud, const char *p, size_t n)
{
    sync_t *y = ud;
    if (y->rc)
        return;
    sqlite3_bind_text(y->add_passage, 1, y->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(y->add_passage, 2, p, (int)n, SQLITE_STATIC);
    sqlite3_bind_text(y->add_passage, 3, y->path, -1, SQLITE_STATIC);
    y->rc = step_done(y, y->add_passage, "passage insert");
    y->passages++;
}

static char *read_file(const char *full, size_t size)
{
    FILE *f = fopen(full, "rb");
    if (!f)
        return NULL;
    char *text = sl_malloc(size + 1);
    size_t got = fread(text, 1, size, f);
    fclose(f);
    text[got] = '\0';
    return text;
}

/* (Re)indexes one file: its old passages go, its new ones come. */
static int index_file(sync_t *y, const char *full, const char *rel, const struct stat *st)
{
    char *text = read_file(full, (size_t)st->st_size);
    if (!text) {
        sl_log(SL_LOG_WARN, "rag: cannot read %s: %s", full, strerror(errno));
        return 0;
    }
    /* Passages become JSON (sources, the upstream prompt): invalid bytes become U+FFFD here,
     * once, rather than failing every answer that retrieves them. A NUL ends the text. */
    sl_buf_t fixed, title;
    sl_buf_init(&fixed);
    sl_buf_init(&title);
    const char *utf8 = sl_db_utf8(text, &fixed);
    size_t len = strlen(utf8);
    sl_corpus_title(utf8, len, rel, &title);
    sqlite3_bind_text(y->del_passages, 1, rel, -1, SQLITE_STATIC);
    int rc = step_done(y, y->del_passages, "passages delete");
    y->path = rel;
    y->title = title.data;
    y->rc = rc;
    unsigned before = y->passages;
    if (!rc)
        sl_corpus_chunk(utf8, len, SL_CORPUS_PASSAGE, on_passage, y);
    rc = y->rc;
    if (!rc) {
        sqlite3_bind_text(y->add_file, 1, rel, -1, SQLITE_STATIC);
        sqlite3_bind_int64(y->add_file, 2,
                           (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec);
        sqlite3_bind_int64(y->add_file, 3, (int64_t)st->st_size);
        sqlite3_bind_text(y->add_file, 4, title.data, -1, SQLITE_STATIC);
        sqlite3_bind_int64(y->add_file, 5, (int64_t)(y->passages - before));
        rc = step_done(y, y->add_file, "file insert");
    }
    y->changed++;
    sl_buf_dispose(&title);
    sl_buf_dispose(&fixed);
    sl_free(text);
    return rc;
}

/* One file found by the walk: indexed again only when its mtime or size moved. */
static int visit_file(sync_t *y, const char *full, const char *rel, const struct stat *st)
{
    if ((uint64_t)st->st_size > MAX_FILE) {
        sl_log(SL_LOG_WARN, "rag: %s is over %u bytes, skipped", full, MAX_FILE);
        return 0;
    }
    if (y->nseen == y->capseen) {
        y->capseen = y->capseen ? y->capseen * 2 : 64;
        y->seen = sl_realloc(y->seen, y->capseen * sizeof *y->seen);
    }
    y->seen[y->nseen++] = sl_strdup(rel);
    y->files++;
    int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    sqlite3_bind_text(y->get, 1, rel, -1, SQLITE_STATIC);
    int rc = sqlite3_step(y->get);
    bool same = rc == SQLITE_ROW && sqlite3_column_int64(y->get, 0) == mtime &&
                sqlite3_column_int64(y->get, 1) == (int64_t)st->st_size;
    (void)sqlite3_reset(y->get);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(y->db, y->err, "file lookup");
    return same ? 0 : index_file(y, full, rel, st);
}

static int walk(sync_t *y, const char *root, const char *rel, int depth)
{
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(full);
    if (!d) {
        sl_log(SL_LOG_WARN, "rag: cannot open %s: %s", full, strerror(errno));
        return 0;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ., .., hidden files and directories (.git) */
        char crel[PATH_MAX], cfull[PATH_MAX];
        int n1 = snprintf(crel, sizeof crel, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        int n2 = snprintf(cfull, sizeof cfull, "%s/%s", root, crel);
        struct stat lst, st;
        if (n1 >= (int)sizeof crel || n2 >= (int)sizeof cfull || lstat(cfull, &lst) != 0)
            continue;
        sl_buf_t tmp;
        sl_buf_init(&tmp);
        bool utf8 = sl_db_utf8(crel, &tmp) == crel;
        sl_buf_dispose(&tmp);
        if (!utf8) { /* paths go out as JSON strings */
            sl_log(SL_LOG_WARN, "rag: %s: the name is not UTF-8, skipped", cfull);
            continue;
        }
        if (S_ISDIR(lst.st_mode)) { /* symlinked directories are not followed: no loops */
            if (depth < MAX_DEPTH)
                rc = walk(y, root, crel, depth + 1);
        } else if (wanted(e->d_name) && stat(cfull, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = visit_file(y, cfull, crel, &st);
        }
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Drops the files of the index that the walk did not find. */
static int prune(sync_t *y)
{
    qsort(y->seen, y->nseen, sizeof *y->seen, cmp_str);
    sqlite3_stmt *all = NULL;
    int rc = prepare(y->db, "SELECT path FROM rag_files", &all, y->err);
    char **gone = NULL;
    size_t ngone = 0;
    while (rc == 0 && sqlite3_step(all) == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(all, 0);
        if (p && !bsearch(&p, y->seen, y->nseen, sizeof *y->seen, cmp_str)) {
            gone = sl_realloc(gone, (ngone + 1) * sizeof *gone);
            gone[ngone++] = sl_strdup(p);
        }
    }
    sqlite3_finalize(all);
    for (size_t i = 0; i < ngone; i++) {
        sqlite3_bind_text(y->del_passages, 1, gone[i], -1, SQLITE_STATIC);
        if (rc == 0)
            rc = step_done(y, y->del_passages, "passages delete");
        sqlite3_bind_text(y->del_file, 1, gone[i], -1, SQLITE_STATIC);
        if (rc == 0)
            rc = step_done(y, y->del_file, "file delete");
        y->changed++;
        sl_free(gone[i]);
    }
    sl_free(gone);
    return rc;
}

/* A corpus directory other than the indexed one replaces the whole index. */
static int check_root(sync_t *y, const char *root)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(y->db, "SELECT v FROM rag_meta WHERE k = 'corpus'", &st, y->err);
    bool same = rc == 0 && sqlite3_step(st) == SQLITE_ROW &&
                !strcmp((const char *)sqlite3_column_text(st, 0), root);
    sqlite3_finalize(st);
    if (rc || same)
        return rc;
    rc = exec(y->db, "DELETE FROM rag_files; DELETE FROM rag_passages; DELETE FROM rag_cache;",
              y->err, "reset");
    if (rc == 0 &&
        (rc = prepare(y->db, "INSERT OR REPLACE INTO rag_meta(k, v) VALUES('corpus', ?1)", &st,
                      y->err)) == 0) {
        sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);
        rc = step_done(y, st, "meta");
        sqlite3_finalize(st);
    }
    return rc;
}

static int sync_prepare(sync_t *y)
{
    int rc = prepare(y->db, "SELECT mtime, size FROM rag_files WHERE path = ?1", &y->get, y->err);
    if (!rc)
        rc = prepare(y->db, "DELETE FROM rag_files WHERE path = ?1", &y->del_file, y->err);
    if (!rc)
        rc = prepare(y->db, "DELETE FROM rag_passages WHERE path = ?1", &y->del_passages, y->err);
    if (!rc)
        rc = prepare(y->db,
                     "INSERT OR REPLACE INTO rag_files(path, mtime, size, title, passages)"
                     " VALUES(?1, ?2, ?3, ?4, ?5)",
                     &y->add_file, y->err);
    if (!rc)
        rc = prepare(y->db, "INSERT INTO rag_passages(title, body, path) VALUES(?1, ?2, ?3)",
                     &y->add_passage, y->err);
    return rc;
}

static void sync_dispose(sync_t *y)
{
    sqlite3_finalize(y->get);
    sqlite3_finalize(y->del_file);
    sqlite3_finalize(y->del_passages);
    sqlite3_finalize(y->add_file);
    sqlite3_finalize(y->add_passage);
    for (size_t i = 0; i < y->nseen; i++)
        sl_free(y->seen[i]);
    sl_free(y->seen);
}

static int sync_run(sync_t *y, const char *root)
{
    int rc = check_root(y, root);
    if (!rc)
        rc = sync_prepare(y);
    if (!rc)
        rc = walk(y, root, "", 0);
    if (!rc)
        rc = prune(y);
    if (!rc && y->changed) /* answers given from the old text are stale now */
        rc = exec(y->db, "DELETE FROM rag_cache", y->err, "cache clear");
    return rc;
}

int sl_corpus_sync(sqlite3 *db, const char *dir, sl_buf_t *err)
{
    char *root = realpath(dir, NULL);
    if (!root) {
        sl_buf_printf(err, "corpus %s: %s", dir, strerror(errno));
        return SL_EINVAL;
    }
    double t0 = sl_now_ms();
    sync_t y = {.db = db, .err = err};
    int rc = exec(db, "SAVEPOINT rag_sync", err, "savepoint");
    if (!rc) {
        rc = sync_run(&y, root);
        if (rc) /* the index stays as it was */
            (void)sqlite3_exec(db, "ROLLBACK TO rag_sync", NULL, NULL, NULL);
        int rel = exec(db, "RELEASE rag_sync", err, "release");
        rc = rc ? rc : rel;
    }
    if (!rc)
        sl_log(SL_LOG_INFO, "rag: corpus %s: %u files, %u indexed again or removed (%.0f ms)", root,
               y.files, y.changed, sl_now_ms() - t0);
    sync_dispose(&y);
    free(root); /* realpath's malloc */
    return rc;
}

/* ---- search ---- */

typedef struct hit {
    char *path, *title, *body, *snippet; /* owned */
} hit_t;

/* Retrieval: up to limit candidates by bm25 (title weighs twice the body). */
static int retrieve(sqlite3 *db, const char *match, unsigned limit, const sl_corpus_terms_t *t,
                    hit_t **hits, sl_corpus_cand_t **cands, size_t *n, sl_buf_t *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT rowid, path, title, body, bm25(rag_passages, 2.0, 1.0, 0.0) AS s,"
                     " snippet(rag_passages, 1, '', '', '…', 32) FROM rag_passages"
                     " WHERE rag_passages MATCH ?1 ORDER BY s, rowid LIMIT ?2",
                     &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)limit);
    *hits = sl_calloc(limit, sizeof **hits);
    *cands = sl_calloc(limit, sizeof **cands);
    int s = SQLITE_DONE;
    while (*n < limit && (s = sqlite3_step(st)) == SQLITE_ROW) {
        hit_t *h = &(*hits)[*n];
        sl_corpus_cand_t *c = &(*cands)[*n];
        const char *col[4];
        for (int i = 0; i < 4; i++) {
            col[i] = (const char *)sqlite3_column_text(st, i == 3 ? 5 : i + 1);
            col[i] = col[i] ? col[i] : "";
        }
        h->path = sl_strdup(col[0]);
        h->title = sl_strdup(col[1]);
        h->body = sl_strdup(col[2]);
        h->snippet = sl_strdup(col[3]);
        c->id = sqlite3_column_int64(st, 0);
        c->bm25 = sqlite3_column_double(st, 4);
        c->index = *n;
        /* Coverage over title and body together, as the match saw them. */
        double ct = sl_corpus_coverage(t, h->title, strlen(h->title));
        double cb = sl_corpus_coverage(t, h->body, strlen(h->body));
        c->coverage = ct > cb ? ct : cb;
        if (ct > 0 && cb > 0) {
            sl_buf_t both;
            sl_buf_init(&both);
            sl_buf_printf(&both, "%s\n%s", h->title, h->body);
            c->coverage = sl_corpus_coverage(t, both.data, both.len);
            sl_buf_dispose(&both);
        }
        (*n)++;
    }
    if (*n < limit && s != SQLITE_DONE)
        rc = db_fail(db, err, "search");
    sqlite3_finalize(st);
    return rc;
}

static json_t *source_json(const hit_t *h, const sl_corpus_cand_t *c)
{
    return json_pack("{s:I, s:s, s:s, s:f, s:s, s:s}", "id", (json_int_t)c->id, "title", h->title,
                     "path", h->path, "score", round(c->score * 10000.0) / 10000.0, "snippet",
                     h->snippet, "text", h->body);
}

int sl_corpus_search(sqlite3 *db, const char *question, unsigned top_k, json_t *res, sl_buf_t *err)
{
    double t0 = sl_now_ms();
    sl_corpus_terms_t terms;
    sl_corpus_terms(question, &terms);
    sl_buf_t match;
    sl_buf_init(&match);
    sl_corpus_fts_query(&terms, &match);
    unsigned limit = top_k * 5 < 20 ? 20 : top_k * 5;
    hit_t *hits = NULL;
    sl_corpus_cand_t *cands = NULL;
    size_t n = 0;
    int rc = 0;
    if (terms.n)
        rc = retrieve(db, match.data, limit, &terms, &hits, &cands, &n, err);
    double t1 = sl_now_ms();
    sl_corpus_rerank(cands, n);
    json_t *sources = json_array();
    for (size_t i = 0; !rc && i < n && i < top_k; i++)
        json_array_append_new(sources, source_json(&hits[cands[i].index], &cands[i]));
    double t2 = sl_now_ms();
    json_object_set_new(res, "sources", sources);
    json_object_set_new(res, "retrieval_ms", json_real(t1 - t0));
    json_object_set_new(res, "rerank_ms", json_real(t2 - t1));
    for (size_t i = 0; i < n; i++) {
        sl_free(hits[i].path);
        sl_free(hits[i].title);
        sl_free(hits[i].body);
        sl_free(hits[i].snippet);
    }
    sl_free(hits);
    sl_free(cands);
    sl_buf_dispose(&match);
    return rc;
}

/* ---- answer cache ---- */

int sl_corpus_cache_get(sqlite3 *db, const char *key, int64_t now, int64_t ttl_s, char **hit,
                        sl_buf_t *err)
{
    *hit = NULL;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, "SELECT value FROM rag_cache WHERE key = ?1 AND ts > ?2", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now - ttl_s);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *hit = sl_strdup((const char *)sqlite3_column_text(st, 0));
    else if (s != SQLITE_DONE)
        rc = db_fail(db, err, "cache read");
    sqlite3_finalize(st);
    return rc;
}

int sl_corpus_cache_put(sqlite3 *db, const char *key, const char *value, int64_t now, sl_buf_t *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, "INSERT OR REPLACE INTO rag_cache(key, value, ts) VALUES(?1, ?2, ?3)", &st,
                     err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(db, err, "cache write");
    sqlite3_finalize(st);
    return rc;
}
