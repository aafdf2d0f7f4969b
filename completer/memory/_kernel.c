/* completer.memory._kernel: the project memory's per-character loops, compiled.

   One type, Memory, holds what the memory has read of the user's project and predicts from it:
   - an online character n-gram, orders 0..K (K <= 24), interpolated absolute discounting with the
     online Kneser-Ney rule (an order's count is bumped only where the next longer context saw the
     character for the first time); contexts live in fixed-size hashed buckets, so memory is
     bounded whatever the project's size;
   - six match models: an earlier occurrence of the model's key predicts the character that
     followed it, with a confidence learnt per match length from the text read. The keys: the last
     6 and the last 20 characters (short and long); the identifier typed so far (begun where an
     identifier begins), which completes names seen once; the line so far; the previous identifier
     and the previous two, with what separates them (1..GAP characters, no newline) and the
     identifier being typed (word models). Each key remembers its NCAND most recent occurrences; the
     models follow the one whose context agrees with the current one the furthest back (the most
     recent on a tie: "return sess" follows an earlier "return session_setting", not the latest
     "session."), except the short model, which follows the most recent (for bits, recency beats
     length there);
   - the mixer: p(c) proportional to exp(sum_j w[s][j] * L_j(c)) over the inputs L_j = log-
     probabilities of the network, the n-gram and the six match models; each weight is the sum of
     one row of three tables, chosen by (the match length, the highest n-gram order whose context
     was seen, whether the match agrees with the network), (the class of the last character, in
     indentation or not) and (the n-gram's largest probability); the weights learn online on the
     log loss of real characters.

   Prediction is stateless: it takes the context (the last <= CTX character ids, most recent
   last), so a decoder may extend it with generated characters and nothing is counted. Only
   `learn` (real text) changes the tables. Character ids are the model's vocabulary ids (< 65535).
   Buffers come through the buffer protocol (numpy arrays), so no numpy headers are needed.
   Threads: `learn` and `score` run without the GIL (a workspace read on a background thread never
   stalls the frontend's Python), and every method holds the object's mutex while it touches the
   tables, so a prediction waits at most for the chunk being learnt.

   Why one file of ~1,000 lines: it is one C extension whose models share the Memory struct, the
   hashing and the static inline helpers the compiler inlines across them; the Python-facing
   methods and their argument and state checks make up half of it. Split it into translation
   units only with a header for the struct and the helpers. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MAXORD 24
#define CTX 64          /* context characters a prediction looks at (match verification cap) */
#define NIN 8           /* mixer inputs: network, n-gram, the six match models */
#define NMATCH 6        /* the match models: short, long, identifier, line, word, two words */
#define NLEN 5          /* match-length classes */
#define NORD 4          /* highest-order classes */
#define NSEL0 (NLEN * NORD * 2)   /* weight sets by match length, order seen, agreement */
#define NSEL1 16                   /* by the class of the last character, in indentation or not */
#define NSEL2 8                    /* by the n-gram's confidence (its largest probability) */
#define NSETS (NSEL0 + NSEL1 + NSEL2)  /* a weight is the sum of one row of each */
#define LOW_SLOTS 62    /* orders 1-2: many followers per context (a 256-byte bucket) */
#define HIGH_SLOTS 14   /* orders >= 3: few followers (a 64-byte bucket) */
#define MBUCKETS 16     /* match confidence classes by length */
#define NCAND 8         /* occurrences remembered per match key (a power of two) */
#define MAXW 1e6f       /* a mixer weight beyond this is no learnt weight (z would overflow float) */

typedef struct {
    uint32_t *b;        /* buckets of (2 + slots) words: tag, total, then (sym + 1) << 16 | count */
    uint64_t mask;      /* number of buckets - 1 (a power of two) */
    int slots;
} Table;

typedef struct {
    PyObject_HEAD
    int V, unk, K;
    float D;                    /* absolute discount */
    double *uni;                /* (V,) order-0 counts */
    double uni_total, uni_types;
    Table low, high;
    uint16_t *hist;             /* ring of the characters read */
    uint64_t hmask, n;          /* ring size - 1; characters read so far */
    int mmin[NMATCH];           /* the identifier model's: the shortest identifier prefix it completes */
    uint32_t *mtab[NMATCH];     /* hash of the last mmin chars (identifier: of the identifier so far)
                                   -> NCAND positions of the follower + 1, the most recent first */
    uint64_t mmask;
    double mhit[NMATCH][MBUCKETS], mtry[NMATCH][MBUCKETS];
    uint8_t *cls;               /* (V,) character classes: 0 other, 1 letter, 2 digit, 3 _, 4 space,
                                   5 newline, 6 opening bracket, 7 closing bracket or quote */
    float w[NSETS][NIN];
    float lr;
    pthread_mutex_t lock;       /* the tables: one reader (learn) or predictor at a time */
    int locked_ok;
    int ready;                  /* __init__ succeeded: every table is allocated (methods check it) */
} Memory;

#define IDENT(m, c) ((m)->cls[c] >= 1 && (m)->cls[c] <= 3)

static uint64_t mix64(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL; h ^= h >> 33;
    return h;
}

/* hashes[k] for k = 1..K of the contexts ending at ctx[L-1]; returns the highest order available */
static int context_hashes(const int32_t *ctx, int L, int K, uint64_t *hashes) {
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    int k;
    for (k = 1; k <= K && k <= L; k++) {
        h = (h + (uint64_t)(uint32_t)ctx[L - k] + 1) * 0x100000001b3ULL;
        hashes[k] = mix64(h ^ ((uint64_t)k << 56));
    }
    return k - 1;
}

static uint32_t *bucket(Table *t, uint64_t h, int create) {
    uint32_t tag = (uint32_t)(h >> 32) | 1u;
    uint64_t i = (h & t->mask) & ~1ULL;
    size_t stride = 2 + (size_t)t->slots;
    uint32_t *b0 = t->b + i * stride, *b1 = b0 + stride;
    if (b0[0] == tag) return b0;
    if (b1[0] == tag) return b1;
    if (!create) return NULL;
    uint32_t *v = b0[1] <= b1[1] ? b0 : b1;   /* replace the less used of the two */
    memset(v, 0, stride * sizeof(uint32_t));
    v[0] = tag;
    return v;
}

static Table *table_for(Memory *m, int k) { return k <= 2 ? &m->low : &m->high; }

/* the buckets of orders 1..top asked for at once (see match_slots) */
static void prefetch_buckets(Memory *m, const uint64_t *hashes, int top) {
    for (int k = 1; k <= top; k++) {
        Table *t = table_for(m, k);
        const uint32_t *b = t->b + ((hashes[k] & t->mask) & ~1ULL) * (2 + (size_t)t->slots);
        __builtin_prefetch(b);
        __builtin_prefetch(b + 2 + t->slots);
    }
}

/* count y after the context: returns 1 if order k saw y for the first time */
static int bump(Table *t, uint32_t *b, int y) {
    uint32_t *s = b + 2, key = (uint32_t)(y + 1) << 16;
    int i, empty = -1, least = 0;
    for (i = 0; i < t->slots; i++) {
        if (s[i] == 0) { if (empty < 0) empty = i; continue; }
        if ((s[i] & 0xffff0000u) == key) {
            s[i]++; b[1]++;
            if ((s[i] & 0xffffu) == 0xffffu) {  /* halve every count before one overflows */
                uint32_t total = 0;
                for (int j = 0; j < t->slots; j++) if (s[j]) {
                    uint32_t c = (s[j] & 0xffffu) >> 1; if (!c) c = 1;
                    s[j] = (s[j] & 0xffff0000u) | c; total += c;
                }
                b[1] = total;
            }
            return 0;
        }
        if ((s[i] & 0xffffu) < (s[least] & 0xffffu) || s[least] == 0) least = i;
    }
    if (empty < 0) { b[1] -= s[least] & 0xffffu; empty = least; }  /* evict the rarest follower */
    s[empty] = key | 1u; b[1]++;
    return 1;
}

