/* The corpus's text rules (corpus.h): passages, titles, search terms and the rerank. Pure
 * functions, so the unit tests pin them byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "store/corpus.h"

/* ---- words: what the search sees of any text ---- */

/* Latin-1 letters U+00C0..U+00FF (UTF-8 C3 80..C3 BF) folded to their ASCII base, the way
 * FTS5's unicode61 tokenizer with remove_diacritics matches them; ' ' marks × and ÷. */
static const char latin1_fold[] = "aaaaaaaceeeeiiii"
                                  "dnooooo ouuuuyts"
                                  "aaaaaaaceeeeiiii"
                                  "dnooooo ouuuuyty";

/* Length of the UTF-8 sequence starting with b, 0 for a byte that cannot start one. */
static size_t seq_len(unsigned char b)
{
    return b < 0x80 ? 1 : b < 0xC2 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF5 ? 4 : 0;
}

/* Reads one character at p (left > 0 bytes): returns the bytes consumed and writes its folded
 * form to out (*outn bytes; 0 for a separator). Punctuation and symbols of Latin-1, general
 * punctuation (U+2000..U+206F) and CJK punctuation (U+3000..U+303F) separate words like ASCII
 * punctuation; other letters of any script are kept as they are. */
static size_t fold_char(const unsigned char *p, size_t left, char out[4], size_t *outn)
{
    *outn = 0;
    unsigned char b = p[0];
    if (b < 0x80) {
        if ((b >= '0' && b <= '9') || (b >= 'a' && b <= 'z'))
            out[(*outn)++] = (char)b;
        else if (b >= 'A' && b <= 'Z')
            out[(*outn)++] = (char)(b - 'A' + 'a');
        return 1;
    }
    size_t n = seq_len(b);
    if (n == 0 || n > left)
        return 1; /* not UTF-8: a separator */
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 1;
    if (b == 0xC2)
        return n; /* U+0080..U+00BF: ¡ ¿ « » and friends */
    if (b == 0xC3) {
        char c = latin1_fold[p[1] - 0x80];
        if (c != ' ')
            out[(*outn)++] = c;
        return n;
    }
    if (b == 0xE2 && (p[1] == 0x80 || p[1] == 0x81))
        return n; /* general punctuation: “ ” — … */
    if (b == 0xE3 && p[1] == 0x80)
        return n; /* CJK punctuation: 、。 */
    memcpy(out, p, n);
    *outn = n;
    return n;
}

/* The next word of [*pos, len) folded into w (at most cap - 1 bytes, NUL-terminated; a longer
 * word is cut at a character boundary). Returns its length, 0 at the end of the text. */
static size_t next_word(const char *text, size_t len, size_t *pos, char *w, size_t cap)
{
    size_t n = 0;
    bool in = false, full = false;
    while (*pos < len) {
        char f[4];
        size_t fn;
        size_t used = fold_char((const unsigned char *)text + *pos, len - *pos, f, &fn);
        if (fn == 0 && in)
            break;
        *pos += used;
        if (fn == 0)
            continue;
        in = true;
        if (!full && n + fn < cap) {
            memcpy(w + n, f, fn);
            n += fn;
        } else {
            full = true;
        }
    }
    w[n] = '\0';
    return n;
}

static bool is_stopword(const char *w)
{
    /* English and Spanish function words, as folded (accents gone). */
    static const char *const stop[] = {
        "the",    "an",     "and",  "or",    "of",     "to",   "in",  "on",  "for",   "is",
        "are",    "was",    "were", "be",    "with",   "what", "how", "why", "when",  "where",
        "which",  "who",    "do",   "does",  "did",    "can",  "you", "it",  "this",  "that",
        "these",  "those",  "my",   "your",  "from",   "at",   "by",  "as",  "about", "me",
        "we",     "our",    "not",  "no",    "please", "tell", "el",  "la",  "los",   "las",
        "un",     "una",    "unos", "unas",  "de",     "del",  "al",  "en",  "por",   "para",
        "con",    "que",    "como", "cual",  "cuales", "es",   "son", "ser", "esta",  "estan",
        "lo",     "le",     "les",  "se",    "su",     "sus",  "mi",  "mis", "tu",    "tus",
        "yo",     "nos",    "este", "estos", "estas",  "eso",  "esa", "ese", "hay",   "donde",
        "cuando", "porque", "y",    "o",     "a",      NULL};
    for (const char *const *s = stop; *s; s++)
        if (!strcmp(*s, w))
            return true;
    return false;
}

