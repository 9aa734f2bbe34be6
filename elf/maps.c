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
        }
        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Parses one maps line ("start-end perms offset maj:min inode   path") into e.
 * line is NUL-terminated without its newline. */
static int maps_parse_line(const char *line, MapEntry *e) {
        char perms[5];
        int path_off = -1;

        *e = (MapEntry) {};
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n",
                   &e->start, &e->end, perms, &e->offset, &e->dev_major, &e->dev_minor,
                   &e->inode, &path_off) < 7 || path_off < 0)
                return -EBADMSG;
        if (strlen(perms) != 4 || e->end < e->start)
                return -EBADMSG;

        e->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
                  (perms[2] == 'x' ? PROT_EXEC : 0);
        e->shared = perms[3] == 's';

        const char *path = line + path_off;
        if (!*path)
                return 0;

        size_t len = strlen(path), slen = strlen(DELETED_SUFFIX);
        if (len > slen && strcmp(path + len - slen, DELETED_SUFFIX) == 0) {
                e->deleted = true;
                len -= slen;
        }
        e->path = strndup(path, len);
        return e->path ? 0 : -ENOMEM;
}

int maps_parse(const char *text, MapList *ret) {
        MapList l = {};
        size_t alloc = 0;
        int r = 0;

        for (const char *p = text; *p; ) {
                const char *nl = strchrnul(p, '\n');
                _cleanup_free_ char *line = strndup(p, (size_t)(nl - p));
                p = *nl ? nl + 1 : nl;
                if (!line) {
                        r = -ENOMEM;
                        break;
                }
                if (!*line)
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
                r = maps_parse_line(line, &l.v[l.n]);
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