/* the n-gram's distribution after ctx into p (V,); returns the highest order whose context was seen.
   Interpolation p_k = g_k p_(k-1) + a_k unrolled from the top order down, so that each order costs
   its followers, not a pass over the vocabulary: p = sum_k (prod_(i>k) g_i) a_k + (prod g) p_0. */
static int ngram_predict(Memory *m, const int32_t *ctx, int L, double *p) {
    uint64_t hashes[MAXORD + 1];
    uint32_t *found[MAXORD + 1];
    int V = m->V, top = context_hashes(ctx, L, m->K, hashes), seen = 0;
    double D = m->D;
    prefetch_buckets(m, hashes, top);
    for (int k = 1; k <= top; k++) {
        uint32_t *b = bucket(table_for(m, k), hashes[k], 0);
        if (!b || !b[1]) break;   /* longer contexts were seen after this one, so none is */
        found[k] = b;
        seen = k;
    }
    double G = 1.0;               /* the product of the interpolation weights above this order */
    for (int c = 0; c < V; c++) p[c] = 0.0;
    for (int k = seen; k >= 1; k--) {
        Table *t = table_for(m, k);
        uint32_t *b = found[k], *s = b + 2;
        double N = b[1], types = 0;
        for (int i = 0; i < t->slots; i++) if (s[i]) {
            double cnt = s[i] & 0xffffu;
            int c = (int)(s[i] >> 16) - 1;
            types++;
            if (c >= 0 && c < V && cnt > D) p[c] += G * (cnt - D) / N;   /* (load checks symbols too) */
        }
        G *= D * types / N;
    }
    double u = 1.0 / V;
    if (m->uni_total > 0) {
        double g = D * m->uni_types / m->uni_total;
        for (int c = 0; c < V; c++) p[c] += G * (g * u + (m->uni[c] > D ? m->uni[c] - D : 0.0) / m->uni_total);
    } else {
        for (int c = 0; c < V; c++) p[c] += G * u;
    }
    return seen;
}

/* count y after the context whose hashes (orders 1..top) are given */
static void ngram_learn(Memory *m, const uint64_t *hashes, int top, int y) {
    for (int k = top; k >= 1; k--) {
        Table *t = table_for(m, k);
        if (!bump(t, bucket(t, hashes[k], 1), y)) return;
    }
    if (m->uni[y] == 0) m->uni_types++;
    m->uni[y]++; m->uni_total++;
}

static uint64_t match_key(const int32_t *ctx, int L, int len) {
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)len;
    for (int j = L - len; j < L; j++) h = (h ^ (uint64_t)(uint32_t)(ctx[j] + 1)) * 0x100000001b3ULL;
    return mix64(h);
}

/* the match model j after ctx: its predicted character (or -1) and the verified match length */
/* the length of the identifier that ends ctx (0 if none, or if it runs past the context) */
static int ident_run(Memory *m, const int32_t *ctx, int L) {
    int r = 0;
    while (r < L && IDENT(m, ctx[L - 1 - r])) r++;
    return r == L && L == CTX ? 0 : r;
}

/* the current line so far with the newline before it (0 if that newline is not in the context) */
static int line_run(Memory *m, const int32_t *ctx, int L) {
    for (int r = 1; r <= L; r++) if (m->cls[ctx[L - r]] == 5) return r;
    return 0;
}

/* the last `words` identifiers before the one being typed, the gaps between them (1..GAP characters,
   no newline) and the identifier typed so far (possibly empty): its length, 0 if there is none */
#define GAP 8
static int word_run(Memory *m, const int32_t *ctx, int L, int words) {
    int r = 0;
    while (r < L && IDENT(m, ctx[L - 1 - r])) r++;
    for (int w = 0; w < words; w++) {
        int g = 0, p = 0;
        while (r + g < L && g <= GAP && !IDENT(m, ctx[L - 1 - r - g]) && m->cls[ctx[L - 1 - r - g]] != 5) g++;
        if (g == 0 || g > GAP) return 0;
        while (r + g + p < L && IDENT(m, ctx[L - 1 - r - g - p])) p++;
        if (p == 0 || (r + g + p == L && L == CTX)) return 0;   /* the word may run past the context */
        r += g + p;
    }
    return r;
}

/* the key a match model files the context under, and its length; 0 if the context has none */
static int model_key(Memory *m, int j, const int32_t *ctx, int L, uint64_t *key) {
    int mn = j < 2 ? m->mmin[j] : j == 2 ? ident_run(m, ctx, L) : j == 3 ? line_run(m, ctx, L) : word_run(m, ctx, L, j - 3);
    if (L < mn || (j == 2 && mn < m->mmin[2]) || (j >= 3 && mn == 0)) return 0;
    *key = match_key(ctx, L, mn) ^ (uint64_t)j;
    return mn;
}

/* how far back the context before the occurrence at P (a position + 1) agrees with ctx, or -1 if
   it is no occurrence of the model's key (a hash collision, a seam in the history, overwritten) */
static int verify(Memory *m, int j, int mn, uint32_t P, const uint16_t *c16, int L) {
    if (!P) return -1;
    uint64_t pos = P - 1, oldest = m->n > m->hmask + 1 ? m->n - (m->hmask + 1) : 0;
    if (pos >= m->n || pos < oldest) return -1;
    int lim = L < CTX ? L : CTX, k = 0;
    if ((uint64_t)lim > pos - oldest) lim = (int)(pos - oldest);
    /* four characters at a time while the ring does not wrap (the candidates of a key mostly agree
       far back: this loop is most of the cost of reading), then one at a time */
    while (k + 4 <= lim) {
        uint64_t a = (pos - 4 - k) & m->hmask, x, y;
        if (a + 4 > m->hmask + 1) break;
        memcpy(&x, m->hist + a, 8); memcpy(&y, c16 + L - 4 - k, 8);
        if (x != y) break;
        k += 4;
    }
    while (k < lim && m->hist[(pos - 1 - k) & m->hmask] == c16[L - 1 - k]) k++;
    if (k < mn) return -1;
    /* the identifier and word models: their key begun where an identifier begins */
    if ((j == 2 || j >= 4) && pos >= oldest + (uint64_t)mn + 1 && IDENT(m, m->hist[(pos - 1 - mn) & m->hmask])) return -1;
    return k;
}

/* the match model j after ctx: its predicted character (or -1) and its match length (the
   identifier model's: the identifier prefix's) */
static const int tries[NMATCH] = {1, NCAND, NCAND, NCAND, NCAND, NCAND};   /* occurrences each model weighs */

/* every match model's key length (mn, 0: none) and slot (at) after ctx. The tables and the history
   are read at random places: what they will be asked for is prefetched first, so that the cache
   misses overlap instead of following one another (most of the cost of reading) */
