/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Unwinder: one libdwfl session per target process, created once and reused for
 * every thread and every retry of a transition, so that ELF files are opened and
 * .eh_frame is parsed only once. Its modules are the ones the caller reports (never
 * libdwfl's own /proc scan) and its thread state comes from the caller's registers and
 * memory reader (libdwfl never ptrace-attaches: the caller already stopped the thread).
 * The unwind itself and its verdict are in walk.c.
 */

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/symtab.h"
#include "patcher/x86_64/abi.h"
#include "patcher/x86_64/regs.h"
#include "unwind/unwind-internal.h"

/* libdwfl's error codes are private and its failures here (a refused report, no state
 * attached) have no errno worth trusting: they become -EIO, once, at this boundary. */
static int dwfl_failure(void) {
        (void) dwfl_errno(); /* consume it: the next unwind starts clean */
        return -EIO;
}

/* The ELF of a module is always the one the caller named: libdwfl must not go looking
 * for another one (by build-id, or by path in a different mount namespace). */
static int find_elf_none(Dwfl_Module *mod, void **userdata, const char *modname,
                         Dwarf_Addr base, char **file_name, Elf **elfp) {
        *file_name = NULL;
        *elfp = NULL;
        return -1;
}

static uint64_t inflated_size(int fd);

/* dwfl_build_id_find_debuginfo(), refusing a debug file whose compressed sections would
 * inflate past UNWIND_INFLATED_MAX: the build-id that picks it is the target's to
 * choose, and an installed debug file of another program may be large (libdw inflates
 * its .debug_* sections, looking for .debug_frame, and keeps them). Looked at before
 * libdwfl opens it: libdwfl attaches the file it finds to the module itself. The
 * directory is root's: nobody changes the file between the two opens. */
static int find_debuginfo_bounded(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                                  const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
                                  char **debuginfo_file_name) {
        const unsigned char *id;
        GElf_Addr vaddr;
        int n = dwfl_module_build_id(mod, &id, &vaddr);

        /* an id longer than any real one names no file of ours to look at: not looked up */
        if (n > BUILD_ID_MAX)
                return -1;
        if (n >= 2) {
                char hex[2 * BUILD_ID_MAX + 1], path[sizeof(UNWIND_DEBUG_ROOT) + sizeof(hex) + 32];
                build_id_to_hex(id, (size_t) n, hex);
                snprintf(path, sizeof(path), "%s/.build-id/%.2s/%s.debug", UNWIND_DEBUG_ROOT, hex, hex + 2);
                int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                if (fd >= 0) {
                        struct stat st;
                        bool big = fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || inflated_size(fd) > UNWIND_INFLATED_MAX;
                        close(fd);
                        if (big)
                                return -1;
                }
        }
        return dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                            debuglink_crc, debuginfo_file_name);
}

static const Dwfl_Callbacks dwfl_callbacks = {
        .find_elf = find_elf_none,
        /* Only for .debug_frame of modules whose .eh_frame lacks an FDE: the main file
         * is tried first, then a local /usr/lib/debug/.build-id file. Not
         * dwfl_standard_find_debuginfo: with DEBUGINFOD_URLS set (profile.d does it on
         * Debian, Fedora, Ubuntu) it downloads, while a thread of the target is stopped. */
        .find_debuginfo = find_debuginfo_bounded,
};

void unwinder_cache_reset(Unwinder *u) {
        for (size_t i = 0; i < UNWIND_CACHE_SLOTS; i++)
                u->cache[i].base = UINT64_MAX;
        u->cache_next = 0;
}

/* Reads one 8-byte word lying within one block, through the cache. A block that cannot
 * be read as a whole (it should not happen: blocks never cross pages) falls back to a
 * direct read of the word, uncached. */
