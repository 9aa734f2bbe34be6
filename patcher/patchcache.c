/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parsed patches kept between operations: see patchcache.h. */

#include <sys/stat.h>

#include "elf/patchfile.h"
#include "patcher/filecache.h"
#include "patcher/patchcache.h"

static void free_value(void *m) {
        patchmeta_free(m);
}

FILECACHE_DEFINE(cache, PATCHCACHE_MAX, PATCHCACHE_IDLE_SEC, free_value)

int patchcache_read(int fd, const char *name_hint, PatchMeta **ret, char *err, size_t errlen) {
        struct stat s;
        int r;

        if (patch_file_is_sealed(fd) <= 0 || fstat(fd, &s) < 0 || s.st_size > PATCHCACHE_FILE_MAX)
                return patchmeta_read(fd, name_hint, ret, err, errlen);
        *ret = filecache_get(cache(), &s, name_hint);
        if (*ret)
                return 0;
        r = patchmeta_read(fd, name_hint, ret, err, errlen);
        if (r < 0)
                return r;
        /* the entry keeps the sealed copy open: its inode stays its own. Not cached (still
         * a good result) when every entry is in use or the copy cannot be kept. */
        (void) filecache_add(cache(), &s, name_hint, fd, *ret);
        return 0;
}

void patchcache_put(PatchMeta *m) {
        if (m && !filecache_put(cache(), m))
                patchmeta_free(m);      /* not cached */
}

void patchcache_flush(void) {
        filecache_flush(cache());
}