static void match_slots(Memory *m, const int32_t *ctx, int L, int *mn, uint64_t *at) {
    for (int j = 0; j < NMATCH; j++) {
        uint64_t key;
        mn[j] = model_key(m, j, ctx, L, &key);
        at[j] = (key & m->mmask) & ~(uint64_t)(NCAND - 1);
        if (mn[j]) __builtin_prefetch(m->mtab[j] + at[j]);
    }
    for (int j = 0; j < NMATCH; j++) if (mn[j]) {
        const uint32_t *slot = m->mtab[j] + at[j];
        for (int i = 0; i < tries[j]; i++) if (slot[i] > 1) __builtin_prefetch(m->hist + ((slot[i] - 2) & m->hmask));
    }
}

/* gen: how many of ctx's last characters a decoder generated. An occurrence that agrees with
   them only (k <= gen) is never followed: that agreement is the model's own doing (it chose those
   characters, often because this very occurrence suggested them), not evidence, and following it
   is how a continuation copies text after itself. Reading real text passes 0. */
static int match_predict(Memory *m, int j, int mn, uint64_t at, const uint16_t *c16, int L, int gen, int *len) {
    *len = 0;
    if (!mn) return -1;
    uint32_t *slot = m->mtab[j] + at, P = 0;
    int k = -1;
    for (int i = 0; i < tries[j]; i++) {
        int ki = verify(m, j, mn, slot[i], c16, L);
        if (ki > k && ki > gen) { k = ki; P = slot[i]; }
    }
    if (k < 0) return -1;
    *len = j == 2 ? mn : k;
    return m->hist[(P - 1) & m->hmask];
}

static int len_bucket(int len) { int b = len / 4; return b < MBUCKETS ? b : MBUCKETS - 1; }

static double match_conf(Memory *m, int j, int len) {
    int b = len_bucket(len);
    return (m->mhit[j][b] + 0.5) / (m->mtry[j][b] + 1.0);
}

/* the context as the history holds it (ids < 65535), for verify */
static void narrow(const int32_t *ctx, int L, uint16_t *c16) { for (int i = 0; i < L; i++) c16[i] = (uint16_t)ctx[i]; }

static void learn_one(Memory *m, const int32_t *ctx, int L, int y) {
    uint16_t c16[CTX];
    int mn[NMATCH];
    uint64_t at[NMATCH], hashes[MAXORD + 1];
    int top = context_hashes(ctx, L, m->K, hashes);
    prefetch_buckets(m, hashes, top);      /* the n-gram's buckets come in while the matches work */
    narrow(ctx, L, c16);
    match_slots(m, ctx, L, mn, at);
    for (int j = 0; j < NMATCH; j++) {   /* the match models' confidence learns from real text */
        int len, pred = match_predict(m, j, mn[j], at[j], c16, L, 0, &len);
        if (pred >= 0) { int b = len_bucket(len); m->mtry[j][b]++; m->mhit[j][b] += pred == y; }
        if (mn[j]) {   /* the key's occurrences shift by one, this one first */
            uint32_t *slot = m->mtab[j] + at[j];
            memmove(slot + 1, slot, (NCAND - 1) * sizeof(uint32_t));
            slot[0] = (uint32_t)(m->n + 1);
        }
    }
    ngram_learn(m, hashes, top, y);
    m->hist[m->n & m->hmask] = (uint16_t)y;
    m->n++;
}

/* Mixing: inputs (NIN, V) float32 rows filled here; out (V,) the mixture's log-probabilities */
static int mix(Memory *m, const int32_t *ctx, int L, int gen, const float *net, float *in, float *out, double *p) {
    int V = m->V, best = 0;
    for (int c = 1; c < V; c++) if (net[c] > net[best]) best = c;
    /* the network's row normalised here, so that logits and log-probabilities mix the same */
    double nsum = 0;
    for (int c = 0; c < V; c++) if (!isinf(net[c])) nsum += exp((double)net[c] - net[best]);
    float nlse = net[best] + (float)log(nsum);
    for (int c = 0; c < V; c++) in[c] = net[c] - nlse;
    int seen = ngram_predict(m, ctx, L, p);
    for (int c = 0; c < V; c++) in[V + c] = logf(p[c] > 1e-30 ? (float)p[c] : 1e-30f);
    int mlen = 0, mpred = -1;
    uint16_t c16[CTX];
    int mn[NMATCH];
    uint64_t at[NMATCH];
    narrow(ctx, L, c16);
    match_slots(m, ctx, L, mn, at);
    for (int j = 0; j < NMATCH; j++) {
        int len, pred = match_predict(m, j, mn[j], at[j], c16, L, gen, &len);
        float *row = in + (2 + j) * V;
        if (pred < 0 || pred >= V) { for (int c = 0; c < V; c++) row[c] = 0; continue; }
        double conf = match_conf(m, j, len);
        float lo = (float)log((1 - conf) / (V - 1)), hi = (float)log(conf);
        for (int c = 0; c < V; c++) row[c] = lo;
        row[pred] = hi;
        if ((j == 0 || j == 1 || j == 3) && len > mlen)   /* the weight sets' match length */ { mlen = len; mpred = pred; }
    }
    int lb = mlen == 0 ? 0 : mlen < 12 ? 1 : mlen < 20 ? 2 : mlen < 32 ? 3 : 4;
    int ob = seen <= 2 ? 0 : seen <= 5 ? 1 : seen <= 10 ? 2 : 3;
    int s0 = (lb * NORD + ob) * 2 + (mpred == best);
    int last = L ? m->cls[ctx[L - 1]] : 5, indent = 1;
    for (int k = L - 1; k >= 0 && ctx[k] >= 0 && m->cls[ctx[k]] != 5; k--) if (m->cls[ctx[k]] != 4) { indent = 0; break; }
    int s1 = NSEL0 + last * 2 + indent;
    double pmax = 0;
    for (int c = 0; c < V; c++) if (p[c] > pmax) pmax = p[c];
    int s2 = NSEL0 + NSEL1 + (pmax < 0.2 ? 0 : pmax < 0.4 ? 1 : pmax < 0.6 ? 2 : pmax < 0.8 ? 3 : pmax < 0.9 ? 4 :
                              pmax < 0.95 ? 5 : pmax < 0.99 ? 6 : 7);
    int s = s0 | s1 << 8 | s2 << 16;
    float w[NIN], zmax = -INFINITY;
    for (int j = 0; j < NIN; j++) w[j] = m->w[s0][j] + m->w[s1][j] + m->w[s2][j];
    for (int c = 0; c < V; c++) {
        float z;
        if (isinf(net[c]) && net[c] < 0) z = -INFINITY;   /* the network's exclusions stand (UNK) */
        else { z = 0; for (int j = 0; j < NIN; j++) z += w[j] * in[j * V + c]; }
        out[c] = z;
        if (z > zmax) zmax = z;
    }
    float sum = 0;
    for (int c = 0; c < V; c++) sum += expf(out[c] - zmax);
    float lse = zmax + logf(sum);
    for (int c = 0; c < V; c++) out[c] -= lse;
    return s;
}

static void mixer_update(Memory *m, int s, const float *in, const float *out, int y) {
    int V = m->V;
    double e[NIN] = {0};                          /* the inputs' expectations under the mixture */
    for (int c = 0; c < V; c++) {
        if (isinf(out[c])) continue;
        double pc = exp((double)out[c]);
        for (int j = 0; j < NIN; j++) e[j] += pc * in[j * V + c];
    }
    for (int j = 0; j < NIN; j++) {
        float g = (float)(e[j] - in[j * V + y]);  /* d(-log p(y)) / d w_j, for each table's row */
        m->w[s & 0xff][j] -= m->lr * g;
        m->w[(s >> 8) & 0xff][j] -= m->lr * g;
        m->w[s >> 16][j] -= m->lr * g;
    }
}