static bool has_term(const sl_corpus_terms_t *t, const char *w)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->term[i], w))
            return true;
    return false;
}

/* Adds the question's words to out; stop words only when keep_stop. */
static void collect(const char *q, size_t len, bool keep_stop, sl_corpus_terms_t *out)
{
    char w[SL_CORPUS_TERM_MAX];
    size_t pos = 0, n;
    while (out->n < SL_CORPUS_MAX_TERMS && (n = next_word(q, len, &pos, w, sizeof w)) > 0) {
        if (n < 2 || (!keep_stop && is_stopword(w)) || has_term(out, w))
            continue;
        memcpy(out->term[out->n++], w, n + 1);
    }
}

void sl_corpus_terms(const char *question, sl_corpus_terms_t *out)
{
    size_t len = strlen(question);
    out->n = 0;
    collect(question, len, false, out);
    if (out->n == 0) /* "what is it?": the stop words are all there is to search */
        collect(question, len, true, out);
}

void sl_corpus_fts_query(const sl_corpus_terms_t *t, sl_buf_t *out)
{
    sl_buf_reset(out);
    for (size_t i = 0; i < t->n; i++) {
        /* A term holds letters and digits only, so inside quotes it is one plain string. */
        sl_buf_puts(out, i ? " OR \"" : "\"");
        sl_buf_puts(out, t->term[i]);
        sl_buf_putc(out, '"');
    }
    if (!out->data)
        sl_buf_puts(out, "");
}

double sl_corpus_coverage(const sl_corpus_terms_t *t, const char *text, size_t len)
{
    if (t->n == 0)
        return 0.0;
    bool seen[SL_CORPUS_MAX_TERMS] = {0};
    size_t found = 0, pos = 0;
    char w[SL_CORPUS_TERM_MAX];
    while (found < t->n && next_word(text, len, &pos, w, sizeof w) > 0) {
        for (size_t i = 0; i < t->n; i++) {
            if (!seen[i] && !strcmp(t->term[i], w)) {
                seen[i] = true;
                found++;
            }
        }
    }
    return (double)found / (double)t->n;
}

/* ---- rerank ---- */

static int by_score(const void *a, const void *b)
{
    const sl_corpus_cand_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->bm25 != y->bm25)
        return x->bm25 < y->bm25 ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void sl_corpus_rerank(sl_corpus_cand_t *c, size_t n)
{
    double best = 0.0;
    for (size_t i = 0; i < n; i++)
        if (-c[i].bm25 > best)
            best = -c[i].bm25;
    for (size_t i = 0; i < n; i++) {
        double rel = best > 0.0 && -c[i].bm25 > 0.0 ? -c[i].bm25 / best : 0.0;
        c[i].score = SL_CORPUS_W_COVERAGE * c[i].coverage + SL_CORPUS_W_BM25 * rel;
    }
    if (n > 1)
        qsort(c, n, sizeof *c, by_score);
}

/* ---- passages and titles ---- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Narrows [*a, *b) to its non-space bytes. */
static void trim(const char *s, size_t *a, size_t *b)
{
    while (*a < *b && is_space(s[*a]))
        (*a)++;
    while (*b > *a && is_space(s[*b - 1]))
        (*b)--;
}

/* The end of the line starting at i (the '\n' or len). */
static size_t line_end(const char *s, size_t len, size_t i)
{
    const char *nl = memchr(s + i, '\n', len - i);
    return nl ? (size_t)(nl - s) : len;
}

static bool blank(const char *s, size_t a, size_t b)
{
    trim(s, &a, &b);
    return a == b;
}

