/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Finding the separate debug file of a stripped object: see debugfile.h. */

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/debugfile.h"
#include "elf/module.h"
#include "elf/symtab.h"

#define SEARCHED_MAX 480

typedef struct Search {
        Elf *elf;
        uint8_t build_id[BUILD_ID_MAX];
        size_t build_id_len;
        bool have_crc;
        uint32_t crc;            /* from .gnu_debuglink */
        char searched[SEARCHED_MAX];
} Search;

const char *debugfile_root(void) {
        const char *r = secure_getenv("ULP_DEBUG_ROOT");

        return r && r[0] == '/' ? r : DEBUGFILE_ROOT;
}

/* Appends "; what" to the search record (cut at its size: it is for a message). */
__attribute__((format(printf, 2, 3)))
static void searched_add(Search *s, const char *fmt, ...) {
        size_t len = strlen(s->searched);
        va_list ap;

        if (len + 3 >= sizeof(s->searched))
                return;
        if (len > 0) {
                strcpy(s->searched + len, "; ");
                len += 2;
        }
        va_start(ap, fmt);
        vsnprintf(s->searched + len, sizeof(s->searched) - len, fmt, ap);
        va_end(ap);
}

int debugfile_crc32(int fd, uint32_t *ret) {
        uint32_t table[256], crc = 0xffffffffu;
        uint8_t buf[65536];
        off_t off = 0;

        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
                table[i] = c;
        }
        for (;;) {
                ssize_t n = pread(fd, buf, sizeof(buf), off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                for (ssize_t i = 0; i < n; i++)
                        crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
                off += n;
        }
        *ret = crc ^ 0xffffffffu;
        return 0;
}

/* Whether the debug file open at fd belongs to s->elf and has symbols. Records why not. */
static bool candidate_ok(Search *s, int fd, const char *path) {
        uint8_t id[BUILD_ID_MAX];
        struct stat st;
        Elf *elf = NULL;
        bool ok = false;
        int n;

        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                searched_add(s, "%s is not a regular file", path);
                return false;
        }
        if (elf_open_fd(fd, &elf) < 0) {
                searched_add(s, "%s is not a 64-bit ELF file", path);
                return false;
        }
        if (!elf_has_section_type(elf, SHT_SYMTAB)) {
                searched_add(s, "%s has no .symtab", path);
                goto done;
        }
        n = elf_read_build_id(elf, id, sizeof(id));
        if (s->build_id_len > 0) {
                if (n <= 0 || (size_t)n != s->build_id_len || memcmp(id, s->build_id, (size_t)n) != 0) {
                        char want[2 * BUILD_ID_MAX + 1], have[2 * BUILD_ID_MAX + 1];
                        build_id_to_hex(s->build_id, s->build_id_len, want);
                        build_id_to_hex(id, n > 0 ? (size_t)n : 0, have);
                        searched_add(s, "%s has build-id %s, not %s", path, n > 0 ? have : "none", want);
                        goto done;
                }
        } else {
                uint32_t crc;
                if (!s->have_crc || debugfile_crc32(fd, &crc) < 0 || crc != s->crc) {
                        searched_add(s, "%s does not match the CRC of .gnu_debuglink", path);
                        goto done;
                }
        }
        ok = true;
done:
        elf_end(elf);
        return ok;
}

/* Opens a candidate. One next to the object is in a directory the object's owner may
 * write, and this may run as root for another user's process: no symbolic link is
 * followed on its way (the object's path in the maps has none: the kernel gives the
 * resolved one), so that it cannot name a file elsewhere, nor say what that file is. */
