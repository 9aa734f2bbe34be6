/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Symbol tables kept between operations: see symcache.h. */

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/filecache.h"
#include "patcher/symcache.h"

static void free_value(void *st) {
        symtab_free(st);
}

FILECACHE_DEFINE(cache, SYMCACHE_MAX, SYMCACHE_IDLE_SEC, free_value)

int symcache_open(const char *open_path, const char *path, SymTab **ret) {
        _cleanup_close_ int fd = -1;
        struct stat s;
        int r;

        /* A table cached costs one stat() of the file (every operation asks each module
         * of its target); only a file not known is opened, and keyed by what was opened. */
        if (stat(open_path, &s) >= 0) {
                *ret = filecache_get(cache(), &s, NULL);
                if (*ret)
                        return 0;
        }
        fd = open(open_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &s) < 0)
                return negative_errno();
        *ret = filecache_get(cache(), &s, NULL);
        if (*ret)
                return 0;
        r = symtab_open_module_fd(fd, path, ret);
        if (r < 0)
                return r;
        /* the table keeps the file open itself; not cached when every entry is in use */
        (void) filecache_add(cache(), &s, NULL, -1, *ret);
        return 0;
}

void symcache_put(SymTab *st) {
        if (st && !filecache_put(cache(), st))
                symtab_free(st);        /* not cached: the cache was full of tables in use */
}

void symcache_flush(void) {
        filecache_flush(cache());
}
