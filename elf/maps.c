/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* /proc/PID/maps: reading and parsing into MapEntry arrays. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/maps.h"

#define DELETED_SUFFIX " (deleted)"

/* The most of /proc/PID/maps read: a process may map a file of a 4,000-byte path 65,000
 * times (260 MB of text, read and parsed at every operation); real ones have a few MB
 * at most. Past it, -EFBIG. */
#define MAPS_TEXT_MAX (32u << 20)

/* Reads a whole /proc file (st_size is 0 there) into a NUL-terminated buffer. */

static int read_proc_file(const char *path, char **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();

        size_t size = 0, alloc = 16384;
        _cleanup_free_ char *buf = malloc(alloc);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (alloc - size < 4096) {
                        char *n = realloc(buf, alloc * 2);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                        alloc *= 2;
                }
                ssize_t k = read(fd, buf + size, alloc - size - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                size += (size_t)k;
                if (size > MAPS_TEXT_MAX)
                        return -EFBIG;
        }
        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* A field of hex digits (at most 16: a 64-bit value), *p moved past it. */
static bool parse_hex(const char **p, const char *end, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;
        int n = 0;

        for (; s < end && n <= 16; s++, n++) {
                unsigned d;
                if (*s >= '0' && *s <= '9')
                        d = (unsigned)(*s - '0');
                else if (*s >= 'a' && *s <= 'f')
                        d = (unsigned)(*s - 'a' + 10);
                else if (*s >= 'A' && *s <= 'F')
                        d = (unsigned)(*s - 'A' + 10);
                else
                        break;
                v = v << 4 | d;
        }
        if (n == 0 || n > 16)
                return false;
        *p = s;
        *ret = v;
        return true;
}

static bool parse_dec(const char **p, const char *end, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        if (s == *p)
                return false;
        *p = s;
        *ret = v;
        return true;
}

static bool parse_char(const char **p, const char *end, char c) {
        if (*p >= end || **p != c)
                return false;
        (*p)++;
        return true;
}

/* Parses one maps line ("start-end perms offset maj:min inode   path") into e: the
 * line is [line, end), without its newline. By hand, not sscanf(): this runs for every
 * mapping of every target, several times an operation (docs/performance.md). */
static int maps_parse_line(const char *line, const char *end, MapEntry *e) {
        const char *p = line, *perms;
        uint64_t maj, min;

        *e = (MapEntry) {};
        if (!parse_hex(&p, end, &e->start) || !parse_char(&p, end, '-') || !parse_hex(&p, end, &e->end) ||
            !parse_char(&p, end, ' ') || end - p < 5)
                return -EBADMSG;
        perms = p;
        p += 4;
        if (!parse_char(&p, end, ' ') || !parse_hex(&p, end, &e->offset) || !parse_char(&p, end, ' ') ||
            !parse_hex(&p, end, &maj) || !parse_char(&p, end, ':') || !parse_hex(&p, end, &min) ||
            !parse_char(&p, end, ' ') || !parse_dec(&p, end, &e->inode) || maj > UINT32_MAX || min > UINT32_MAX)
                return -EBADMSG;
        if (e->end < e->start || memchr(perms, ' ', 4) || memchr(perms, 0, 4))
                return -EBADMSG;
        e->dev_major = (unsigned)maj;
        e->dev_minor = (unsigned)min;
        e->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                  (perms[2] == 'x' ? PROT_EXEC : 0);
        e->shared = perms[3] == 's';

        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        if (p == end)
                return 0;

        size_t len = (size_t)(end - p), slen = strlen(DELETED_SUFFIX);
        if (len > slen && memcmp(end - slen, DELETED_SUFFIX, slen) == 0) {
                e->deleted = true;
                len -= slen;
        }
        e->path = strndup(p, len);
        return e->path ? 0 : -ENOMEM;
}

int maps_parse(const char *text, MapList *ret) {
        MapList l = {};
        size_t alloc = 0;
        int r = 0;

        for (const char *p = text; *p; ) {
                const char *nl = strchrnul(p, '\n'), *line = p;
                p = *nl ? nl + 1 : nl;
                if (nl == line)
                        continue;

                if (l.n == alloc) {
                        alloc = alloc ? alloc * 2 : 64;
                        MapEntry *v = reallocarray(l.v, alloc, sizeof(MapEntry));
                        if (!v) {
                                r = -ENOMEM;
                                break;
                        }
                        l.v = v;
                }
                r = maps_parse_line(line, nl, &l.v[l.n]);
                if (r < 0)
                        break;
                l.n++;
        }
        if (r < 0) {
                maplist_done(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int maps_read(pid_t pid, MapList *ret) {
        char path[64];
        _cleanup_free_ char *text = NULL;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
        int r = read_proc_file(path, &text);
        if (r == -ENOENT)
                return -ESRCH;
        if (r < 0)
                return r;
        return maps_parse(text, ret);
}

void maplist_done(MapList *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i].path);
        free(l->v);
        *l = (MapList) {};
}

/* Binary search: the entries are sorted and disjoint. */
const MapEntry *maps_find(const MapList *l, uint64_t addr) {
        size_t lo = 0, hi = l->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const MapEntry *e = &l->v[mid];
                if (addr < e->start)
                        hi = mid;
                else if (addr >= e->end)
                        lo = mid + 1;
                else
                        return e;
        }
        return NULL;
}
