/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "common/internal.h"

/*
 * The Unwinder object, shared by unwinder.c (its lifecycle, the modules reported to
 * libdwfl and the thread callbacks libdwfl calls back into) and walk.c (one unwind and
 * its reliability verdict). Nothing outside unwind/ includes this.
 */

#include <elfutils/libdwfl.h>
#include <sys/types.h>

#include "unwind/unwind.h"

/* Stack reads are served from a few cached 4 KiB blocks, valid for one unwind only
 * (the thread is stopped for exactly that long). A block never crosses a page, so a
 * whole-block read cannot fail where a word read inside it would succeed. */
#define UNWIND_CACHE_BLOCK 4096u
#define UNWIND_CACHE_SLOTS 4
/* Memory reads one unwind may make. A real stack of UNWIND_MAX_FRAMES frames needs a few
 * a frame (the CFA, the return address, a signal frame's seventeen registers); CFI a
 * target wrote itself can make every frame loop over DW_OP_deref (libdw allows 4096
 * steps an expression), each a read of a new block: seconds per thread, for every thread
 * and every pass. Past the budget the unwind ends, unreliable. */
#define UNWIND_READ_BUDGET 16384u

typedef struct UnwindCacheSlot {
        uint64_t base;           /* block address, UINT64_MAX when empty */
        uint8_t data[UNWIND_CACHE_BLOCK];
} UnwindCacheSlot;

/* State of the unwind in progress, reset by walk.c for every unwinder_unwind(). */
typedef struct UnwindWalk {
        pid_t tid;
        const struct user_regs_struct *regs;
        UnwindResult *res;
        bool capped;             /* a frame beyond UNWIND_MAX_FRAMES was offered */
        bool next_is_signal;     /* the previous frame's CIE had the 'S' augmentation: this
                                  * frame's PC is exact, not a return address */
        bool last_ra_undefined;  /* the CFI of the last frame says: no caller */
        unsigned reads;          /* memory reads so far (UNWIND_READ_BUDGET) */
        int read_error;          /* first failed memory read: -errno */
        uint64_t read_error_addr;
} UnwindWalk;

/* What libdwfl reads for a module file (unwinder.c, module_file()): the file the target
 * maps (its map_files link, and the inode behind it) and the sealed memfd with a copy of
 * its bytes, or fd -1 when the file itself is read (only root can change it). */
typedef struct ModuleCopy {
        char *open_path;
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim, ctim; /* with dev, ino and size: the file as it was copied */
        int fd;
        uint64_t bytes;          /* of the copy, in Unwinder.copied */
        Dwfl_Module *mod;        /* what the last report made of it, NULL none */
        bool used;               /* named by the last report: kept across the next one */
        char path[32];           /* /proc/self/fd/N */
        char *alias;             /* the name its module is reported under, NULL the module's
                                  * own: see report_modules() */
} ModuleCopy;

/* All copies of an Unwinder hold at most this much: a module past it is not reported
 * (its frames are outside any module: unreliable). A service's own binary, owned by its
 * user, is copied: it may be large. */
#define UNWIND_COPY_MAX (1ull << 30)
#define UNWIND_COPY_TOTAL (1ull << 30)
/* The most a copied module's compressed sections may inflate to (unwinder.c,
 * inflated_size()): past it, the module is not reported. */
#define UNWIND_INFLATED_MAX (64ull << 20)
/* Where libdwfl looks for a module's debug file by build-id (its default debuginfo
 * path's one absolute directory). */
#define UNWIND_DEBUG_ROOT "/usr/lib/debug"

struct Unwinder {
        pid_t pid;
        Dwfl *dwfl;
        Elf *arch_elf;           /* a bare ELF header (x86_64/abi.h): fixes libdwfl's backend
                                  * independently of which modules are reported */
        unsigned char arch_image[64];
        unwind_read_fn read;
        void *userdata;
        size_t n_reported;       /* modules libdwfl accepted at the last report */
        size_t n_failed;         /* modules it refused (their frames count as outside) */
        int vdso_fd;             /* the target's vDSO image (vdso.c), or -1 */
        uint64_t vdso_start, vdso_end, vdso_bias;
        ModuleCopy *copies;      /* every module file met, copied or not */
        size_t n_copies, alloc_copies;
        uint64_t copied;         /* bytes in copies */
        unsigned aliases;        /* ModuleCopy.alias names made so far */

        UnwindWalk walk;
        unsigned cache_next;     /* round-robin victim slot */
        UnwindCacheSlot cache[UNWIND_CACHE_SLOTS];
};

/* vdso.c: reads the target's vDSO into u->vdso_fd, at [start, end) when end is not 0
 * (found in the maps the module list was read from), else where its maps say. */
int unwinder_vdso_load(Unwinder *u, uint64_t start, uint64_t end);

/* unwinder.c: empties the memory cache (at the start of every unwind). */
void unwinder_cache_reset(Unwinder *u);
