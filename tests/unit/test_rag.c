/* Unit tests for the rag corpus (store/corpus*.c): passages at paragraph boundaries, titles,
 * query sanitizing (no user text survives as FTS5 syntax), the rerank's scores and order, and
 * the index against a real in-memory SQLite with FTS5 (sync by mtime/size, search, cache). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/alloc.h"
#include "store/corpus.h"

/* ---- chunking ---- */

typedef struct passages {
    char *p[64];
    size_t n;
} passages_t;

static void collect(void *ud, const char *p, size_t n)
{
    passages_t *ps = ud;
    assert_true(ps->n < 64);
    ps->p[ps->n] = sl_malloc(n + 1);
    memcpy(ps->p[ps->n], p, n);
    ps->p[ps->n][n] = '\0';
    ps->n++;
}

static void passages_free(passages_t *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        sl_free(ps->p[i]);
    ps->n = 0;
}

static size_t chunk(const char *text, size_t target, passages_t *ps)
{
    return sl_corpus_chunk(text, strlen(text), target, collect, ps);
}

static void test_rag_chunk_joins_short_paragraphs_up_to_the_target(void **state)
{
    (void)state;
    passages_t ps = {0};
    const char *text = "# Title\n\nfirst paragraph\nstill first\n\n  \n\nsecond one\n\n\nthird\n";
    assert_int_equal(chunk(text, 800, &ps), 1);
    assert_string_equal(ps.p[0], "# Title\n\nfirst paragraph\nstill first\n\nsecond one\n\nthird");
    passages_free(&ps);
    /* target 30: a paragraph that does not fit starts the next passage */
    assert_int_equal(chunk(text, 30, &ps), 3);
    assert_string_equal(ps.p[0], "# Title");
    assert_string_equal(ps.p[1], "first paragraph\nstill first");
    assert_string_equal(ps.p[2], "second one\n\nthird");
    passages_free(&ps);
}

static void test_rag_chunk_cuts_a_long_paragraph_at_sentences_not_inside_utf8(void **state)
{
    (void)state;
    passages_t ps = {0};
    char text[4096] = "";
    for (int i = 0; i < 40; i++) /* 40 sentences of 25 bytes: 1000 bytes, one paragraph */
        strcat(text, "Él riega los tomates hoy. ");
    size_t n = chunk(text, 300, &ps);
    assert_true(n >= 4);
    for (size_t i = 0; i < ps.n; i++) {
        size_t len = strlen(ps.p[i]);
        assert_true(len <= 300);
        assert_true(ps.p[i][len - 1] == '.'); /* cut after a sentence */
        assert_true(strncmp(ps.p[i], "Él", 3) == 0);
    }
    passages_free(&ps);
    /* one huge word: a hard cut, but never inside a character */
    char word[2000] = "";
    for (int i = 0; i < 600; i++)
        strcat(word, "é");
    n = chunk(word, 301, &ps);
    for (size_t i = 0; i < ps.n; i++)
        assert_int_equal(strlen(ps.p[i]) % 2, 0);
    passages_free(&ps);
    assert_int_equal(chunk("  \n\n \n", 800, &ps), 0);
}

static void test_rag_title_is_the_first_heading_else_the_file_name(void **state)
{
    (void)state;
    sl_buf_t t;
    sl_buf_init(&t);
    const char *md = "intro line\n```\n# not a heading\n```\n## Cómo instalar ##\n# Later\n";
    sl_corpus_title(md, strlen(md), "a/b.md", &t);
    assert_string_equal(t.data, "Cómo instalar");
    sl_corpus_title("#hashtag\nplain", 14, "dir/notes.txt", &t);
    assert_string_equal(t.data, "notes");
    sl_corpus_title("", 0, "README", &t);
    assert_string_equal(t.data, "README");
    sl_buf_dispose(&t);
}

/* ---- query sanitizing ---- */

static void test_rag_terms_fold_case_and_accents_and_drop_stop_words(void **state)
{
    (void)state;
    sl_corpus_terms_t t;
    sl_corpus_terms("¿Cómo RIEGO los tomates? ¡Riego!", &t);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.term[0], "riego");
    assert_string_equal(t.term[1], "tomates");
    sl_corpus_terms("what is it?", &t); /* only stop words: they are searched */
    assert_int_equal(t.n, 3);
    assert_string_equal(t.term[0], "what");
}