/* ---- Python glue --------------------------------------------------------------------------- */
/* One file (over the project's ~400-line guideline): the per-character loops above are static
   functions the compiler inlines into learn/mix/score; the glue below checks every argument and
   every loaded state before the loops may index with it (issue 23), so both halves stay together. */
/* take the tables' mutex, letting other Python threads run while waiting for it */
static void lock(Memory *m) {
    if (pthread_mutex_trylock(&m->lock) == 0) return;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&m->lock);
    Py_END_ALLOW_THREADS
}

static void unlock(Memory *m) { pthread_mutex_unlock(&m->lock); }
typedef struct { Py_buffer view; int ok; } Buf;

static int get_buf(PyObject *o, Buf *b, int writable, const char *fmt, const char *what) {
    b->ok = 0;
    if (PyObject_GetBuffer(o, &b->view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    b->ok = 1;
    if (strcmp(b->view.format, fmt) != 0 && !(fmt[0] == 'i' && strcmp(b->view.format, "<i") == 0)
        && !(fmt[0] == 'f' && strcmp(b->view.format, "<f") == 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous %s array", what, fmt[0] == 'i' ? "int32" : "float32");
        return -1;
    }
    if ((uintptr_t)b->view.buf % 4) {   /* read as int32/float: a view at an odd offset would be misaligned */
        PyErr_Format(PyExc_TypeError, "%s must be aligned to 4 bytes", what);
        return -1;
    }
    return 0;
}

static void rel(Buf *b) { if (b->ok) PyBuffer_Release(&b->view); }

/* a network row (V,): log-probabilities or logits, -inf where the network excludes a character;
   NaN or +inf would make every mixed probability NaN (and the mixer's weights, once learnt on) */
static int check_net(const float *net, int V, const char *what) {
    for (int c = 0; c < V; c++) if (isnan(net[c]) || (isinf(net[c]) && net[c] > 0)) {
        PyErr_Format(PyExc_ValueError, "%s holds NaN or +inf (id %d)", what, c);
        return -1;
    }
    return 0;
}

/* update's inputs (NIN, V) and mixture out (V,), as mix wrote them: out is finite or -inf, and
   wherever out is finite (the characters the mixer learns over) every input is finite */
static int check_mixed(const float *in, const float *out, int V) {
    for (int c = 0; c < V; c++) {
        if (isnan(out[c]) || (isinf(out[c]) && out[c] > 0)) goto bad;
        if (isinf(out[c])) continue;   /* excluded: mixer_update skips it (and skips y if it is) */
        for (int j = 0; j < NIN; j++) if (!isfinite(in[j * V + c])) goto bad;
    }
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "update: inputs or out are not what mix wrote (NaN or infinite)");
    return -1;
}

static int check_ids(Memory *m, const int32_t *ids, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) if (ids[i] < 0 || ids[i] >= m->V) {
        PyErr_Format(PyExc_ValueError, "character id %d outside the vocabulary (0..%d)", (int)ids[i], m->V - 1);
        return -1;
    }
    return 0;
}

/* The tables are read at random (a few dozen places per character), so with 4 KiB pages nearly every
   access misses the TLB, and in a VM a miss walks two page tables: a character cost 35 us beside the
   network's step, 5 us alone. So they live in anonymous mappings aligned to 2 MiB, which prefault()
   (below) advises as huge pages and maps, chunk by chunk (transparent huge pages in "madvise" or
   "always" mode; elsewhere the advice is ignored). Otherwise pages come when first written, as
   ordinary ones. They are zero either way. */
#define HUGE ((size_t)2 << 20)
static size_t big_size(size_t bytes) { return (bytes + HUGE - 1) & ~(HUGE - 1); }

static void *big_calloc(size_t bytes) {
    size_t n = big_size(bytes);
    uint8_t *p = mmap(NULL, n + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));                    /* keep exactly [a, a + n) */
    if (p + n + HUGE > a + n) munmap(a + n, (size_t)(p + n + HUGE - (a + n)));
    return a;
}

static void big_free(void *p, size_t bytes) { if (p) munmap(p, big_size(bytes)); }

static size_t table_bytes(const Table *t) { return (size_t)(t->mask + 1) * (2 + (size_t)t->slots) * sizeof(uint32_t); }
static size_t hist_bytes(const Memory *m) { return (size_t)(m->hmask + 1) * sizeof(uint16_t); }
static size_t mtab_bytes(const Memory *m) { return (size_t)(m->mmask + 1) * sizeof(uint32_t); }

/* free every table and forget their sizes: after a failed __init__ (so that it may be called again)
   and at dealloc */
static void release(Memory *m) {
    m->ready = 0;
    free(m->uni); free(m->cls); m->uni = NULL; m->cls = NULL;
    big_free(m->low.b, table_bytes(&m->low)); big_free(m->high.b, table_bytes(&m->high));
    m->low.b = m->high.b = NULL;
    big_free(m->hist, hist_bytes(m)); m->hist = NULL;
    for (int j = 0; j < NMATCH; j++) { big_free(m->mtab[j], mtab_bytes(m)); m->mtab[j] = NULL; }
}