static int candidate_open(const char *path, bool follow) {
        const int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

        if (follow)
                return open(path, flags);
        struct open_how how = { .flags = flags, .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
        long fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
        return fd < 0 ? -1 : (int)fd;
}

/* Tries one candidate path: 1 with *ret_fd set when it is the debug file, else 0.
 * follow: whether symbolic links on the way are followed (candidate_open()). */
static int try_candidate(Search *s, const char *path, bool follow, int *ret_fd) {
        int fd = candidate_open(path, follow);

        if (fd < 0) {
                if (errno == ENOMEM)
                        return -ENOMEM;
                if (errno == ELOOP && !follow)
                        searched_add(s, "%s goes through a symbolic link, not followed", path);
                else if (errno == ENOSYS && !follow)
                        searched_add(s, "%s not looked at (no openat2)", path);
                else
                        searched_add(s, "no %s", path);
                return 0;
        }
        if (!candidate_ok(s, fd, path)) {
                close(fd);
                return 0;
        }
        *ret_fd = fd;
        return 1;
}

/* The file name .gnu_debuglink names (a plain name, no directory) and its CRC, or NULL. */
static const char *debuglink_read(Elf *elf, uint32_t *ret_crc) {
        size_t shstrndx;

        if (elf_getshdrstrndx(elf, &shstrndx) < 0)
                return NULL;
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                GElf_Shdr sh;
                const char *name;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
                    !(name = elf_strptr(elf, shstrndx, sh.sh_name)) || strcmp(name, ".gnu_debuglink") != 0)
                        continue;
                Elf_Data *d = elf_getdata(scn, NULL);
                if (!d || !d->d_buf || d->d_size < 8)
                        return NULL;
                const char *link = d->d_buf;
                const char *nul = memchr(link, 0, d->d_size - 4);
                if (!nul || nul == link || memchr(link, '/', (size_t)(nul - link)))
                        return NULL;
                /* The CRC follows the name, padded to 4 bytes. */
                size_t crc_off = ALIGN_UP((size_t)(nul - link) + 1, (size_t)4);
                if (crc_off + 4 > d->d_size)
                        return NULL;
                memcpy(ret_crc, (const char *)d->d_buf + crc_off, 4);
                for (const char *p = link; p < nul; p++)
                        if (*p <= ' ' || *p > '~')
                                return NULL;
                return link;
        }
        return NULL;
}

int debugfile_find(Elf *elf, const char *path, int *ret_fd, char **ret_path, char **ret_searched) {
        _cleanup_free_ Search *s = calloc(1, sizeof(Search));
        const char *root = debugfile_root(), *link;
        char cand[PATH_MAX];
        int r, fd = -1;

        if (!s)
                return -ENOMEM;
        s->elf = elf;
        r = elf_read_build_id(elf, s->build_id, sizeof(s->build_id));
        s->build_id_len = r > 0 ? (size_t)r : 0;

        if (s->build_id_len >= 2) {
                char hex[2 * BUILD_ID_MAX + 1];
                build_id_to_hex(s->build_id, s->build_id_len, hex);
                snprintf(cand, sizeof(cand), "%s/.build-id/%.2s/%s.debug", root, hex, hex + 2);
                r = try_candidate(s, cand, true, &fd);
                if (r != 0)
                        goto found;
        }

        link = debuglink_read(elf, &s->crc);
        s->have_crc = link != NULL;
        if (link && path && path[0] == '/') {
                const char *slash = strrchr(path, '/');
                int dirlen = (int)(slash - path);
                const char *fmts[] = { "%.*s/%s", "%.*s/.debug/%s" };
                for (size_t i = 0; i < ELEMENTSOF(fmts); i++) {
                        snprintf(cand, sizeof(cand), fmts[i], dirlen, path, link);
                        if ((r = try_candidate(s, cand, false, &fd)) != 0)
                                goto found;
                }
                snprintf(cand, sizeof(cand), "%s%.*s/%s", root, dirlen, path, link);
                if ((r = try_candidate(s, cand, true, &fd)) != 0)
                        goto found;
        } else if (s->build_id_len < 2)
                searched_add(s, "it has neither a build-id nor a .gnu_debuglink");
        if (!s->searched[0])
                searched_add(s, "no debug file to look for");
        r = -ENOENT;
found:
        if (r < 0 && r != -ENOENT)
                return r;
        if (ret_searched && !(*ret_searched = strdup(s->searched)))
                r = -ENOMEM;
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return r;
        }
        *ret_path = strdup(cand);
        if (!*ret_path) {
                close(fd);
                return -ENOMEM;
        }
        *ret_fd = fd;
        return 0;
}
