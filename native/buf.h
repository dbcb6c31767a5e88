/* The decoder's output buffer. */
#ifndef COLLECTOR_BUF_H
#define COLLECTOR_BUF_H

#include <Python.h>
#include <stdlib.h>
#include <string.h>

/* A growing output buffer, kept in a bytes object when `obj` is set. Appending is the
   hottest operation there is, so it is C that the compiler always inlines. */
typedef struct { char *p; Py_ssize_t n, cap; PyObject *obj; } collector_buf;

static int collector_buf_grow(collector_buf *b, Py_ssize_t extra) {
    Py_ssize_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->n + extra) cap *= 2;
    if (b->obj) {
        if (_PyBytes_Resize(&b->obj, cap) < 0) return -1;
        b->p = PyBytes_AS_STRING(b->obj);
    } else {
        char *q = (char *)realloc(b->p, cap);
        if (!q) { PyErr_NoMemory(); return -1; }
        b->p = q;
    }
    b->cap = cap;
    return 0;
}

static inline __attribute__((always_inline))
int collector_put(collector_buf *b, const char *s, Py_ssize_t n) {
    if (b->n + n > b->cap && collector_buf_grow(b, n) < 0) return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static inline __attribute__((always_inline)) int collector_putc(collector_buf *b, char c) {
    if (b->n + 1 > b->cap && collector_buf_grow(b, 1) < 0) return -1;
    b->p[b->n++] = c;
    return 0;
}

/* A short string (n <= 30) in quotes, from s where 32 bytes can be read: all 32 are
   copied at once, and the closing quote written over the byte after the string. */
static inline __attribute__((always_inline))
int collector_put_quoted32(collector_buf *b, const char *s, Py_ssize_t n) {
    char *q;
    if (b->n + 34 > b->cap && collector_buf_grow(b, 34) < 0) return -1;
    q = b->p + b->n;
    q[0] = '"';
    memcpy(q + 1, s, 32);
    q[1 + n] = '"';
    b->n += n + 2;
    return 0;
}

#endif /* COLLECTOR_BUF_H */