static void Memory_dealloc(Memory *m) {
    if (m->locked_ok) pthread_mutex_destroy(&m->lock);
    release(m);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

/* every method but __init__ starts with this: an object made by Memory.__new__ alone (or whose
   __init__ failed) has no tables, and must raise rather than write through NULL */
static int need_ready(Memory *m) {
    if (m->ready) return 0;
    PyErr_SetString(PyExc_RuntimeError, "memory: not initialised (Memory.__init__ did not succeed)");
    return -1;
}

static int alloc_table(Table *t, int log2, int slots) {
    t->slots = slots; t->mask = ((uint64_t)1 << log2) - 1;
    t->b = big_calloc(table_bytes(t));
    return t->b ? 0 : -1;
}

static int Memory_init(Memory *m, PyObject *args, PyObject *kw) {
    static char *names[] = {"vocab_size", "unk", "classes", "order", "low_log2", "high_log2", "history_log2",
                            "match_log2", "short_match", "long_match", "ident_min", "discount", "lr", NULL};
    int V, unk, K = 16, lowl = 14, highl = 19, histl = 23, ml = 21, m0 = 6, m1 = 20, m2 = 1;
    float D = 0.7f, lr = 0.001f;
    Py_buffer idb;
    /* a second __init__ would replace tables that other threads may be reading: refused before
       anything is touched */
    if (m->ready) { PyErr_SetString(PyExc_RuntimeError, "memory: already initialised"); return -1; }
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiy*|iiiiiiiiff", names, &V, &unk, &idb, &K, &lowl, &highl,
                                     &histl, &ml, &m0, &m1, &m2, &D, &lr))
        return -1;
    if (V < 2 || V > 65535 || unk < 0 || unk >= V || K < 1 || K > MAXORD || lowl < 2 || lowl > 28 ||
        highl < 2 || highl > 30 || histl < 8 || histl > 31 || ml < 8 || ml > 30 || m0 < 1 || m0 > CTX ||
        m1 < 1 || m1 > CTX || m2 < 1 || m2 > CTX || !(D > 0 && D < 1) || !(lr >= 0 && lr < 1)) {
        PyBuffer_Release(&idb);
        PyErr_SetString(PyExc_ValueError, "memory: a size or setting is out of range");
        return -1;
    }
    if (idb.len != V) {
        PyBuffer_Release(&idb);
        PyErr_SetString(PyExc_ValueError, "memory: classes must hold one byte per vocabulary id");
        return -1;
    }
    for (int c = 0; c < V; c++) if (((const uint8_t *)idb.buf)[c] > 7) {
        /* the class picks a row of the mixer's weights (mix: NSEL0 + class * 2 + indent) */
        PyBuffer_Release(&idb);
        PyErr_Format(PyExc_ValueError, "memory: class %d of id %d is not 0..7", ((const uint8_t *)idb.buf)[c], c);
        return -1;
    }
    if (!m->locked_ok) {
        if (pthread_mutex_init(&m->lock, NULL) != 0) {
            PyBuffer_Release(&idb); PyErr_SetString(PyExc_OSError, "memory: no mutex"); return -1;
        }
        m->locked_ok = 1;
    }
    release(m);   /* what a failed __init__ left */
    m->V = V; m->unk = unk; m->K = K; m->D = D; m->lr = lr; m->mmin[0] = m0; m->mmin[1] = m1; m->mmin[2] = m2;
    m->n = 0; m->uni_total = m->uni_types = 0;
    memset(m->mhit, 0, sizeof m->mhit); memset(m->mtry, 0, sizeof m->mtry);
    m->cls = malloc(V);
    if (m->cls) memcpy(m->cls, idb.buf, V);
    PyBuffer_Release(&idb);
    m->uni = calloc(V, sizeof(double));
    m->hmask = ((uint64_t)1 << histl) - 1; m->hist = big_calloc(hist_bytes(m));
    m->mmask = ((uint64_t)1 << ml) - 1;
    for (int j = 0; j < NMATCH; j++) m->mtab[j] = big_calloc(mtab_bytes(m));
    int bad = !m->uni || !m->cls || !m->hist || alloc_table(&m->low, lowl, LOW_SLOTS) || alloc_table(&m->high, highl, HIGH_SLOTS);
    for (int j = 0; j < NMATCH; j++) bad |= !m->mtab[j];
    if (bad) {
        release(m);
        PyErr_NoMemory();
        return -1;
    }
    memset(m->w, 0, sizeof m->w);
    for (int s = 0; s < NSEL0; s++) { m->w[s][0] = 1.0f; m->w[s][1] = 0.3f; m->w[s][2] = 0.2f; m->w[s][3] = 0.2f; m->w[s][4] = 0.2f; m->w[s][5] = 0.2f; m->w[s][6] = 0.2f; m->w[s][7] = 0.2f; }
    m->ready = 1;
    return 0;
}

/* learn(ids: int32 array, start=0): count ids[start:], ids[:start] being their context only */
static PyObject *Memory_learn(Memory *m, PyObject *args) {
    PyObject *o; Py_ssize_t start = 0; Buf b;
    if (!PyArg_ParseTuple(args, "O|n", &o, &start)) return NULL;
    if (need_ready(m) < 0) return NULL;
    if (get_buf(o, &b, 0, "i", "ids") < 0) { rel(&b); return NULL; }
    const int32_t *ids = b.view.buf;
    Py_ssize_t n = b.view.len / 4;
    if (start < 0 || start > n || check_ids(m, ids, n) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "start outside ids");
        rel(&b); return NULL;
    }
    lock(m);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = start; t < n; t++) {
        Py_ssize_t lo = t - CTX > 0 ? t - CTX : 0;
        learn_one(m, ids + lo, (int)(t - lo), ids[t]);
    }
    Py_END_ALLOW_THREADS
    unlock(m);
    rel(&b);
    Py_RETURN_NONE;
}

/* mix(ctx, net, inputs, out, generated=0) -> the weight sets chosen (packed). ctx int32 (L,), net
   float32 (V,), inputs (NIN*V,), out (V,); generated: how many of ctx's last ids a decoder chose */
static PyObject *Memory_mix(Memory *m, PyObject *args) {
    PyObject *oc, *on, *oi, *oo; Buf c = {0}, nb = {0}, ib = {0}, ob = {0};
    int gen = 0;
    if (!PyArg_ParseTuple(args, "OOOO|i", &oc, &on, &oi, &oo, &gen)) return NULL;
    if (need_ready(m) < 0) return NULL;
    PyObject *res = NULL;
    if (get_buf(oc, &c, 0, "i", "ctx") < 0 || get_buf(on, &nb, 0, "f", "net") < 0 ||
        get_buf(oi, &ib, 1, "f", "inputs") < 0 || get_buf(oo, &ob, 1, "f", "out") < 0) goto done;
    if (nb.view.len != 4 * m->V || ib.view.len != 4 * NIN * m->V || ob.view.len != 4 * m->V) {
        PyErr_SetString(PyExc_ValueError, "mix: net, inputs or out has the wrong size"); goto done;
    }
    Py_ssize_t L = c.view.len / 4;
    const int32_t *ctx = c.view.buf;
    if (L > CTX) { ctx += L - CTX; L = CTX; }
    if (check_ids(m, ctx, L) < 0 || check_net(nb.view.buf, m->V, "net") < 0) goto done;
    double *p = malloc(m->V * sizeof(double));
    if (!p) { PyErr_NoMemory(); goto done; }
    lock(m);
    int s = mix(m, ctx, (int)L, gen < 0 ? 0 : gen, nb.view.buf, ib.view.buf, ob.view.buf, p);
    unlock(m);
    free(p);
    res = PyLong_FromLong(s);
done:
    rel(&c); rel(&nb); rel(&ib); rel(&ob);
    return res;
}

/* update(set, inputs, out, y): one online step of the mixer's weight set on the real character y */
static PyObject *Memory_update(Memory *m, PyObject *args) {
    int s, y; PyObject *oi, *oo; Buf ib = {0}, ob = {0};
    if (!PyArg_ParseTuple(args, "iOOi", &s, &oi, &oo, &y)) return NULL;
    if (need_ready(m) < 0) return NULL;
    PyObject *res = NULL;
    if (get_buf(oi, &ib, 0, "f", "inputs") < 0 || get_buf(oo, &ob, 0, "f", "out") < 0) goto done;
    /* a packed set as mix returns it: one row of each of the three tables */
    if (s < 0 || (s & 0xff) >= NSEL0 || ((s >> 8) & 0xff) < NSEL0 || ((s >> 8) & 0xff) >= NSEL0 + NSEL1 ||
        (s >> 16) < NSEL0 + NSEL1 || (s >> 16) >= NSETS || y < 0 || y >= m->V || ib.view.len != 4 * NIN * m->V || ob.view.len != 4 * m->V) {
        PyErr_SetString(PyExc_ValueError, "update: bad set, character or sizes"); goto done;
    }
    if (check_mixed(ib.view.buf, ob.view.buf, m->V) < 0) goto done;
    lock(m);
    if (!isinf(((float *)ob.view.buf)[y])) mixer_update(m, s, ib.view.buf, ob.view.buf, y);
    unlock(m);
    res = Py_None; Py_INCREF(res);
done:
    rel(&ib); rel(&ob);
    return res;
}

/* score(ids, start, net, stats): for t in start..n-1 mix with net[t - start] (float32 (n-start, V)),
   write stats[t - start] = (bits, top-1 hit, top-5 hit, suggestion right), learn the mixer on
   ids[t], then count ids[t]. The batched reading `completer eval` does between cut points. */
