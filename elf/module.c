/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The ELF modules of a live process: its mappings grouped by file, each file read
 * through /proc/PID/map_files (the very inode that is mapped), ordered as the dynamic
 * linker loaded them (the r_debug link_map chain, read from the target's memory).
 */

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "elf/module.h"
#include "elf/symtab.h"

#define PATCH_PATH_PREFIX "/memfd:ulp-patch:"

static void module_done(Module *m) {
        if (m->has_image_fd)
                close(m->image_fd);
        free(m->path);
        free(m->soname);
        free(m->open_path);
}

void modulelist_done(ModuleList *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                module_done(&l->v[i]);
        free(l->v);
        *l = (ModuleList) {};
}

static int remote_read(pid_t pid, uint64_t addr, void *buf, size_t len);

/* See module.h. The image is the target's memory, hostile: bounded here, and parsed by
 * libelf as any file of the target is. */
#define PATCH_IMAGE_MAX (64u << 20)
#define PATCH_IMAGE_PHDRS 16
int patch_image_rebuild(PatchImageRead read_mem, void *userdata, uint64_t start) {
        Elf64_Ehdr eh;
        Elf64_Phdr ph[PATCH_IMAGE_PHDRS];
        uint64_t size = 0, bias = 0;
        bool first = true;
        int r;

        r = read_mem(userdata, start, &eh, sizeof(eh));
        if (r < 0)
                return r;
        if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
            eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > PATCH_IMAGE_PHDRS ||
            eh.e_phoff > PATCH_IMAGE_MAX)
                return -ENOEXEC;
        /* Both are written back into the image: program headers over the ELF header would
         * change what was read (a linker never lays them out so). */
        if (eh.e_phoff < sizeof(eh))
                return -ENOEXEC;
        r = read_mem(userdata, start + eh.e_phoff, ph, eh.e_phnum * sizeof(Elf64_Phdr));
        if (r < 0)
                return r;
        for (size_t i = 0; i < eh.e_phnum; i++) {
                if (ph[i].p_type != PT_LOAD)
                        continue;
                if (ph[i].p_offset > PATCH_IMAGE_MAX || ph[i].p_filesz > PATCH_IMAGE_MAX - ph[i].p_offset ||
                    ph[i].p_filesz > ph[i].p_memsz)
                        return -ENOEXEC;
                if (first)
                        bias = start - ALIGN_DOWN(ph[i].p_vaddr - ph[i].p_offset, (uint64_t)4096);
                first = false;
                size = MAX(size, ph[i].p_offset + ph[i].p_filesz);
        }
        /* The headers are written back into the image: it must hold them. */
        if (first || size < sizeof(eh) || size < eh.e_phoff + eh.e_phnum * sizeof(Elf64_Phdr))
                return -ENOEXEC;

        _cleanup_free_ uint8_t *img = calloc(1, size);
        if (!img)
                return -ENOMEM;
        for (size_t i = 0; i < eh.e_phnum; i++)
                if (ph[i].p_type == PT_LOAD && ph[i].p_filesz > 0 &&
                    (r = read_mem(userdata, bias + ph[i].p_vaddr, img + ph[i].p_offset, ph[i].p_filesz)) < 0)
                        return r;
        /* The headers as read at first (the segments' copy of them may differ). */
        eh.e_shoff = 0;
        eh.e_shnum = 0;
        eh.e_shstrndx = SHN_UNDEF;
        memcpy(img, &eh, sizeof(eh));
        memcpy(img + eh.e_phoff, ph, eh.e_phnum * sizeof(Elf64_Phdr));

        _cleanup_close_ int fd = memfd_create("ulp-patch-image", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        if (pwrite(fd, img, size, 0) != (ssize_t)size)
                return -EIO;
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

static int pid_read(void *userdata, uint64_t addr, void *buf, size_t len) {
        return remote_read(*(const pid_t *)userdata, addr, buf, len);
}

/* A patch's ELF image rebuilt from the target's memory, for when its memfd cannot be
 * opened through map_files (that needs CAP_CHECKPOINT_RESTORE). */
static int patch_image_from_memory(pid_t pid, const MapEntry *e) {
        return patch_image_rebuild(pid_read, &pid, e->start);
}

/* Opens the file behind a mapping: map_files first (works for deleted or replaced
 * files and memfds), the path as a fallback, and for a patch its image from memory.
 * Sets m->open_path to what worked. */
static int module_open_file(pid_t pid, const MapEntry *e, Module *m) {
        char mf[96];
        int fd;

        snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, e->start, e->end);
        fd = open(mf, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                m->open_path = strdup(mf);
        } else if (strncmp(e->path, PATCH_PATH_PREFIX, strlen(PATCH_PATH_PREFIX)) == 0) {
                fd = patch_image_from_memory(pid, e);
                if (fd < 0)
                        return fd;
                m->image_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (m->image_fd < 0) {
                        close(fd);
                        return negative_errno();
                }
                m->has_image_fd = true;
                snprintf(mf, sizeof(mf), "/proc/self/fd/%d", m->image_fd);
                m->open_path = strdup(mf);
        } else if (e->deleted) {
                /* The path names another file now, or none (a new build installed over
                 * it: its symbols are at other addresses): only map_files reaches the
                 * mapped one, and that needs CAP_CHECKPOINT_RESTORE. */
                return -ENOENT;
        } else {
                struct stat st;
                /* The path is the process's to change: what is there now must be the
                 * mapped inode (the device differs on overlayfs, elf/module.c's
                 * exe_dev_from_maps()), and a FIFO put there is not waited on. */
                fd = open(e->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
                if (fd < 0)
                        return negative_errno();
                if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_ino != e->inode) {
                        close(fd);
                        return -ESTALE;
                }
                m->open_path = strdup(e->path);
        }
        if (!m->open_path) {
                close(fd);
                return -ENOMEM;
        }
        return fd;
}

/* DT_SONAME from the SHT_DYNAMIC section, or NULL. */
static int elf_read_soname(Elf *elf, char **ret) {
        *ret = NULL;
        for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn)); ) {
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNAMIC || sh.sh_entsize == 0)
                        continue;
                Elf_Data *d = elf_getdata(scn, NULL);
                for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
                        GElf_Dyn dyn;
                        if (!gelf_getdyn(d, (int)i, &dyn) || dyn.d_tag == DT_NULL)
                                break;
                        if (dyn.d_tag != DT_SONAME)
                                continue;
                        const char *s = elf_strptr(elf, sh.sh_link, dyn.d_un.d_val);
                        if (!s)
                                return 0;
                        *ret = strdup(s);
                        return *ret ? 0 : -ENOMEM;
                }
        }
        return 0;
}