static int cache_read_word(Unwinder *u, uint64_t addr, uint64_t *ret) {
        uint64_t base = ALIGN_DOWN(addr, (uint64_t) UNWIND_CACHE_BLOCK);
        size_t off = addr - base;

        for (size_t i = 0; i < UNWIND_CACHE_SLOTS; i++)
                if (u->cache[i].base == base) {
                        memcpy(ret, u->cache[i].data + off, sizeof(*ret));
                        return 0;
                }

        UnwindCacheSlot *s = &u->cache[u->cache_next];
        if (u->read(u->userdata, base, s->data, UNWIND_CACHE_BLOCK) == 0) {
                s->base = base;
                u->cache_next = (u->cache_next + 1) % UNWIND_CACHE_SLOTS;
                memcpy(ret, s->data + off, sizeof(*ret));
                return 0;
        }
        return u->read(u->userdata, addr, ret, sizeof(*ret));
}

/* Dwfl_Thread_Callbacks.memory_read: one word of the target. A failure is remembered
 * (the first one) for the verdict, since libdwfl has no way to carry our errno. */
static bool cb_memory_read(Dwfl *dwfl, Dwarf_Addr addr, Dwarf_Word *result, void *arg) {
        Unwinder *u = arg;
        int r;

        if (++u->walk.reads > UNWIND_READ_BUDGET)
                return false;   /* walk_check_end() says why */
        if (ALIGN_DOWN(addr, (Dwarf_Addr) UNWIND_CACHE_BLOCK) ==
            ALIGN_DOWN(addr + sizeof(*result) - 1, (Dwarf_Addr) UNWIND_CACHE_BLOCK))
                r = cache_read_word(u, addr, result);
        else
                r = u->read(u->userdata, addr, result, sizeof(*result));
        if (r < 0) {
                if (u->walk.read_error == 0) {
                        u->walk.read_error = r;
                        u->walk.read_error_addr = addr;
                }
                return false;
        }
        return true;
}

/* Dwfl_Thread_Callbacks.next_thread: the only thread libdwfl knows of is the one being
 * unwound (dwfl_getthread_frames goes through get_thread below anyway). */
static pid_t cb_next_thread(Dwfl *dwfl, void *arg, void **thread_argp) {
        Unwinder *u = arg;

        if (*thread_argp != NULL || u->walk.tid <= 0)
                return 0;
        *thread_argp = u;
        return u->walk.tid;
}

/* Dwfl_Thread_Callbacks.get_thread: accepts the thread being unwound only. */
static bool cb_get_thread(Dwfl *dwfl, pid_t tid, void *arg, void **thread_argp) {
        Unwinder *u = arg;

        if (tid != u->walk.tid || tid <= 0)
                return false;
        *thread_argp = u;
        return true;
}

/* Dwfl_Thread_Callbacks.set_initial_registers: the caller's PTRACE_GETREGS values in
 * the architecture's DWARF numbering (x86_64/abi.h). */
static bool cb_set_initial_registers(Dwfl_Thread *thread, void *thread_arg) {
        Unwinder *u = thread_arg;
        uint64_t dw[ARCH_DWARF_NREGS];

        regs_to_dwarf(u->walk.regs, dw);
        if (!dwfl_thread_state_registers(thread, 0, ELEMENTSOF(dw), dw))
                return false;
        dwfl_thread_state_register_pc(thread, regs_pc(u->walk.regs));
        return true;
}

static const Dwfl_Thread_Callbacks thread_callbacks = {
        .next_thread = cb_next_thread,
        .get_thread = cb_get_thread,
        .memory_read = cb_memory_read,
        .set_initial_registers = cb_set_initial_registers,
        /* no detach, no thread_detach: we never attached */
};

/* A module libdwfl already has, as found before a new report. */
typedef struct KnownModule {
        Dwfl_Module *mod;
        const char *name;
        Dwarf_Addr low, high, bias;
} KnownModule;

typedef struct KnownModules {
        KnownModule *v;
        size_t n, alloc;
} KnownModules;

static int known_add_cb(Dwfl_Module *mod, void **userdata, const char *name, Dwarf_Addr start,
                        void *arg) {
        KnownModules *k = arg;
        KnownModule *e;

        if (GROW_FOR_ONE(k->v, k->n, k->alloc, 32) < 0)
                return DWARF_CB_ABORT;
        e = &k->v[k->n++];
        e->mod = mod;
        e->name = dwfl_module_info(mod, NULL, &e->low, &e->high, NULL, NULL, NULL, NULL);
        if (!dwfl_module_getelf(mod, &e->bias))
                e->name = NULL; /* cannot be matched */
        return DWARF_CB_OK;
}

