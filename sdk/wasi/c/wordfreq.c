/* A kith function in plain C, built by clang and wasi-libc as a WASI command:
 * counts the words of the text on stdin and prints the most frequent ones as JSON.
 *
 *   clang --target=wasm32-wasi -O2 -o wordfreq.wasm wordfreq.c
 *   kith manifest set wordfreq.wasm '{"args":["5"],"fuel":200000000}' -o wordfreq.kith.wasm
 *   echo "the cat and the hat" | kith call $(kith publish wordfreq.kith.wasm)
 *   {"words":5,"distinct":4,"top":[{"word":"the","count":2},...]}
 *
 * argv[1] (from the manifest's "args") is how many words to list (default 10).
 * No words at all is an error: a message on stderr and exit code 2.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    char *word;
    unsigned count;
};

static struct entry *table;
static size_t capacity, used;

static unsigned long hash(const char *s) {
    unsigned long h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h;
}

static void grow(void);

static void add(const char *word) {
    if ((used + 1) * 2 > capacity) grow();
    size_t i = hash(word) & (capacity - 1);
    while (table[i].word) {
        if (strcmp(table[i].word, word) == 0) {
            table[i].count++;
            return;
        }
        i = (i + 1) & (capacity - 1);
    }
    table[i].word = strdup(word);
    table[i].count = 1;
    used++;
}

static void grow(void) {
    struct entry *old = table;
    size_t old_capacity = capacity;
    capacity = capacity ? capacity * 2 : 64;
    table = calloc(capacity, sizeof *table);
    if (!table) {
        fprintf(stderr, "out of memory counting %zu distinct words\n", used);
        exit(3);
    }
    used = 0;
    for (size_t i = 0; i < old_capacity; i++) {
        if (!old[i].word) continue;
        size_t j = hash(old[i].word) & (capacity - 1);
        while (table[j].word) j = (j + 1) & (capacity - 1);
        table[j] = old[i];
        used++;
    }
    free(old);
}

static int by_count(const void *a, const void *b) {
    const struct entry *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return strcmp(x->word, y->word);
}

int main(int argc, char **argv) {
    long top = argc > 1 ? strtol(argv[1], NULL, 10) : 10;
    if (top <= 0) top = 10;
    char word[64];
    size_t len = 0;
    unsigned long words = 0;
    int c;
    do {
        c = getchar();
        if (c != EOF && (isalnum(c) || c == '\'')) {
            if (len < sizeof word - 1) word[len++] = (char)tolower(c);
            continue;
        }
        if (len > 0) {
            word[len] = 0;
            add(word);
            words++;
            len = 0;
        }
    } while (c != EOF);
    if (words == 0) {
        fprintf(stderr, "no words in the input\n");
        return 2;
    }
    size_t n = 0;
    for (size_t i = 0; i < capacity; i++)
        if (table[i].word) table[n++] = table[i];
    qsort(table, n, sizeof *table, by_count);
    printf("{\"words\":%lu,\"distinct\":%zu,\"top\":[", words, n);
    for (size_t i = 0; i < n && i < (size_t)top; i++)
        printf("%s{\"word\":\"%s\",\"count\":%u}", i ? "," : "", table[i].word, table[i].count);
    printf("]}\n");
    return 0;
}