/* Fills e_type, bias, the PT_LOAD span and dyn_vaddr (PT_DYNAMIC, 0 if none) of module m,
 * whose offset-0 mapping starts at map_start. */
static int module_read_phdrs(Elf *elf, uint64_t map_start, Module *m, uint64_t *ret_dyn_vaddr) {
        GElf_Ehdr eh;
        size_t nph;
        uint64_t lo = UINT64_MAX, hi = 0, page = (uint64_t)sysconf(_SC_PAGESIZE);
        bool first = true;

        if (!gelf_getehdr(elf, &eh) || elf_phdr_count(elf, &nph) < 0)
                return -ENOEXEC;
        if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
                return -ENOEXEC;
        m->e_type = eh.e_type;
        *ret_dyn_vaddr = 0;

        for (size_t i = 0; i < nph; i++) {
                GElf_Phdr ph;
                if (!gelf_getphdr(elf, (int)i, &ph))
                        return -ENOEXEC;
                if (ph.p_type == PT_DYNAMIC)
                        *ret_dyn_vaddr = ph.p_vaddr;
                if (ph.p_type != PT_LOAD)
                        continue;
                if (first) {
                        /* The offset-0 mapping holds the page of file offset 0, which the
                         * first PT_LOAD places at (p_vaddr - p_offset), page aligned. */
                        m->bias = map_start - ALIGN_DOWN(ph.p_vaddr - ph.p_offset, page);
                        first = false;
                }
                lo = MIN(lo, ALIGN_DOWN(ph.p_vaddr, page));
                hi = MAX(hi, ALIGN_UP(ph.p_vaddr + ph.p_memsz, page));
        }
        if (first)
                return -ENOEXEC;
        m->start = lo + m->bias;
        m->end = hi + m->bias;
        return 0;
}

