/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A victim that watches itself: it checksums every loaded byte of its own executable
 * (code, read-only data, GOT, data, .bss) except the function patches replace, and
 * prints, every few milliseconds,
 *     tick N compute=C canary=ok|BAD
 * where C is compute(10): 20 unpatched, 30 with patch-canary.so. A patch file that
 * writes where it should not shows as canary=BAD; one that breaks the code kills it.
 * Linked with -z now so that nothing of its own is written after start-up.
 */

#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* In a section of its own, the only bytes a patch may change. */
__attribute__((noipa, section("patchme"))) int compute(int x);
__attribute__((noipa, section("patchme"))) int compute(int x) {
        volatile int k = 2;     /* more than a jump's 5 bytes of code */
        return x * k;
}
extern const char __start_patchme[], __stop_patchme[];

/* Data a stray relocation may hit; read by the patch through a ULP_REF. */
int canary_data[2048] = { 1, 2, 3 };

typedef struct Range {
        const unsigned char *start, *end;
} Range;

static int collect(struct dl_phdr_info *info, size_t size, void *data) {
        Range *v = data;
        (void)size;
        for (int i = 0, n = 0; i < info->dlpi_phnum && n < 8; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                if (ph->p_type != PT_LOAD)
                        continue;
                v[n].start = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
                v[n].end = v[n].start + ph->p_memsz;
                n++;
        }
        return 1;   /* the first object is the executable itself */
}

static uint64_t checksum(const Range *v) {
        uint64_t h = 1469598103934665603ULL;
        for (int i = 0; i < 8 && v[i].start; i++)
                for (const unsigned char *p = v[i].start; p < v[i].end; p++) {
                        if (p >= (const unsigned char *)__start_patchme &&
                            p < (const unsigned char *)__stop_patchme)
                                continue;
                        h = (h ^ *p) * 1099511628211ULL;
                }
        return h;
}

static void *worker(void *arg) {
        volatile int sink = 0;
        (void)arg;
        for (;;) {
                sink += compute(1);
                (void)sink;
                struct timespec ts = { 0, 200000 };
                nanosleep(&ts, NULL);
        }
        return NULL;
}

int main(void) {
        Range ranges[8] = {};
        pthread_t th;
        uint64_t want;

        setvbuf(stdout, NULL, _IOLBF, 0);
        dl_iterate_phdr(collect, ranges);
        want = checksum(ranges);
        for (int i = 0; i < 2; i++)
                if (pthread_create(&th, NULL, worker, NULL) != 0)
                        return 1;
        for (unsigned long tick = 0;; tick++) {
                int c = compute(10);
                printf("tick %lu compute=%d canary=%s\n", tick, c, checksum(ranges) == want ? "ok" : "BAD");
                struct timespec ts = { 0, 5000000 };
                nanosleep(&ts, NULL);
        }
}