/* What the compressed sections of the ELF file fd would take once inflated (their
 * sizes as the file states them; UINT64_MAX when it cannot be read). libdw inflates every
 * .debug_* section of a module whose .eh_frame lacks the PC, for .debug_frame, and keeps
 * them: a module of a few MiB compressed from zeros would hold gigabytes. */
static uint64_t inflated_size(int fd) {
        Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
        size_t shstrndx, nsec;
        uint64_t total = 0;

        if (!e || elf_kind(e) != ELF_K_ELF || elf_getshdrstrndx(e, &shstrndx) < 0 ||
            elf_getshdrnum(e, &nsec) < 0 || nsec > 65536) {
                elf_end(e);
                return UINT64_MAX;
        }
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(e, scn)) && total < UINT64_MAX / 2; ) {
                const char *name;
                GElf_Shdr sh;
                GElf_Chdr ch;
                Elf_Data *d;

                if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS)
                        continue;
                if (sh.sh_flags & SHF_COMPRESSED) {
                        total += gelf_getchdr(scn, &ch) ? MIN(ch.ch_size, UINT64_MAX / 4) : UINT64_MAX / 2;
                        continue;
                }
                name = elf_strptr(e, shstrndx, sh.sh_name);
                /* the older GNU form: "ZLIB" and the inflated size, 8 bytes big-endian */
                if (name && strncmp(name, ".zdebug", 7) == 0) {
                        uint64_t size = 0;
                        d = elf_rawdata(scn, NULL);
                        if (!d || d->d_size < 12 || memcmp(d->d_buf, "ZLIB", 4) != 0) {
                                total = UINT64_MAX / 2;
                                continue;
                        }
                        for (int i = 4; i < 12; i++)
                                size = size << 8 | ((const uint8_t *) d->d_buf)[i];
                        total += MIN(size, UINT64_MAX / 4);
                }
        }
        elf_end(e);
        return total;
}