/*
 * What a module's file says, cached by the file's identity (device, inode, size,
 * modification and change times: any write changes the times), as the symbol cache
 * keys its tables (docs/performance.md, "Many processes"). Every operation reads the
 * module list, and a library patch on a thousand processes read the same few files a
 * thousand times: open, ELF header, program headers, dynamic section, notes, each file
 * mapped and unmapped (an unmap in a threaded ulpd interrupts every core it ran on).
 * A file known here costs one stat() of its map_files link. Files that are not ELF
 * objects are remembered too (a process maps data files). Shared by all threads, under
 * a lock; fixed-size entries, none allocated, so nothing outlives the process's use.
 * A new file takes the least recently used entry: every process has its own patch
 * memfds, read by one operation each, and they must not push out the libraries that
 * every operation reads.
 */
#define MODINFO_SLOTS 64
#define MODINFO_SONAME_MAX 256

typedef struct ModInfo {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim, ctim;
        bool used;
        uint64_t last_use;       /* modinfo.tick at its last lookup or addition */
        bool not_elf;            /* no ELF magic: a data file mapped */
        uint16_t e_type;
        uint64_t first_base;     /* page of file offset 0, as the first PT_LOAD places it */
        uint64_t lo, hi;         /* PT_LOAD span, ELF addresses */
        uint64_t dyn_vaddr;
        bool has_soname;
        char soname[MODINFO_SONAME_MAX];
        uint8_t build_id[BUILD_ID_MAX];
        size_t build_id_len;
} ModInfo;

static struct {
        pthread_mutex_t lock;
        ModInfo v[MODINFO_SLOTS];
        uint64_t tick;
        unsigned long hits, misses;
} modinfo = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool modinfo_same(const ModInfo *i, const struct stat *s) {
        return i->used && i->dev == s->st_dev && i->ino == s->st_ino && i->size == s->st_size &&
               i->mtim.tv_sec == s->st_mtim.tv_sec && i->mtim.tv_nsec == s->st_mtim.tv_nsec &&
               i->ctim.tv_sec == s->st_ctim.tv_sec && i->ctim.tv_nsec == s->st_ctim.tv_nsec;
}

/* Copies the entry of the file s describes into *ret: true when there is one. */
static bool modinfo_get(const struct stat *s, ModInfo *ret) {
        bool found = false;

        pthread_mutex_lock(&modinfo.lock);
        for (size_t i = 0; i < MODINFO_SLOTS && !found; i++)
                if (modinfo_same(&modinfo.v[i], s)) {
                        modinfo.v[i].last_use = ++modinfo.tick;
                        *ret = modinfo.v[i];
                        found = true;
                }
        if (found)
                modinfo.hits++;
        else
                modinfo.misses++;
        pthread_mutex_unlock(&modinfo.lock);
        return found;
}

static void modinfo_add(const struct stat *s, ModInfo *i) {
        size_t lru = 0;

        i->dev = s->st_dev;
        i->ino = s->st_ino;
        i->size = s->st_size;
        i->mtim = s->st_mtim;
        i->ctim = s->st_ctim;
        i->used = true;
        pthread_mutex_lock(&modinfo.lock);
        for (size_t k = 0; k < MODINFO_SLOTS; k++) {
                if (modinfo_same(&modinfo.v[k], s)) {
                        pthread_mutex_unlock(&modinfo.lock);
                        return;  /* another thread read it meanwhile */
                }
                if (!modinfo.v[k].used ||
                    (modinfo.v[lru].used && modinfo.v[k].last_use < modinfo.v[lru].last_use))
                        lru = k;
        }
        i->last_use = ++modinfo.tick;
        modinfo.v[lru] = *i;
        pthread_mutex_unlock(&modinfo.lock);
}

void modules_cache_stats(unsigned long *hits, unsigned long *misses) {
        pthread_mutex_lock(&modinfo.lock);
        *hits = modinfo.hits;
        *misses = modinfo.misses;
        pthread_mutex_unlock(&modinfo.lock);
}

void modules_cache_flush(void) {
        pthread_mutex_lock(&modinfo.lock);
        for (size_t k = 0; k < MODINFO_SLOTS; k++)
                modinfo.v[k].used = false;
        pthread_mutex_unlock(&modinfo.lock);
}