static void test_rag_fts_syntax_in_questions_never_reaches_fts5(void **state)
{
    (void)state;
    static const char *const evil[] = {
        "\"unbalanced", "krill*",    "NEAR(a b, 3)",   "-penguins", "title:x", "a AND OR NOT b",
        "^start",       "(x) + {y}", "col : \"q\" * ", "\"\"\"",    "***",     NULL,
    };
    sl_buf_t q;
    sl_buf_init(&q);
    for (const char *const *e = evil; *e; e++) {
        sl_corpus_terms_t t;
        sl_corpus_terms(*e, &t);
        sl_corpus_fts_query(&t, &q);
        /* Only quoted runs of [a-z0-9] (and UTF-8 letters) joined by OR. */
        for (size_t i = 0; i < t.n; i++)
            for (const char *p = t.term[i]; *p; p++)
                assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                            (unsigned char)*p >= 0x80);
        size_t quotes = 0;
        for (const char *p = q.data; *p; p++)
            quotes += *p == '"';
        assert_int_equal(quotes, 2 * t.n);
    }
    sl_corpus_terms_t t;
    sl_corpus_terms("NEAR(penguins krill*, 2) -x", &t);
    sl_corpus_fts_query(&t, &q);
    assert_string_equal(q.data, "\"near\" OR \"penguins\" OR \"krill\"");
    sl_corpus_terms("?!", &t);
    sl_corpus_fts_query(&t, &q);
    assert_string_equal(q.data, "");
    sl_buf_dispose(&q);
}

static void test_rag_coverage_counts_whole_words(void **state)
{
    (void)state;
    sl_corpus_terms_t t;
    sl_corpus_terms("riego tomates penguins", &t);
    const char *text = "Los TOMATES necesitan riégo; penguinsx no cuenta.";
    assert_true(sl_corpus_coverage(&t, text, strlen(text)) > 0.66);
    assert_true(sl_corpus_coverage(&t, text, strlen(text)) < 0.67);
    t.n = 0;
    assert_true(sl_corpus_coverage(&t, text, strlen(text)) == 0.0);
}

/* ---- rerank ---- */

static void test_rag_rerank_scores_coverage_and_bm25_deterministically(void **state)
{
    (void)state;
    sl_corpus_cand_t c[] = {
        {.id = 1, .bm25 = -4.0, .coverage = 0.5, .index = 0},
        {.id = 2, .bm25 = -2.0, .coverage = 1.0, .index = 1},
        {.id = 3, .bm25 = -4.0, .coverage = 0.5, .index = 2}, /* ties with 1: lower id first */
        {.id = 4, .bm25 = 0.5, .coverage = 0.0, .index = 3},  /* positive bm25 counts as 0 */
    };
    sl_corpus_rerank(c, 4);
    assert_int_equal(c[0].id, 2); /* 0.6 * 1 + 0.4 * 0.5 = 0.8 */
    assert_true(c[0].score > 0.7999 && c[0].score < 0.8001);
    assert_int_equal(c[1].id, 1); /* 0.6 * 0.5 + 0.4 * 1 = 0.7 */
    assert_true(c[1].score > 0.6999 && c[1].score < 0.7001);
    assert_int_equal(c[2].id, 3);
    assert_int_equal(c[3].id, 4);
    assert_true(c[3].score == 0.0);
    sl_corpus_rerank(c, 0); /* nothing to do */
}

/* ---- the index, on a real SQLite ---- */

typedef struct fixture {
    char dir[64];
    sqlite3 *db;
} fixture_t;

static void put_file(const fixture_t *f, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int setup(void **state)
{
    fixture_t *f = sl_calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sluice-rag-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(sqlite3_open(":memory:", &f->db), SQLITE_OK);
    sl_buf_t err;
    sl_buf_init(&err);
    assert_int_equal(sl_corpus_open(f->db, &err), 0);
    sl_buf_dispose(&err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    sqlite3_close(f->db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    sl_free(f);
    return 0;
}

static json_t *search(fixture_t *f, const char *q, unsigned k)
{
    json_t *res = json_object();
    sl_buf_t err;
    sl_buf_init(&err);
    assert_int_equal(sl_corpus_search(f->db, q, k, res, &err), 0);
    sl_buf_dispose(&err);
    return res;
}

static const char *top_path(json_t *res)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(res, "sources"), 0), "path"));
}