static PyObject *Memory_score(Memory *m, PyObject *args) {
    PyObject *o, *on, *os; Py_ssize_t start; int learn_mixer = 1; Buf b = {0}, nb = {0}, sb = {0};
    if (!PyArg_ParseTuple(args, "OnOO|p", &o, &start, &on, &os, &learn_mixer)) return NULL;
    if (need_ready(m) < 0) return NULL;
    PyObject *res = NULL;
    double *p = NULL; float *in = NULL, *out = NULL;
    if (get_buf(o, &b, 0, "i", "ids") < 0 || get_buf(on, &nb, 0, "f", "net") < 0 ||
        get_buf(os, &sb, 1, "f", "stats") < 0) goto done;
    const int32_t *ids = b.view.buf;
    Py_ssize_t n = b.view.len / 4, T = n - start;
    int V = m->V;
    if (start < 0 || T < 0 || nb.view.len != 4 * T * V || sb.view.len != 4 * T * 4) {
        PyErr_SetString(PyExc_ValueError, "score: sizes disagree"); goto done;
    }
    if (check_ids(m, ids, n) < 0) goto done;
    for (Py_ssize_t t = 0; t < T; t++) if (check_net((const float *)nb.view.buf + t * V, V, "net") < 0) goto done;
    p = malloc(V * sizeof(double)); in = malloc(NIN * V * sizeof(float)); out = malloc(V * sizeof(float));
    if (!p || !in || !out) { PyErr_NoMemory(); goto done; }
    float *st = sb.view.buf;
    lock(m);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = start; t < n; t++) {
        Py_ssize_t lo = t - CTX > 0 ? t - CTX : 0;
        const float *net = (const float *)nb.view.buf + (t - start) * V;
        int y = ids[t], s = mix(m, ids + lo, (int)(t - lo), 0, net, in, out, p);
        int rank = 0, best = -1;
        for (int c = 0; c < V; c++) {
            if (out[c] > out[y]) rank++;
            if (c != m->unk && (best < 0 || out[c] > out[best])) best = c;
        }
        float *r = st + (t - start) * 4;
        r[0] = -out[y] / (float)M_LN2; r[1] = rank == 0; r[2] = rank < 5; r[3] = best == y;
        if (learn_mixer && !isinf(out[y])) mixer_update(m, s, in, out, y);
        learn_one(m, ids + lo, (int)(t - lo), y);
    }
    Py_END_ALLOW_THREADS
    unlock(m);
    res = Py_None; Py_INCREF(res);
done:
    free(p); free(in); free(out);
    rel(&b); rel(&nb); rel(&sb);
    return res;
}

/* the mixer's weights as bytes (NSETS * NIN float32), and back */
static PyObject *Memory_get_weights(Memory *m, PyObject *unused) {
    if (need_ready(m) < 0) return NULL;
    lock(m);
    PyObject *r = PyBytes_FromStringAndSize((const char *)m->w, sizeof m->w);
    unlock(m);
    return r;
}

static PyObject *Memory_set_weights(Memory *m, PyObject *arg) {
    Buf b = {0};
    if (need_ready(m) < 0) return NULL;
    if (get_buf(arg, &b, 0, "f", "weights") < 0) { rel(&b); return NULL; }
    if (b.view.len != (Py_ssize_t)sizeof m->w) {
        rel(&b);
        return PyErr_Format(PyExc_ValueError, "weights: expected %d float32", NSETS * NIN);
    }
    for (int i = 0; i < NSETS * NIN; i++) {
        float w = ((const float *)b.view.buf)[i];
        if (!(w >= -MAXW && w <= MAXW)) { rel(&b); return PyErr_Format(PyExc_ValueError, "weights: %d is not finite or too large", i); }
    }
    lock(m);
    memcpy(m->w, b.view.buf, sizeof m->w);
    unlock(m);
    rel(&b);
    Py_RETURN_NONE;
}

/* state() -> dict of bytes: a copy of every table, for the cache; load(dict) puts them back (same sizes) */
#define FIELDS(X) \
    X("uni", m->uni, (size_t)m->V * sizeof(double)) \
    X("low", m->low.b, (size_t)(m->low.mask + 1) * (2 + m->low.slots) * 4) \
    X("high", m->high.b, (size_t)(m->high.mask + 1) * (2 + m->high.slots) * 4) \
    X("hist", m->hist, (size_t)(m->hmask + 1) * 2) \
    X("match0", m->mtab[0], (size_t)(m->mmask + 1) * 4) \
    X("match1", m->mtab[1], (size_t)(m->mmask + 1) * 4) \
    X("match2", m->mtab[2], (size_t)(m->mmask + 1) * 4) \
    X("match3", m->mtab[3], (size_t)(m->mmask + 1) * 4) \
    X("match4", m->mtab[4], (size_t)(m->mmask + 1) * 4) \
    X("match5", m->mtab[5], (size_t)(m->mmask + 1) * 4) \
    X("mhit", m->mhit, sizeof m->mhit) \
    X("mtry", m->mtry, sizeof m->mtry) \
    X("weights", m->w, sizeof m->w)

#define FIELD_NAME(name, ptr, size) name,
#define FIELD_PTR(name, ptr, size) (void *)(ptr),
#define FIELD_SIZE(name, ptr, size) (size_t)(size),
#define NFIELDS 13

static int finite_in(const double *a, size_t n, double lo, double hi) {
    for (size_t i = 0; i < n; i++) if (!(a[i] >= lo && a[i] <= hi)) return 0;   /* NaN fails too */
    return 1;
}

/* state(name=None): a copy of every table as a dict of bytes (and "counters": (uni_total,
   uni_types, n)), for the cache; with a name, that one field only (the cache's save copies one
   table at a time: a copy of all of them is ~100 MB) */
static PyObject *Memory_state(Memory *m, PyObject *args) {
    const char *want = NULL;
    if (!PyArg_ParseTuple(args, "|z", &want)) return NULL;
    if (need_ready(m) < 0) return NULL;
    const char *fname[NFIELDS] = {FIELDS(FIELD_NAME)};
    const void *fptr[NFIELDS] = {FIELDS(FIELD_PTR)};
    size_t fsize[NFIELDS] = {FIELDS(FIELD_SIZE)};
    PyObject *d = NULL, *v;
    if (!want && !(d = PyDict_New())) return NULL;
    lock(m);   /* a consistent copy, even while another thread reads text in */
    int found = 0;
    for (int i = 0; i < NFIELDS; i++) {
        if (want && strcmp(want, fname[i]) != 0) continue;
        found = 1;
        v = PyBytes_FromStringAndSize((const char *)fptr[i], (Py_ssize_t)fsize[i]);
        if (want) { unlock(m); return v; }
        if (!v || PyDict_SetItemString(d, fname[i], v) < 0) { Py_XDECREF(v); Py_DECREF(d); unlock(m); return NULL; }
        Py_DECREF(v);
    }
    v = Py_BuildValue("(ddK)", m->uni_total, m->uni_types, (unsigned long long)m->n);
    unlock(m);
    if (want) {
        if (strcmp(want, "counters") == 0) return v;
        Py_XDECREF(v);
        (void)found;
        return PyErr_Format(PyExc_KeyError, "memory state has no field %s", want);
    }
    if (!v || PyDict_SetItemString(d, "counters", v) < 0) { Py_XDECREF(v); Py_DECREF(d); return NULL; }
    Py_DECREF(v);
    return d;
}