/* m's fields from a cached entry, its offset-0 mapping at map_start. */
static int module_from_info(const ModInfo *i, uint64_t map_start, Module *m, uint64_t *ret_dyn_vaddr) {
        if (i->not_elf)
                return -ENOEXEC;
        m->e_type = i->e_type;
        m->bias = map_start - i->first_base;
        m->start = i->lo + m->bias;
        m->end = i->hi + m->bias;
        *ret_dyn_vaddr = i->dyn_vaddr;
        if (i->has_soname) {
                m->soname = strdup(i->soname);
                if (!m->soname)
                        return -ENOMEM;
        }
        memcpy(m->build_id, i->build_id, sizeof(m->build_id));
        m->build_id_len = i->build_id_len;
        return 0;
}

/* The cache entry of what module_read_elf() filled in m (r its result, not_elf: the
 * file does not even start as an ELF file does). False when it cannot be cached (a
 * soname too long for an entry, an error: libelf may fail for want of memory). */
static bool module_to_info(int r, bool not_elf, uint64_t map_start, const Module *m, uint64_t dyn_vaddr,
                           ModInfo *i) {
        *i = (ModInfo) {};
        if (not_elf) {
                i->not_elf = true;
                return true;
        }
        if (r < 0 || (m->soname && strlen(m->soname) >= sizeof(i->soname)))
                return false;
        i->e_type = m->e_type;
        i->first_base = map_start - m->bias;
        i->lo = m->start - m->bias;
        i->hi = m->end - m->bias;
        i->dyn_vaddr = dyn_vaddr;
        i->has_soname = m->soname != NULL;
        if (m->soname)
                strcpy(i->soname, m->soname);
        memcpy(i->build_id, m->build_id, sizeof(i->build_id));
        i->build_id_len = m->build_id_len;
        return true;
}

/* Reads the module's ELF file fd (its offset-0 mapping at map_start) into m; *not_elf
 * when the file does not start with the ELF magic. */
static int module_read_elf(int fd, uint64_t map_start, Module *m, uint64_t *ret_dyn_vaddr, bool *not_elf) {
        _cleanup_(elf_endp) Elf *elf = NULL;
        unsigned char magic[SELFMAG];
        ssize_t n = pread(fd, magic, SELFMAG, 0);
        int r;

        /* a read that failed says nothing of the file */
        *not_elf = n >= 0 && (n != SELFMAG || memcmp(magic, ELFMAG, SELFMAG) != 0);
        if (n != SELFMAG || memcmp(magic, ELFMAG, SELFMAG) != 0)
                return -ENOEXEC;
        r = elf_open_fd(fd, &elf);
        if (r < 0)
                return r;
        r = module_read_phdrs(elf, map_start, m, ret_dyn_vaddr);
        if (r < 0)
                return r;
        r = elf_read_soname(elf, &m->soname);
        if (r < 0)
                return r;
        r = elf_read_build_id(elf, m->build_id, sizeof(m->build_id));
        m->build_id_len = r > 0 ? (size_t)r : 0;
        return 0;
}

/* m from the cache when the file behind map_files is known there: 1 when it was (r in
 * *ret_r), 0 when it must be read. */
static int module_init_cached(pid_t pid, const MapEntry *e, Module *m, uint64_t *ret_dyn_vaddr, int *ret_r) {
        char mf[96];
        struct stat st;
        ModInfo i;

        snprintf(mf, sizeof(mf), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, e->start, e->end);
        if (stat(mf, &st) < 0 || !S_ISREG(st.st_mode) || !modinfo_get(&st, &i))
                return 0;
        *ret_r = module_from_info(&i, e->start, m, ret_dyn_vaddr);
        if (*ret_r == 0) {
                m->open_path = strdup(mf);
                if (!m->open_path)
                        *ret_r = -ENOMEM;
        }
        return 1;
}

/* Reads the ELF behind the offset-0 mapping e into m. -ENOEXEC when it is not an ELF
 * object (the caller skips the mapping then). */