static void test_rag_index_sync_search_and_reindex_by_mtime(void **state)
{
    fixture_t *f = *state;
    sl_buf_t err;
    sl_buf_init(&err);
    put_file(f, "penguins.md", "# Penguins\n\nPenguins eat krill in Antarctica.\n");
    put_file(f, "tomates.txt", "Riego de tomates: dos veces por semana.\n");
    put_file(f, "skip.json", "{\"penguins\": 1}");
    assert_int_equal(sl_corpus_sync(f->db, f->dir, &err), 0);
    json_t *res = search(f, "what do penguins eat?", 4);
    assert_int_equal(json_array_size(json_object_get(res, "sources")), 1);
    assert_string_equal(top_path(res), "penguins.md");
    json_t *s0 = json_array_get(json_object_get(res, "sources"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "title")), "Penguins");
    json_decref(res);
    res = search(f, "¿Cuándo RIÉGO los tomates? \"NEAR( * -", 4);
    assert_string_equal(top_path(res), "tomates.txt");
    json_decref(res);
    res = search(f, "zebras", 4);
    assert_int_equal(json_array_size(json_object_get(res, "sources")), 0);
    json_decref(res);
    /* Latin-1 bytes are not UTF-8: indexed with U+FFFD, so the passage still becomes JSON */
    put_file(f, "latin1.txt", "caf\xe9 walrus\n");
    assert_int_equal(sl_corpus_sync(f->db, f->dir, &err), 0);
    res = search(f, "walrus", 4);
    assert_string_equal(top_path(res), "latin1.txt");
    const char *text = json_string_value(
        json_object_get(json_array_get(json_object_get(res, "sources"), 0), "text"));
    assert_string_equal(text, "caf\xef\xbf\xbd walrus");
    json_decref(res);

    /* a changed file (size differs) is indexed again; a removed one leaves the index */
    put_file(f, "penguins.md", "# Penguins\n\nPenguins now eat zebras, apparently.\n");
    char gone[128];
    snprintf(gone, sizeof gone, "%s/tomates.txt", f->dir);
    assert_int_equal(unlink(gone), 0);
    assert_int_equal(sl_corpus_sync(f->db, f->dir, &err), 0);
    res = search(f, "zebras apparently", 4);
    assert_string_equal(top_path(res), "penguins.md");
    json_decref(res);
    res = search(f, "tomates", 4);
    assert_int_equal(json_array_size(json_object_get(res, "sources")), 0);
    json_decref(res);
    sl_buf_dispose(&err);
}

static void test_rag_cache_answers_within_the_ttl_and_sync_clears_it(void **state)
{
    fixture_t *f = *state;
    sl_buf_t err;
    sl_buf_init(&err);
    char *hit = NULL;
    assert_int_equal(sl_corpus_cache_put(f->db, "k", "{\"answer\":\"a\"}", 1000, &err), 0);
    assert_int_equal(sl_corpus_cache_get(f->db, "k", 1010, 60, &hit, &err), 0);
    assert_string_equal(hit, "{\"answer\":\"a\"}");
    sl_free(hit);
    assert_int_equal(sl_corpus_cache_get(f->db, "k", 1100, 60, &hit, &err), 0);
    assert_null(hit); /* expired */
    put_file(f, "new.md", "# New\n\nfresh text\n");
    assert_int_equal(sl_corpus_sync(f->db, f->dir, &err), 0);
    assert_int_equal(sl_corpus_cache_get(f->db, "k", 1010, 60, &hit, &err), 0);
    assert_null(hit); /* the corpus changed: cached answers went */
    assert_int_not_equal(sl_corpus_sync(f->db, "/nonexistent/rag/dir", &err), 0);
    sl_buf_dispose(&err);
}

int main(void)
{
    json_set_alloc_funcs(sl_malloc_fn, sl_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rag_chunk_joins_short_paragraphs_up_to_the_target),
        cmocka_unit_test(test_rag_chunk_cuts_a_long_paragraph_at_sentences_not_inside_utf8),
        cmocka_unit_test(test_rag_title_is_the_first_heading_else_the_file_name),
        cmocka_unit_test(test_rag_terms_fold_case_and_accents_and_drop_stop_words),
        cmocka_unit_test(test_rag_fts_syntax_in_questions_never_reaches_fts5),
        cmocka_unit_test(test_rag_coverage_counts_whole_words),
        cmocka_unit_test(test_rag_rerank_scores_coverage_and_bm25_deterministically),
        cmocka_unit_test_setup_teardown(test_rag_index_sync_search_and_reindex_by_mtime, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rag_cache_answers_within_the_ttl_and_sync_clears_it,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