/* field_sizes() -> {name: bytes} of every field state() copies (what the cache checks a file against) */
static PyObject *Memory_field_sizes(Memory *m, PyObject *noargs) {
    (void)noargs;
    if (need_ready(m) < 0) return NULL;
    const char *fname[NFIELDS] = {FIELDS(FIELD_NAME)};
    size_t fsize[NFIELDS] = {FIELDS(FIELD_SIZE)};
    PyObject *d = PyDict_New(), *v;
    if (!d) return NULL;
    for (int i = 0; i < NFIELDS; i++) {
        v = PyLong_FromSize_t(fsize[i]);
        if (!v || PyDict_SetItemString(d, fname[i], v) < 0) { Py_XDECREF(v); Py_DECREF(d); return NULL; }
        Py_DECREF(v);
    }
    return d;
}

/* Is field f of a state (in `buf`, its size already checked) one this memory could have written,
   given the state's counters? Every number a prediction indexes or divides by is checked: a slot's symbol
   (1..V: 0 with a count had ngram_predict write p[-1]), a bucket's total (the sum of its counts),
   history ids (< V: verify indexes cls by them), positions (<= n), the confidences' counts
   (0 <= hits <= tries, finite), the unigram counts and their totals, the mixer's weights (finite,
   |w| <= MAXW). NULL if sound, else what is wrong. */
static const char *check_field(Memory *m, int f, const void *buf, double total, double types, uint64_t n) {
    int V = m->V;
    if (f == 0) {                                   /* uni, with the counters */
        const double *uni = buf;
        double sum = 0, kinds = 0;
        if (!finite_in(uni, (size_t)V, 0, 9007199254740992.0)) return "a unigram count is negative or not finite";
        for (int c = 0; c < V; c++) { sum += uni[c]; kinds += uni[c] > 0; }
        if (!(total == sum && types == kinds)) return "the unigram totals disagree with the counts";
    } else if (f == 1 || f == 2) {                  /* low, high */
        const Table *tb = f == 2 ? &m->high : &m->low;
        const uint32_t *b = buf;
        size_t stride = 2 + (size_t)tb->slots;
        for (uint64_t i = 0; i <= tb->mask; i++, b += stride) {
            uint32_t count = 0;
            if (!b[0]) {   /* an unused bucket is all zero */
                for (size_t k = 1; k < stride; k++) if (b[k]) return "an n-gram bucket without a tag holds counts";
                continue;
            }
            for (int k = 0; k < tb->slots; k++) {
                uint32_t s = b[2 + k];
                if (!s) continue;
                if ((s >> 16) < 1 || (s >> 16) > (uint32_t)V || !(s & 0xffffu)) return "an n-gram slot has a symbol outside the vocabulary or no count";
                count += s & 0xffffu;
            }
            if (count != b[1]) return "an n-gram bucket's total is not the sum of its counts";
        }
    } else if (f == 3) {                            /* hist */
        const uint16_t *hist = buf;
        for (uint64_t i = 0; i <= m->hmask; i++) if (hist[i] >= V) return "the history holds an id outside the vocabulary";
    } else if (f >= 4 && f < 4 + NMATCH) {          /* match0..5 */
        const uint32_t *t = buf;
        for (uint64_t i = 0; i <= m->mmask; i++) if (t[i] > n) return "a match position is past the characters read";
    } else if (f == 10 || f == 11) {                /* mhit, mtry: each checked here, hits <= tries at load */
        const double *a = buf;
        for (int i = 0; i < NMATCH * MBUCKETS; i++) if (!(a[i] >= 0 && a[i] < 1e300)) return "a match confidence count is out of range";
    } else if (f == 12) {                           /* weights */
        const float *w = buf;
        for (int i = 0; i < NSETS * NIN; i++) if (!(w[i] >= -MAXW && w[i] <= MAXW)) return "a mixer weight is out of range or not finite";
    }
    return NULL;
}

/* Is the state in `buf` (the fields in FIELDS order, sizes already checked) one this memory could
   have written? check_field for each, and hits <= tries across mhit and mtry. */
static const char *check_state(Memory *m, void *const *buf, double total, double types, uint64_t n) {
    for (int f = 0; f < NFIELDS; f++) {
        const char *why = check_field(m, f, buf[f], total, types, n);
        if (why) return why;
    }
    const double *hit = buf[10], *try_ = buf[11];
    for (int i = 0; i < NMATCH * MBUCKETS; i++) if (!(hit[i] <= try_[i])) return "a match confidence count is out of range";
    return NULL;
}

/* load_field(name, buffer, counters, commit=True): one field of a state, checked as load checks it
   (counters: the (uni_total, uni_types, n) of the whole state; "uni" takes them on), then copied
   in if commit. For the cache's loader, so that the whole state never needs to be in memory at
   once: it checks every field first (commit=False), then copies each (the memory must be one
   that nothing else writes meanwhile: the project reader's, before it reads). "mhit" with
   commit checks hits <= tries against the "mtry" already loaded, so "mtry" comes first. */