/* The next paragraph at or after *pos: [*a, *b) trimmed; false at the end. */
static bool next_para(const char *s, size_t len, size_t *pos, size_t *a, size_t *b)
{
    size_t i = *pos;
    while (i < len && blank(s, i, line_end(s, len, i)))
        i = line_end(s, len, i) + 1;
    if (i >= len) {
        *pos = len;
        return false;
    }
    *a = i;
    while (i < len && !blank(s, i, line_end(s, len, i)))
        i = line_end(s, len, i) + 1;
    *b = i < len ? i : len;
    *pos = *b;
    trim(s, a, b);
    return true;
}

/* Where to cut [a, b) so the first piece is at most target bytes: after the last sentence end
 * or line break in its second half, else at the last space, else at a character boundary. */
static size_t cut_at(const char *s, size_t a, size_t target)
{
    size_t lim = a + target;
    for (size_t i = lim; i > a + target / 2; i--) {
        char c = s[i - 1];
        if (c == '\n' || ((c == '.' || c == '?' || c == '!' || c == ';') && is_space(s[i])))
            return i;
    }
    for (size_t i = lim; i > a + target / 4; i--)
        if (is_space(s[i - 1]))
            return i;
    size_t i = lim;
    while (i > a + 1 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--; /* never inside a UTF-8 character */
    return i;
}

typedef struct chunker {
    sl_buf_t cur;
    size_t count;
    sl_corpus_passage_cb cb;
    void *ud;
} chunker_t;

static void emit(chunker_t *k, const char *p, size_t n)
{
    size_t a = 0, b = n;
    trim(p, &a, &b);
    if (a == b)
        return;
    k->cb(k->ud, p + a, b - a);
    k->count++;
}

static void flush(chunker_t *k)
{
    if (k->cur.len)
        emit(k, k->cur.data, k->cur.len);
    sl_buf_reset(&k->cur);
}

size_t sl_corpus_chunk(const char *text, size_t len, size_t target, sl_corpus_passage_cb cb,
                       void *ud)
{
    chunker_t k = {.cb = cb, .ud = ud};
    sl_buf_init(&k.cur);
    if (target < 16)
        target = 16;
    size_t pos = 0, a, b;
    while (next_para(text, len, &pos, &a, &b)) {
        if (b - a > target + target / 2) {
            flush(&k); /* a long paragraph: pieces of its own */
            while (b - a > target) {
                size_t cut = cut_at(text, a, target);
                emit(&k, text + a, cut - a);
                a = cut;
                trim(text, &a, &b);
            }
        }
        if (k.cur.len && k.cur.len + 2 + (b - a) > target)
            flush(&k);
        if (k.cur.len)
            sl_buf_puts(&k.cur, "\n\n");
        sl_buf_append(&k.cur, text + a, b - a);
    }
    flush(&k);
    sl_buf_dispose(&k.cur);
    return k.count;
}

/* "# Title" (after at most 3 spaces; 1-6 #s, then a space) → the title, else false. */
static bool heading(const char *s, size_t a, size_t b, size_t *ta, size_t *tb)
{
    size_t i = a, hashes = 0;
    while (i < b && i - a < 3 && s[i] == ' ')
        i++;
    while (i < b && s[i] == '#' && hashes < 7)
        i++, hashes++;
    if (hashes == 0 || hashes > 6 || i >= b || (s[i] != ' ' && s[i] != '\t'))
        return false;
    *ta = i;
    *tb = b;
    trim(s, ta, tb);
    while (*tb > *ta && s[*tb - 1] == '#')
        (*tb)--; /* closing #s: "## Title ##" */
    trim(s, ta, tb);
    return *tb > *ta;
}

void sl_corpus_title(const char *text, size_t len, const char *path, sl_buf_t *out)
{
    sl_buf_reset(out);
    bool fenced = false;
    for (size_t i = 0; i < len;) {
        size_t e = line_end(text, len, i), ta, tb;
        if (e - i >= 3 && (!strncmp(text + i, "```", 3) || !strncmp(text + i, "~~~", 3)))
            fenced = !fenced; /* a "# comment" in a code block is no heading */
        else if (!fenced && heading(text, i, e, &ta, &tb)) {
            sl_buf_append(out, text + ta, tb - ta);
            return;
        }
        i = e + 1;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    sl_buf_append(out, base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}