static int module_init(pid_t pid, const MapEntry *e, Module *m, uint64_t *ret_dyn_vaddr) {
        _cleanup_close_ int fd = -1;
        struct stat st;
        ModInfo info;
        bool not_elf;
        int r;

        *m = (Module) {};
        *ret_dyn_vaddr = 0;
        if (module_init_cached(pid, e, m, ret_dyn_vaddr, &r) == 0) {
                fd = module_open_file(pid, e, m);
                if (fd < 0)
                        return fd;
                r = module_read_elf(fd, e->start, m, ret_dyn_vaddr, &not_elf);
                /* a patch's image rebuilt from memory is a memfd of ours: not worth it */
                if (!m->has_image_fd && fstat(fd, &st) >= 0 && S_ISREG(st.st_mode) &&
                    module_to_info(r, not_elf, e->start, m, *ret_dyn_vaddr, &info))
                        modinfo_add(&st, &info);
        }
        if (r < 0)
                return r;

        m->path = strdup(e->path);
        if (!m->path)
                return -ENOMEM;
        m->is_patch = strncmp(e->path, PATCH_PATH_PREFIX, strlen(PATCH_PATH_PREFIX)) == 0;
        return 0;
}

/* Whether the file at m's path is no longer the mapped inode (deleted, or replaced by
 * rename). Only meaningful for real paths. */
static bool mapping_replaced(const MapEntry *e) {
        struct stat st;

        if (e->deleted)
                return true;
        if (e->path[0] != '/' || stat(e->path, &st) < 0)
                return e->path[0] == '/';
        return st.st_ino != e->inode || major(st.st_dev) != e->dev_major ||
               minor(st.st_dev) != e->dev_minor;
}

/* Whether mapping e is of the file behind /proc/PID/exe (stat'ed into exe). */
static bool mapping_is_exe(const MapEntry *e, const struct stat *exe) {
        return exe->st_ino == e->inode && major(exe->st_dev) == e->dev_major &&
               minor(exe->st_dev) == e->dev_minor;
}

/* On overlayfs (a container's root), stat() reports the device of the layer a file
 * comes from, while /proc/PID/maps shows the overlay's own: no mapping would match the
 * executable. Then its mapping is the one of the same inode and path, and exe takes
 * that mapping's device. */
static void exe_dev_from_maps(pid_t pid, const MapList *maps, struct stat *exe) {
        char link[64], target[PATH_MAX];
        ssize_t n;

        for (size_t i = 0; i < maps->n; i++)
                if (mapping_is_exe(&maps->v[i], exe))
                        return;
        snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
        n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
                return;
        target[n] = 0;
        for (size_t i = 0; i < maps->n; i++) {
                const MapEntry *e = &maps->v[i];
                if (e->inode == exe->st_ino && e->path && strcmp(e->path, target) == 0) {
                        exe->st_dev = makedev(e->dev_major, e->dev_minor);
                        return;
                }
        }
}

/* Reads len bytes of the target's memory at addr. */
static int remote_read(pid_t pid, uint64_t addr, void *buf, size_t len) {
        struct iovec local = { buf, len }, remote = { (void *)(uintptr_t)addr, len };
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);

        if (n < 0)
                return negative_errno();
        return (size_t)n == len ? 0 : -EIO;
}

/* The r_debug address the dynamic linker stored in DT_DEBUG of the main executable's
 * dynamic section (at runtime address dyn), or -ENOENT (static, or not yet set). */
static int remote_find_r_debug(pid_t pid, uint64_t dyn, uint64_t *ret) {
        Elf64_Dyn d[32];

        for (unsigned chunk = 0; chunk < 16; chunk++) {
                int r = remote_read(pid, dyn + chunk * sizeof(d), d, sizeof(d));
                if (r < 0)
                        return r;
                for (size_t i = 0; i < ELEMENTSOF(d); i++) {
                        if (d[i].d_tag == DT_NULL)
                                return -ENOENT;
                        if (d[i].d_tag == DT_DEBUG) {
                                *ret = d[i].d_un.d_ptr;
                                return *ret ? 0 : -ENOENT;
                        }
                }
        }
        return -ENOENT;
}

/* Ranks the modules in the order of the target's link_map chain: rank[i] is the position
 * of module i in the chain, or UINT32_MAX when it is not in it. dyn is the runtime
 * address of the main executable's dynamic section. */