static PyObject *Memory_load_field(Memory *m, PyObject *args) {
    const char *name; PyObject *o; double total, types; unsigned long long n; int commit = 1;
    if (!PyArg_ParseTuple(args, "sO(ddK)|p", &name, &o, &total, &types, &n, &commit)) return NULL;
    if (need_ready(m) < 0) return NULL;
    const char *fname[NFIELDS] = {FIELDS(FIELD_NAME)};
    void *fptr[NFIELDS] = {FIELDS(FIELD_PTR)};
    size_t fsize[NFIELDS] = {FIELDS(FIELD_SIZE)};
    int f = 0;
    while (f < NFIELDS && strcmp(fname[f], name) != 0) f++;
    if (f == NFIELDS) return PyErr_Format(PyExc_ValueError, "memory state has no field %s", name);
    Py_buffer view;
    if (PyObject_GetBuffer(o, &view, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    const char *why = NULL;
    if ((size_t)view.len != fsize[f]) why = "the wrong size";
    else if ((uintptr_t)view.buf % 8) why = "not aligned to 8 bytes";
    if (why) {
        PyBuffer_Release(&view);
        return PyErr_Format(PyExc_ValueError, "memory state %s has %s", name, why);
    }
    lock(m);
    why = check_field(m, f, view.buf, total, types, (uint64_t)n);
    if (!why && f == 10 && commit)
        for (int i = 0; i < NMATCH * MBUCKETS; i++) if (!(((const double *)view.buf)[i] <= m->mtry[i / MBUCKETS][i % MBUCKETS])) {
            why = "a match confidence count is out of range"; break;
        }
    if (!why && commit) {
        memcpy(fptr[f], view.buf, fsize[f]);
        if (f == 0) { m->uni_total = total; m->uni_types = types; m->n = n; }
    }
    unlock(m);
    PyBuffer_Release(&view);
    if (why) return PyErr_Format(PyExc_ValueError, "memory state refused: %s", why);
    Py_RETURN_NONE;
}

/* clear(): forget everything read (the tables' pages go back to the OS; the weights stay) */
static PyObject *Memory_clear(Memory *m, PyObject *noargs) {
    (void)noargs;
    if (need_ready(m) < 0) return NULL;
    lock(m);
    void *big[4 + NMATCH] = {m->low.b, m->high.b, m->hist};
    size_t bytes[4 + NMATCH] = {table_bytes(&m->low), table_bytes(&m->high), hist_bytes(m)};
    for (int j = 0; j < NMATCH; j++) { big[3 + j] = m->mtab[j]; bytes[3 + j] = mtab_bytes(m); }
    for (int i = 0; i < 3 + NMATCH; i++) {
#ifdef MADV_DONTNEED
        if (madvise(big[i], big_size(bytes[i]), MADV_DONTNEED) == 0) continue;   /* anonymous: zero again */
#endif
        memset(big[i], 0, bytes[i]);
    }
    memset(m->uni, 0, (size_t)m->V * sizeof(double));
    memset(m->mhit, 0, sizeof m->mhit); memset(m->mtry, 0, sizeof m->mtry);
    m->uni_total = m->uni_types = 0; m->n = 0;
    unlock(m);
    Py_RETURN_NONE;
}

/* load(dict): put back what state() gave, all or nothing. Every field must be there with its
   exact size, and the whole state must pass check_state; otherwise ValueError and the memory is
   unchanged. The buffers are checked and copied under the tables' mutex, with the GIL held, so
   nothing changes them between the check and the copy. */
static PyObject *Memory_load(Memory *m, PyObject *d) {
    if (need_ready(m) < 0) return NULL;
    if (!PyDict_Check(d)) return PyErr_Format(PyExc_TypeError, "load takes a dict");
    const char *fname[NFIELDS] = {FIELDS(FIELD_NAME)};
    void *fptr[NFIELDS] = {FIELDS(FIELD_PTR)};
    size_t fsize[NFIELDS] = {FIELDS(FIELD_SIZE)};
    Py_buffer views[NFIELDS];
    void *bufs[NFIELDS];
    int held = 0;
    PyObject *v, *res = NULL;
    double total, types; unsigned long long n;
    v = PyDict_GetItemString(d, "counters");
    if (!v || !PyTuple_Check(v) || !PyArg_ParseTuple(v, "ddK", &total, &types, &n)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "memory state lacks counters");
        return NULL;
    }
    for (; held < NFIELDS; held++) {
        v = PyDict_GetItemString(d, fname[held]);
        if (!v) { PyErr_Format(PyExc_ValueError, "memory state lacks %s", fname[held]); goto done; }
        if (PyObject_GetBuffer(v, &views[held], PyBUF_C_CONTIGUOUS) < 0) goto done;
        if ((size_t)views[held].len != fsize[held]) {
            PyErr_Format(PyExc_ValueError, "memory state %s has the wrong size", fname[held]);
            PyBuffer_Release(&views[held]);
            goto done;
        }
        bufs[held] = views[held].buf;
        if ((uintptr_t)bufs[held] % 8) {   /* read as double, uint32, uint16: aligned as numpy makes them */
            PyErr_Format(PyExc_ValueError, "memory state %s is not aligned to 8 bytes", fname[held]);
            PyBuffer_Release(&views[held]);
            goto done;
        }
    }
    lock(m);
    const char *why = check_state(m, bufs, total, types, (uint64_t)n);
    if (!why) {
        for (int i = 0; i < NFIELDS; i++) memcpy(fptr[i], bufs[i], fsize[i]);
        m->uni_total = total; m->uni_types = types; m->n = n;
    }
    unlock(m);
    if (why) PyErr_Format(PyExc_ValueError, "memory state refused: %s", why);
    else { res = Py_None; Py_INCREF(res); }
done:
    for (int i = 0; i < held; i++) PyBuffer_Release(&views[i]);
    return res;
}

static PyObject *Memory_chars(Memory *m, void *unused) { return PyLong_FromUnsignedLongLong(m->n); }

/* prefault(): advise each 2 MiB chunk of the tables as a huge page and map it now. Done by the
   first characters read, that took 16-124 ms (every chunk zeroed; in a VM, backed by the host), so
   the project reader runs it on its own thread before it reads a large project (store.py). A chunk
   already written stays in small pages: merging them (MADV_COLLAPSE) stalled predictions by up to
   80 ms. Each chunk is touched by adding 0 atomically (a concurrent write to the same word is never
   lost), without the tables' mutex, so predictions do not wait for it. */
static void touch(Memory *m, void *base, size_t bytes) {
    for (size_t off = 0; off < bytes; off += HUGE) {
        uint8_t *chunk = (uint8_t *)base + off;
#ifdef MADV_HUGEPAGE
        madvise(chunk, HUGE, MADV_HUGEPAGE);
#endif
        __atomic_fetch_add((uint32_t *)chunk, 0u, __ATOMIC_RELAXED);
    }
}

static PyObject *Memory_prefault(Memory *m, PyObject *noargs) {
    if (need_ready(m) < 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    touch(m, m->high.b, table_bytes(&m->high));
    for (int j = 0; j < NMATCH; j++) touch(m, m->mtab[j], mtab_bytes(m));
    touch(m, m->low.b, table_bytes(&m->low));
    touch(m, m->hist, hist_bytes(m));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef Memory_methods[] = {
    {"prefault", (PyCFunction)Memory_prefault, METH_NOARGS, "prefault(): map every table's pages now (off the GIL)"},
    {"learn", (PyCFunction)Memory_learn, METH_VARARGS, "learn(ids, start=0): count ids[start:] (int32)"},
    {"mix", (PyCFunction)Memory_mix, METH_VARARGS, "mix(ctx, net, inputs, out, generated=0) -> the weight sets chosen (packed)"},
    {"update", (PyCFunction)Memory_update, METH_VARARGS, "update(set, inputs, out, y): learn the mixer on y"},
    {"score", (PyCFunction)Memory_score, METH_VARARGS, "score(ids, start, net, stats, learn_mixer=True)"},
    {"get_weights", (PyCFunction)Memory_get_weights, METH_NOARGS, "the mixer's weights (bytes)"},
    {"set_weights", (PyCFunction)Memory_set_weights, METH_O, "set the mixer's weights (float32)"},
    {"state", (PyCFunction)Memory_state, METH_VARARGS, "state(name=None): a copy of every table (or one), as bytes (for the cache)"},
    {"load", (PyCFunction)Memory_load, METH_O, "put back what state() gave (checked: all or nothing)"},
    {"field_sizes", (PyCFunction)Memory_field_sizes, METH_NOARGS, "{name: bytes} of each field of state()"},
    {"load_field", (PyCFunction)Memory_load_field, METH_VARARGS, "load_field(name, buffer, counters, commit=True): one field, checked"},
    {"clear", (PyCFunction)Memory_clear, METH_NOARGS, "clear(): forget everything read (weights stay)"},
    {NULL}
};

static PyGetSetDef Memory_getset[] = {
    {"chars", (getter)Memory_chars, NULL, "characters read so far", NULL},
    {NULL}
};

static PyTypeObject MemoryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "completer.memory._kernel.Memory",
    .tp_basicsize = sizeof(Memory),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory(vocab_size, unk, order=16, ...): n-gram + match models + mixer",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Memory_init,
    .tp_dealloc = (destructor)Memory_dealloc,
    .tp_methods = Memory_methods,
    .tp_getset = Memory_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", "the project memory's compiled loops", -1, NULL};

PyMODINIT_FUNC PyInit__kernel(void) {
    if (PyType_Ready(&MemoryType) < 0) return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (!mod) return NULL;
    Py_INCREF(&MemoryType);
    if (PyModule_AddObject(mod, "Memory", (PyObject *)&MemoryType) < 0) { Py_DECREF(&MemoryType); Py_DECREF(mod); return NULL; }
    PyModule_AddIntConstant(mod, "INPUTS", NIN);
    PyModule_AddIntConstant(mod, "SETS", NSETS);
    PyModule_AddIntConstant(mod, "CONTEXT", CTX);
    PyModule_AddIntConstant(mod, "LOW_SLOTS", LOW_SLOTS);
    PyModule_AddIntConstant(mod, "HIGH_SLOTS", HIGH_SLOTS);
    return mod;
}