static bool same_time(const struct timespec *a, const struct timespec *b) {
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Records what libdwfl reads for the file open_path (st): the copy in *fd (taken), or,
 * with *fd < 0, the file itself. NULL when out of memory. */
static ModuleCopy *module_remember(Unwinder *u, const char *open_path, const struct stat *st, int *fd) {
        ModuleCopy *c;

        if (GROW_FOR_ONE(u->copies, u->n_copies, u->alloc_copies, 8) < 0)
                return NULL;
        c = &u->copies[u->n_copies];
        *c = (ModuleCopy) { .open_path = strdup(open_path), .dev = st->st_dev, .ino = st->st_ino,
                            .size = st->st_size, .mtim = st->st_mtim, .ctim = st->st_ctim, .fd = -1 };
        if (!c->open_path)
                return NULL;
        if (*fd >= 0) {
                c->fd = TAKE_FD(*fd);
                snprintf(c->path, sizeof(c->path), "/proc/self/fd/%d", c->fd);
        }
        c->used = true;
        u->n_copies++;
        return c;
}

/* A sealed copy of the file behind open_path (fd), for libdwfl, which maps the files it
 * reads: 0, or -EFBIG past the copy limits or with compressed sections that would
 * inflate past UNWIND_INFLATED_MAX, -errno. */
static int copy_module(Unwinder *u, const char *open_path, int fd, const struct stat *st, ModuleCopy **ret) {
        _cleanup_close_ int mfd = -1;
        char buf[65536];
        uint64_t off = 0;
        ModuleCopy *c;

        if (st->st_size < 0 || (uint64_t) st->st_size > UNWIND_COPY_MAX ||
            u->copied + (uint64_t) st->st_size > UNWIND_COPY_TOTAL)
                return -EFBIG;
        mfd = memfd_create("ulp-module", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0)
                return negative_errno();
        /* what the file holds now, however long it was when stat()ed, up to the limit */
        while (off < UNWIND_COPY_MAX) {
                ssize_t n = pread(fd, buf, sizeof(buf), (off_t) off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                if (u->copied + off + (uint64_t) n > UNWIND_COPY_TOTAL)
                        return -EFBIG;
                if (write(mfd, buf, (size_t) n) != n)
                        return -EIO;
                off += (uint64_t) n;
        }
        if (fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
                return negative_errno();
        if (inflated_size(mfd) > UNWIND_INFLATED_MAX)
                return -EFBIG;
        c = module_remember(u, open_path, st, &mfd);
        if (!c)
                return -ENOMEM;
        c->bytes = off;
        u->copied += off;
        *ret = c;
        return 0;
}

/* The file libdwfl is to read for m: its map_files link itself when only root can change
 * that file (elf_file_fixed()), else a sealed copy, made once per file (libdwfl maps what
 * it reads, and a truncation of a mapped file kills the reader with SIGBUS: the target's
 * user may truncate their own library while a transition runs). The choice is made once
 * per file: a later report (the module list changed) finds it by the mapping and the
 * inode. The index of its ModuleCopy, or -1 when the file cannot be opened or copied: the
 * module is then not reported. */
static ssize_t module_file(Unwinder *u, const Module *m) {
        _cleanup_close_ int fd = -1, none = -1;
        struct stat st;
        ModuleCopy *c;

        /* no open of anything but a regular file (a device a target maps, say) */
        if (stat(m->open_path, &st) < 0 || !S_ISREG(st.st_mode))
                return -1;
        for (size_t i = 0; i < u->n_copies; i++) {
                c = &u->copies[i];
                /* A file written since, or another one mapped at the same place (an
                 * Unwinder kept between operations, unwcache.c: the patch an apply loads
                 * where the last revert unloaded another) is another file: copied again,
                 * and reported as a new module; the old copy goes after the report. */
                if (strcmp(c->open_path, m->open_path) != 0)
                        continue;
                if (c->dev == st.st_dev && c->ino == st.st_ino && c->size == st.st_size &&
                    same_time(&c->mtim, &st.st_mtim) && same_time(&c->ctim, &st.st_ctim)) {
                        c->used = true;
                        return (ssize_t) i;
                }
        }
        fd = open(m->open_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return -1;
        if (elf_file_fixed(fd))
                c = module_remember(u, m->open_path, &st, &none);
        else if (copy_module(u, m->open_path, fd, &st, &c) < 0)
                c = NULL;
        return c ? c - u->copies : -1;
}

static void copy_drop(ModuleCopy *c) {
        free(c->open_path);
        free(c->alias);
        if (c->fd >= 0)
                close(c->fd);
}

/* After a report: the files no module of it named (a patch's memfd once reverted, a
 * library unloaded, one rewritten since) are let go, so that an Unwinder kept between
 * operations holds what its process maps now, not everything it ever mapped. libdwfl
 * dropped their modules at the end of the report. */
static void copies_prune(Unwinder *u) {
        size_t kept = 0;

        for (size_t i = 0; i < u->n_copies; i++) {
                ModuleCopy *c = &u->copies[i];
                if (!c->used) {
                        u->copied -= MIN(u->copied, c->bytes);
                        copy_drop(c);
                        continue;
                }
                c->used = false;
                u->copies[kept++] = *c;
        }
        u->n_copies = kept;
}

/* The module libdwfl already has for m: the one reported for the same file (what
 * module_file() gave: the same ModuleCopy, so the same inode, size and times of the file
 * behind the mapping), with the same name and bias and, when both have one, the same
 * build-id. */
static const KnownModule *known_find(const KnownModules *k, const Module *m, const char *name,
                                     const ModuleCopy *c) {
        for (size_t i = 0; c->mod && i < k->n; i++) {
                const KnownModule *e = &k->v[i];
                const unsigned char *bits;
                GElf_Addr vaddr;
                int len;

                if (e->mod != c->mod || !e->name || strcmp(e->name, name) != 0 || e->bias != m->bias)
                        continue;
                len = dwfl_module_build_id(e->mod, &bits, &vaddr);
                if (len > 0 && m->build_id_len > 0 &&
                    ((size_t) len != m->build_id_len || memcmp(bits, m->build_id, len) != 0))
                        continue;
                return e;
        }
        return NULL;
}

/* Whether libdwfl has a module named name. */
static bool known_named(const KnownModules *k, const char *name) {
        for (size_t i = 0; i < k->n; i++)
                if (k->v[i].name && strcmp(k->v[i].name, name) == 0)
                        return true;
        return false;
}

/* Reports the vDSO (vdso.c), by range when libdwfl already has it. */
static bool report_vdso(Unwinder *u, const KnownModules *known) {
        char path[64];

        for (size_t i = 0; i < known->n; i++)
                if (known->v[i].name && strcmp(known->v[i].name, "[vdso]") == 0 &&
                    known->v[i].low == u->vdso_start)
                        return dwfl_report_module(u->dwfl, "[vdso]", known->v[i].low, known->v[i].high);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", u->vdso_fd);
        return dwfl_report_elf(u->dwfl, "[vdso]", path, -1, u->vdso_bias, true);
}

/* Reports mods to libdwfl as the complete module set, replacing the previous one.
 * Modules libdwfl already has are re-reported by range (dwfl_report_module), which keeps
 * them with their parsed CFI: dwfl_report_elf cannot re-report a module (it opens the
 * file again, and a different fd counts as an overlap, which drops the module). A module
 * libdwfl refuses (unreadable file) is left out and counted: frames inside it will be
 * "outside any module", which is unreliable, never wrong. A file new to the Unwinder
 * whose module's name libdwfl already has (the module of the file mapped there before:
 * a library rewritten, a patch loaded where another was unloaded) is reported under a
 * name of its own: libdwfl finds a module by name and range, and would take the new
 * file's report for an overlap with the old one and drop it; the old module goes at
 * the report's end, unnamed by it. */
static int report_modules(Unwinder *u, const ModuleList *mods) {
        KnownModules known = {};
        size_t ok = 0, failed = 0;

        ptrdiff_t r = dwfl_getmodules(u->dwfl, known_add_cb, &known, 0);
        if (r != 0) {
                free(known.v);
                return r > 0 ? -ENOMEM : dwfl_failure();
        }

        dwfl_report_begin(u->dwfl);
        for (size_t i = 0; i < mods->n; i++) {
                const Module *m = &mods->v[i];
                const char *name = m->path ? m->path : m->open_path;
                const KnownModule *e;
                Dwfl_Module *dm;
                ModuleCopy *c;
                ssize_t k;

                if (!m->open_path)
                        continue;
                k = module_file(u, m);
                if (k < 0) {
                        failed++;
                        continue;
                }
                c = &u->copies[k];
                if (c->alias)
                        name = c->alias;
                e = known_find(&known, m, name, c);
                if (e)
                        dm = dwfl_report_module(u->dwfl, e->name, e->low, e->high);
                else {
                        if (!c->alias && known_named(&known, name)) {
                                if (asprintf(&c->alias, "%s (%u)", name, ++u->aliases) < 0) {
                                        c->alias = NULL;
                                        failed++;
                                        continue;
                                }
                                name = c->alias;
                        }
                        /* add_p_vaddr: base is the load bias (runtime = vaddr + bias),
                         * right also for libraries whose first PT_LOAD is not at 0. */
                        dm = dwfl_report_elf(u->dwfl, name, c->fd >= 0 ? c->path : c->open_path, -1,
                                             m->bias, true);
                }
                c->mod = dm;
                if (dm)
                        ok++;
                else
                        failed++;
        }
        /* Not counted: the caller's list does not hold it. */
        if (u->vdso_fd >= 0)
                (void) report_vdso(u, &known);
        free(known.v);
        if (dwfl_report_end(u->dwfl, NULL, NULL) != 0)
                return dwfl_failure();
        copies_prune(u);
        u->n_reported = ok;
        u->n_failed = failed;
        return 0;
}

/* Builds, in u->arch_image, the smallest ELF image libelf accepts whose only purpose is
 * to name the architecture (x86_64/abi.h) to dwfl_attach_state. */
static int arch_elf_open(Unwinder *u) {
        Elf64_Ehdr eh = {
                .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ARCH_ELF_CLASS, ARCH_ELF_DATA,
                             EV_CURRENT, ELFOSABI_SYSV },
                .e_type = ET_CORE,
                .e_machine = ARCH_ELF_MACHINE,
                .e_version = EV_CURRENT,
                .e_ehsize = sizeof(Elf64_Ehdr),
        };

        _Static_assert(sizeof(eh) <= sizeof(u->arch_image), "arch_image too small");
        memcpy(u->arch_image, &eh, sizeof(eh));
        u->arch_elf = elf_memory((char *) u->arch_image, sizeof(eh));
        return u->arch_elf ? 0 : -EINVAL;
}

int unwinder_new(pid_t pid, const ModuleList *mods, unwind_read_fn read, void *userdata,
                 Unwinder **ret) {
        Unwinder *u;
        int r;

        if (pid <= 0 || !mods || !read || !ret)
                return -EINVAL;
        if (elf_version(EV_CURRENT) == EV_NONE)
                return -EIO;

        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        u->pid = pid;
        u->read = read;
        u->userdata = userdata;
        u->vdso_fd = -1;
        unwinder_cache_reset(u);
        /* Without it, frames in the vDSO are only unreliable, as they were. */
        (void) unwinder_vdso_load(u, mods->vdso_start, mods->vdso_end);

        u->dwfl = dwfl_begin(&dwfl_callbacks);
        if (!u->dwfl) {
                r = -ENOMEM;
                goto fail;
        }
        r = arch_elf_open(u);
        if (r < 0)
                goto fail;
        r = report_modules(u, mods);
        if (r < 0)
                goto fail;
        if (!dwfl_attach_state(u->dwfl, u->arch_elf, pid, &thread_callbacks, u)) {
                r = dwfl_failure();
                goto fail;
        }

        *ret = u;
        return 0;
fail:
        unwinder_free(u);
        return r;
}

void unwinder_free(Unwinder *u) {
        if (!u)
                return;
        /* dwfl_end first: its attached process state refers to arch_elf. */
        if (u->dwfl)
                dwfl_end(u->dwfl);
        if (u->arch_elf)
                elf_end(u->arch_elf);
        if (u->vdso_fd >= 0)
                close(u->vdso_fd);
        for (size_t i = 0; i < u->n_copies; i++)
                copy_drop(&u->copies[i]);
        free(u->copies);
        free(u);
}

int unwinder_set_modules(Unwinder *u, const ModuleList *mods) {
        if (!u || !mods)
                return -EINVAL;
        return report_modules(u, mods);
}

int unwinder_rebind(Unwinder *u, pid_t pid, const ModuleList *mods, unwind_read_fn read, void *userdata) {
        if (!u || !mods || !read)
                return -EINVAL;
        /* Another process, or one that executed a program since (its vDSO moved): the
         * libdwfl session is bound to the old one. */
        if (u->pid != pid || mods->vdso_end == 0 || mods->vdso_start != u->vdso_start ||
            mods->vdso_end != u->vdso_end)
                return -ESTALE;
        u->read = read;
        u->userdata = userdata;
        unwinder_cache_reset(u);
        return report_modules(u, mods);
}

uint64_t unwinder_copied_bytes(const Unwinder *u) {
        return u->copied;
}

size_t unwinder_fds(const Unwinder *u) {
        size_t n = u->n_reported + (u->vdso_fd >= 0);

        for (size_t i = 0; i < u->n_copies; i++)
                n += u->copies[i].fd >= 0;
        return n;
}

void unwinder_module_counts(const Unwinder *u, size_t *ret_reported, size_t *ret_failed) {
        if (ret_reported)
                *ret_reported = u->n_reported;
        if (ret_failed)
                *ret_failed = u->n_failed;
}
