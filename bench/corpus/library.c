/*
 * hw3: a small library catalogue.
 *
 * Reads commands from standard input, one per line:
 *   add <id> <year> <title...>
 *   lend <id> <member>
 *   return <id>
 *   find <word>
 *   list [title|year|id]
 *   save <file> / load <file>
 *   quit
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#define MAX_TITLE 96
#define MAX_MEMBER 32
#define MAX_LINE 256
#define INITIAL_CAPACITY 8

typedef struct {
    int id;
    int year;
    char title[MAX_TITLE];
    char borrower[MAX_MEMBER];
    int times_lent;
} Book;

typedef struct {
    Book *items;
    size_t count;
    size_t capacity;
} Catalogue;

static void catalogue_init(Catalogue *c)
{
    c->items = NULL;
    c->count = 0;
    c->capacity = 0;
}

static void catalogue_free(Catalogue *c)
{
    free(c->items);
    c->items = NULL;
    c->count = 0;
    c->capacity = 0;
}

static int catalogue_grow(Catalogue *c)
{
    size_t wanted = c->capacity == 0 ? INITIAL_CAPACITY : c->capacity * 2;
    Book *bigger = realloc(c->items, wanted * sizeof(Book));
    if (bigger == NULL) {
        fprintf(stderr, "out of memory (%zu books)\n", wanted);
        return -1;
    }
    c->items = bigger;
    c->capacity = wanted;
    return 0;
}

static Book *catalogue_find_id(Catalogue *c, int id)
{
    for (size_t i = 0; i < c->count; i++) {
        if (c->items[i].id == id) {
            return &c->items[i];
        }
    }
    return NULL;
}

static int catalogue_add(Catalogue *c, int id, int year, const char *title)
{
    if (catalogue_find_id(c, id) != NULL) {
        printf("book %d already exists\n", id);
        return -1;
    }
    if (c->count == c->capacity && catalogue_grow(c) != 0) {
        return -1;
    }
    Book *b = &c->items[c->count++];
    b->id = id;
    b->year = year;
    strncpy(b->title, title, MAX_TITLE - 1);
    b->title[MAX_TITLE - 1] = '\0';
    b->borrower[0] = '\0';
    b->times_lent = 0;
    return 0;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        s[--n] = '\0';
    }
    size_t start = 0;
    while (s[start] != '\0' && isspace((unsigned char)s[start])) {
        start++;
    }
    if (start > 0) {
        memmove(s, s + start, n - start + 1);
    }
}

static int contains_word(const char *text, const char *word)
{
    size_t wl = strlen(word);
    if (wl == 0) {
        return 0;
    }
    for (const char *p = text; *p != '\0'; p++) {
        size_t i = 0;
        while (i < wl && p[i] != '\0' && tolower((unsigned char)p[i]) == tolower((unsigned char)word[i])) {
            i++;
        }
        if (i == wl) {
            return 1;
        }
    }
    return 0;
}

static void print_book(const Book *b)
{
    printf("%5d  %4d  %-40s", b->id, b->year, b->title);
    if (b->borrower[0] != '\0') {
        printf("  (lent to %s)", b->borrower);
    }
    printf("\n");
}

static int by_title(const void *a, const void *b)
{
    const Book *x = a;
    const Book *y = b;
    return strcmp(x->title, y->title);
}

static int by_year(const void *a, const void *b)
{
    const Book *x = a;
    const Book *y = b;
    if (x->year != y->year) {
        return x->year < y->year ? -1 : 1;
    }
    return by_title(a, b);
}

static int by_id(const void *a, const void *b)
{
    const Book *x = a;
    const Book *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static void list_books(Catalogue *c, const char *order)
{
    if (strcmp(order, "year") == 0) {
        qsort(c->items, c->count, sizeof(Book), by_year);
    } else if (strcmp(order, "id") == 0) {
        qsort(c->items, c->count, sizeof(Book), by_id);
    } else {
        qsort(c->items, c->count, sizeof(Book), by_title);
    }
    printf("%zu books\n", c->count);
    for (size_t i = 0; i < c->count; i++) {
        print_book(&c->items[i]);
    }
}

static void find_books(const Catalogue *c, const char *word)
{
    int found = 0;
    for (size_t i = 0; i < c->count; i++) {
        if (contains_word(c->items[i].title, word)) {
            print_book(&c->items[i]);
            found++;
        }
    }
    if (found == 0) {
        printf("no title contains \"%s\"\n", word);
    }
}

static void lend_book(Catalogue *c, int id, const char *member)
{
    Book *b = catalogue_find_id(c, id);
    if (b == NULL) {
        printf("no book %d\n", id);
    } else if (b->borrower[0] != '\0') {
        printf("book %d is already lent to %s\n", id, b->borrower);
    } else {
        strncpy(b->borrower, member, MAX_MEMBER - 1);
        b->borrower[MAX_MEMBER - 1] = '\0';
        b->times_lent++;
        printf("lent %d to %s\n", id, b->borrower);
    }
}

static void return_book(Catalogue *c, int id)
{
    Book *b = catalogue_find_id(c, id);
    if (b == NULL || b->borrower[0] == '\0') {
        printf("book %d is not lent\n", id);
        return;
    }
    printf("%s returned %d\n", b->borrower, id);
    b->borrower[0] = '\0';
}

static int save_catalogue(const Catalogue *c, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    for (size_t i = 0; i < c->count; i++) {
        const Book *b = &c->items[i];
        fprintf(f, "%d|%d|%d|%s|%s\n", b->id, b->year, b->times_lent, b->borrower, b->title);
    }
    fclose(f);
    printf("saved %zu books to %s\n", c->count, path);
    return 0;
}

static int load_catalogue(Catalogue *c, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[MAX_LINE];
    int loaded = 0;
    if (f == NULL) {
        perror(path);
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        int id, year, lent;
        char borrower[MAX_MEMBER] = "";
        char title[MAX_TITLE] = "";
        if (sscanf(line, "%d|%d|%d|%31[^|]|%95[^\n]", &id, &year, &lent, borrower, title) < 4) {
            continue;
        }
        if (catalogue_add(c, id, year, title) == 0) {
            Book *b = &c->items[c->count - 1];
            b->times_lent = lent;
            strcpy(b->borrower, borrower);
            loaded++;
        }
    }
    fclose(f);
    printf("loaded %d books from %s\n", loaded, path);
    return 0;
}

int main(void)
{
    Catalogue cat;
    char line[MAX_LINE];
    catalogue_init(&cat);
    printf("> ");
    while (fgets(line, sizeof line, stdin) != NULL) {
        char cmd[16] = "";
        int id = 0, year = 0, used = 0;
        trim(line);
        if (sscanf(line, "%15s%n", cmd, &used) != 1) {
            printf("> ");
            continue;
        }
        char *rest = line + used;
        trim(rest);
        if (strcmp(cmd, "quit") == 0) {
            break;
        } else if (strcmp(cmd, "add") == 0) {
            if (sscanf(rest, "%d %d %n", &id, &year, &used) == 2) {
                catalogue_add(&cat, id, year, rest + used);
            } else {
                printf("usage: add <id> <year> <title>\n");
            }
        } else if (strcmp(cmd, "lend") == 0) {
            char member[MAX_MEMBER];
            if (sscanf(rest, "%d %31s", &id, member) == 2) {
                lend_book(&cat, id, member);
            } else {
                printf("usage: lend <id> <member>\n");
            }
        } else if (strcmp(cmd, "return") == 0 && sscanf(rest, "%d", &id) == 1) {
            return_book(&cat, id);
        } else if (strcmp(cmd, "find") == 0) {
            find_books(&cat, rest);
        } else if (strcmp(cmd, "list") == 0) {
            list_books(&cat, rest[0] != '\0' ? rest : "title");
        } else if (strcmp(cmd, "save") == 0 && rest[0] != '\0') {
            save_catalogue(&cat, rest);
        } else if (strcmp(cmd, "load") == 0 && rest[0] != '\0') {
            load_catalogue(&cat, rest);
        } else {
            printf("unknown command: %s\n", line);
        }
        printf("> ");
    }
    catalogue_free(&cat);
    return 0;
}