static int module_link_order(pid_t pid, const ModuleList *l, uint64_t dyn, uint32_t *rank) {
        struct r_debug rd;
        uint64_t rdaddr, lm;
        uint32_t next = 0;
        int r;

        r = remote_find_r_debug(pid, dyn, &rdaddr);
        if (r < 0)
                return r;
        r = remote_read(pid, rdaddr, &rd, sizeof(rd));
        if (r < 0)
                return r;

        lm = (uint64_t)(uintptr_t)rd.r_map;
        for (unsigned n = 0; lm && n < 65536; n++) {
                struct link_map m;
                r = remote_read(pid, lm, &m, sizeof(m));
                if (r < 0)
                        return r;
                /* l_ld lies inside the object (its dynamic section); [vdso] matches none. */
                const Module *mod = modules_find_addr(l, (uint64_t)(uintptr_t)m.l_ld);
                if (mod && rank[mod - l->v] == UINT32_MAX)
                        rank[mod - l->v] = next++;
                lm = (uint64_t)(uintptr_t)m.l_next;
        }
        return 0;
}

typedef struct ModuleKey {
        unsigned class;          /* 0 main, 1 in the link_map chain, 2 other, 3 patch */
        uint64_t seq;
        Module m;
} ModuleKey;

static int module_key_cmp(const void *a, const void *b) {
        const ModuleKey *x = a, *y = b;

        if (x->class != y->class)
                return x->class < y->class ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts l (in address order on entry) into load order; see ModuleList. main_dyn is the
 * runtime address of the main executable's dynamic section, 0 if unknown. */
static int modules_sort(pid_t pid, ModuleList *l, uint64_t main_dyn) {
        _cleanup_free_ uint32_t *rank = malloc((l->n + 1) * sizeof(uint32_t));
        _cleanup_free_ ModuleKey *keys = calloc(l->n + 1, sizeof(ModuleKey));
        if (!rank || !keys)
                return -ENOMEM;

        for (size_t i = 0; i < l->n; i++)
                rank[i] = UINT32_MAX;
        if (main_dyn)
                (void) module_link_order(pid, l, main_dyn, rank); /* else address order */

        for (size_t i = 0; i < l->n; i++) {
                const Module *m = &l->v[i];
                keys[i].m = *m;
                keys[i].class = m->is_main ? 0 : m->is_patch ? 3 : rank[i] != UINT32_MAX ? 1 : 2;
                keys[i].seq = keys[i].class == 1 ? rank[i] : m->start;
        }
        qsort(keys, l->n, sizeof(ModuleKey), module_key_cmp);
        for (size_t i = 0; i < l->n; i++)
                l->v[i] = keys[i].m;
        return 0;
}

/* Whether some mapping of the same file within m's span is executable: tells a loaded
 * object from a plain mmap() of an ELF file. maps[from] is its offset-0 mapping. */
static bool module_has_exec_mapping(const MapList *maps, size_t from, const Module *m) {
        const MapEntry *z = &maps->v[from];

        for (size_t j = from; j < maps->n && maps->v[j].start < m->end; j++) {
                const MapEntry *e = &maps->v[j];
                if (e->inode == z->inode && e->dev_major == z->dev_major &&
                    e->dev_minor == z->dev_minor && (e->prot & PROT_EXEC))
                        return true;
        }
        return false;
}

/* Whether mapping e may be the offset-0 mapping of a module. */
static bool mapping_candidate(const MapEntry *e) {
        return e->path && e->inode != 0 && e->offset == 0 && e->path[0] != '[';
}

/* Appends m (taken by l on success). -E2BIG past MODULES_MAX (module.h). */
static int list_append(ModuleList *l, size_t *alloc, Module *m) {
        if (l->n >= MODULES_MAX)
                return -E2BIG;
        if (l->n == *alloc) {
                size_t n = *alloc ? *alloc * 2 : 32;
                Module *v = reallocarray(l->v, n, sizeof(Module));
                if (!v)
                        return -ENOMEM;
                l->v = v;
                *alloc = n;
        }
        l->v[l->n++] = *m;
        return 0;
}

/* Adds the module of offset-0 mapping maps[i] to l, if it is one. */
static int modules_add(pid_t pid, const MapList *maps, size_t i, const struct stat *exe,
                       ModuleList *l, size_t *alloc, uint64_t *main_dyn) {
        const MapEntry *e = &maps->v[i];
        Module m;
        uint64_t dyn_vaddr = 0;

        int r = module_init(pid, e, &m, &dyn_vaddr);
        if (r < 0 || !module_has_exec_mapping(maps, i, &m)) {
                module_done(&m);
                /* Unreadable or not ELF: not a module. Only memory errors are fatal. */
                return r == -ENOMEM ? r : 0;
        }
        m.start = MIN(m.start, e->start);
        for (size_t j = i; j < maps->n && maps->v[j].inode == e->inode; j++)
                m.end = MAX(m.end, maps->v[j].end);
        m.map_start = e->start;
        m.map_end = e->end;
        m.map_inode = e->inode;
        m.map_dev_major = e->dev_major;
        m.map_dev_minor = e->dev_minor;
        m.deleted = mapping_replaced(e);
        m.is_main = exe && mapping_is_exe(e, exe) && !m.is_patch;
        if (m.is_main && dyn_vaddr)
                *main_dyn = dyn_vaddr + m.bias;

        r = list_append(l, alloc, &m);
        if (r < 0)
                module_done(&m);
        return r;
}

int modules_read(pid_t pid, ModuleList *ret) {
        _cleanup_(maplist_done) MapList maps = {};
        int r;

        r = maps_read(pid, &maps);
        if (r < 0)
                return r;
        return modules_read_maps(pid, &maps, ret);
}

int modules_read_maps(pid_t pid, const MapList *maps, ModuleList *ret) {
        _cleanup_(modulelist_done) ModuleList l = {};
        struct stat exe;
        char exe_path[64];
        size_t alloc = 0;
        uint64_t main_dyn = 0;
        int r;

        snprintf(exe_path, sizeof(exe_path), "/proc/%d/exe", (int)pid);
        bool have_exe = stat(exe_path, &exe) >= 0;
        if (have_exe)
                exe_dev_from_maps(pid, maps, &exe);

        for (size_t i = 0; i < maps->n; i++) {
                if (maps->v[i].path && strcmp(maps->v[i].path, "[vdso]") == 0 && !l.vdso_end) {
                        l.vdso_start = maps->v[i].start;
                        l.vdso_end = maps->v[i].end;
                }
                if (!mapping_candidate(&maps->v[i]))
                        continue;
                /* An offset-0 mapping inside a module already found is part of it. */
                if (modules_find_addr(&l, maps->v[i].start))
                        continue;
                r = modules_add(pid, maps, i, have_exe ? &exe : NULL, &l, &alloc, &main_dyn);
                if (r < 0)
                        return r;
        }

        r = modules_sort(pid, &l, main_dyn);
        if (r < 0)
                return r;
        *ret = l;
        l = (ModuleList) {};
        return 0;
}

/* prev's module of offset-0 mapping e, when unchanged and copyable (no image of ours). */
static const Module *prev_find(const ModuleList *prev, const MapEntry *e) {
        if (e->deleted)
                return NULL;
        for (size_t k = 0; k < prev->n; k++) {
                const Module *p = &prev->v[k];
                if (p->map_start == e->start && p->map_end == e->end && p->map_inode == e->inode &&
                    p->map_dev_major == e->dev_major && p->map_dev_minor == e->dev_minor &&
                    !p->deleted && !p->has_image_fd && p->path && strcmp(p->path, e->path) == 0)
                        return p;
        }
        return NULL;
}

static int module_copy(const Module *src, Module *dst) {
        *dst = *src;
        dst->path = strdup(src->path);
        dst->soname = src->soname ? strdup(src->soname) : NULL;
        dst->open_path = src->open_path ? strdup(src->open_path) : NULL;
        if (!dst->path || (src->soname && !dst->soname) || (src->open_path && !dst->open_path)) {
                module_done(dst);
                return -ENOMEM;
        }
        return 0;
}

/* Puts l (in address order, as read) in the order a full read gives it: its modules
 * other than patches in prev's order (the link_map's, which only a load or an unload
 * changes), then every patch by address. False when a module of prev other than a patch
 * is gone (l holds no other module that prev lacks: modules_reread() ensured it). */
static bool order_as_prev(ModuleList *l, const ModuleList *prev, const bool *reused_prev) {
        _cleanup_free_ Module *v = malloc((l->n + 1) * sizeof(Module));
        _cleanup_free_ bool *taken = calloc(l->n + 1, sizeof(bool));
        size_t n = 0;

        if (!v || !taken)
                return false;
        for (size_t k = 0; k < prev->n; k++)
                if (!reused_prev[k] && !prev->v[k].is_patch)
                        return false;
        for (size_t k = 0; k < prev->n; k++)
                for (size_t i = 0; !prev->v[k].is_patch && i < l->n; i++)
                        if (!taken[i] && !l->v[i].is_patch && l->v[i].map_start == prev->v[k].map_start &&
                            l->v[i].map_end == prev->v[k].map_end) {
                                v[n++] = l->v[i];
                                taken[i] = true;
                                break;
                        }
        for (size_t i = 0; i < l->n; i++)
                if (!taken[i]) {
                        if (!l->v[i].is_patch)
                                return false;
                        v[n++] = l->v[i];
                }
        memcpy(l->v, v, n * sizeof(Module));
        return true;
}

/* The re-read proper: -EAGAIN when it must be a full read. */
static int modules_reread(pid_t pid, const MapList *maps, const ModuleList *prev, ModuleList *ret) {
        _cleanup_(modulelist_done) ModuleList l = {};
        _cleanup_free_ bool *reused_prev = calloc(prev->n + 1, sizeof(bool));
        size_t alloc = 0;
        uint64_t main_dyn = 0;
        int r;

        if (!reused_prev)
                return -ENOMEM;
        for (size_t i = 0; i < maps->n; i++) {
                const MapEntry *e = &maps->v[i];
                const Module *p;
                Module m;

                if (e->path && strcmp(e->path, "[vdso]") == 0 && !l.vdso_end) {
                        l.vdso_start = e->start;
                        l.vdso_end = e->end;
                }
                if (!mapping_candidate(e) || modules_find_addr(&l, e->start))
                        continue;
                p = prev_find(prev, e);
                if (!p) {
                        /* read as in a full read (a file that is no module, such as the
                         * control block, is known so by the cache); a new module other
                         * than a patch needs a full read */
                        size_t n = l.n;
                        r = modules_add(pid, maps, i, NULL, &l, &alloc, &main_dyn);
                        if (r < 0)
                                return r;
                        if (l.n > n && !l.v[n].is_patch)
                                return -EAGAIN;
                        continue;
                }
                if (!module_has_exec_mapping(maps, i, p))
                        return -EAGAIN;
                r = module_copy(p, &m);
                if (r < 0)
                        return r;
                r = list_append(&l, &alloc, &m);
                if (r < 0) {
                        module_done(&m);
                        return r;
                }
                reused_prev[p - prev->v] = true;
        }
        if (!order_as_prev(&l, prev, reused_prev))
                return -EAGAIN;
        *ret = l;
        l = (ModuleList) {};
        return 0;
}

int modules_reread_maps(pid_t pid, const MapList *maps, const ModuleList *prev, ModuleList *ret) {
        int r = prev && prev->n > 0 ? modules_reread(pid, maps, prev, ret) : -EAGAIN;

        return r == -EAGAIN ? modules_read_maps(pid, maps, ret) : r;
}

const Module *modules_find_object(const ModuleList *l, const char *object) {
        if (!object || !*object) {
                for (size_t i = 0; i < l->n; i++)
                        if (l->v[i].is_main)
                                return &l->v[i];
                return NULL;
        }
        for (size_t i = 0; i < l->n; i++)
                if (!l->v[i].is_patch && l->v[i].soname && strcmp(l->v[i].soname, object) == 0)
                        return &l->v[i];
        for (size_t i = 0; i < l->n; i++) {
                const char *slash = strrchr(l->v[i].path, '/');
                const char *base = slash ? slash + 1 : l->v[i].path;
                if (!l->v[i].is_patch && strcmp(base, object) == 0)
                        return &l->v[i];
        }
        return NULL;
}

const Module *modules_find_addr(const ModuleList *l, uint64_t addr) {
        for (size_t i = 0; i < l->n; i++)
                if (addr >= l->v[i].start && addr < l->v[i].end)
                        return &l->v[i];
        return NULL;
}

void build_id_to_hex(const uint8_t *id, size_t len, char *buf) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < len; i++) {
                buf[2 * i] = hex[id[i] >> 4];
                buf[2 * i + 1] = hex[id[i] & 15];
        }
        buf[2 * len] = 0;
}
