/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver's local copy of a control block: mapped, kept by a thread between its
 * operations, cleared (control.h, control-internal.h). */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/macro.h"
#include "patcher/control-internal.h"

/* The local copy is 2.1 MiB, of which a load reads the header, the areas and the
 * records in use (tens of KiB). Mapped rather than calloc()ed: fresh pages are zero and
 * only those touched cost anything. From malloc, a driver that frees one copy and
 * allocates the next (ulpd, an operation after another) gets heap memory once glibc has
 * raised its mmap threshold past that size, which calloc() clears, all 2.1 MiB of it,
 * at every operation.
 *
 * A thread keeps the copy of its last operation for its next one (ulpd's drivers run
 * one after another), cleared: a fresh mapping costs a page fault for each page an
 * operation touches (the thread table alone is 18) and its unmap a flush of the TLB of
 * every CPU the process ran on; on a paravirtualized guest that was 0.6 ms for 18
 * pages (docs/performance.md, tenth round). Only the pages the last operations touched
 * are cleared, as /proc/self/pagemap tells them (present, or swapped out: both hold
 * what was written), so that what a thread keeps stays what its operations touch, tens
 * of pages; the whole copy when pagemap cannot be read. Kept in a thread-specific key,
 * whose destructor unmaps it when the thread ends. */
static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;
static bool kept_ready;

static void kept_unmap(void *img) {
        (void)munmap(img, sizeof(ControlImage));
}

static void kept_key_create(void) {
        kept_ready = pthread_key_create(&kept_key, kept_unmap) == 0;
}

/* The copy the calling thread kept, NULL when none. */
static ControlImage *kept_take(void) {
        ControlImage *img;

        (void)pthread_once(&kept_once, kept_key_create);
        if (!kept_ready || !(img = pthread_getspecific(kept_key)))
                return NULL;
        (void)pthread_setspecific(kept_key, NULL);
        return img;
}

/* Keeps img for the thread's next operation: false when it keeps one already. */
static bool kept_give(ControlImage *img) {
        (void)pthread_once(&kept_once, kept_key_create);
        return kept_ready && !pthread_getspecific(kept_key) && pthread_setspecific(kept_key, img) == 0;
}

void control_kept_drop(void) {
        ControlImage *img = kept_take();
        if (img)
                kept_unmap(img);
}

#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_SWAPPED (1ULL << 62)

static int pagemap_fd = -1;
static pthread_once_t pagemap_once = PTHREAD_ONCE_INIT;

static void pagemap_open(void) {
        pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

/* All zeros again: every page of img that holds anything cleared (see above). */
static void kept_clear(ControlImage *img) {
        enum { PAGES = (sizeof(ControlImage) + 4095) / 4096 };
        uint64_t pm[PAGES];
        uint8_t *b = (uint8_t *)img;

        (void)pthread_once(&pagemap_once, pagemap_open);
        if (pagemap_fd < 0 ||
            pread(pagemap_fd, pm, sizeof(pm), (off_t)((uintptr_t)img / 4096 * sizeof(uint64_t))) != sizeof(pm)) {
                memset(img, 0, sizeof(*img));
                return;
        }
        for (size_t i = 0; i < PAGES; i++)
                if (pm[i] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED))
                        memset(b + i * 4096, 0, MIN((size_t)4096, sizeof(*img) - i * 4096));
}

int control__alloc(Control *c) {
        if (!c->img) {
                void *p = kept_take();
                if (p)
                        kept_clear(p);
                else
                        p = mmap(NULL, sizeof(ControlImage), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                 -1, 0);
                if (p == MAP_FAILED)
                        return -ENOMEM;
                c->img = p;
                c->img_mapped = true;
        }
        return 0;
}

/* All zeros, touching nothing: a mapping's pages are dropped, to come back zero. */
void control__clear(Control *c) {
        if (!c->img_mapped || madvise(c->img, sizeof(ControlImage), MADV_DONTNEED) < 0)
                memset(c->img, 0, sizeof(*c->img));
}

void control_done(Control *c) {
        if (c->img_mapped) {
                if (!kept_give(c->img))
                        (void)munmap(c->img, sizeof(ControlImage));
        } else
                free(c->img);
        c->img = NULL;
        c->img_mapped = false;
}
