/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A process that carries a control block ulp did not make: a private mapping of a memfd
 * named "ulp-control", as any user can create, filled from a file in the fuzz target's
 * form (dump-control-block.py). It watches its own block and reports whether anybody
 * wrote into it.
 *
 *     forger BLOCK STATUS_FILE MODE
 *
 * MODE: "fixself" claims the address it is mapped at; "keep" keeps the file's; "odd"
 * fixes the address and leaves the seqlock odd with itself as the writer, forever;
 * "churn" does the same and has a thread change the generation without end; "noareas"
 * fixes the address but does not map the block's code areas (all other modes do).
 * The block is mapped at FORGER_ADDR. Every 20 ms STATUS_FILE gets one line:
 *     ready N sum=HEX        the block is as it was written (N: checks so far)
 *     changed                somebody wrote into it (the generation word not counted)
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FORGER_ADDR 0x6f0000000000ULL
#define BLOCK_SIZE (2155024 + 4096 - 2155024 % 4096)
#define HEADER 4096
#define AREAS_OFF 77824
#define SELF_OFF 16
#define GEN_OFF 32
#define N_AREAS_OFF 72

static uint8_t *block;

static uint64_t checksum(void) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < BLOCK_SIZE; i++) {
                uint8_t b = i >= GEN_OFF && i < GEN_OFF + 4 ? 0 : block[i];
                h = (h ^ b) * 0x100000001b3ULL;
        }
        return h;
}

static uint64_t start_time(void) {
        char buf[1024], *p;
        FILE *f = fopen("/proc/self/stat", "re");
        size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

        if (f)
                fclose(f);
        buf[n] = 0;
        p = strrchr(buf, ')');
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        return p ? strtoull(p + 1, NULL, 10) : 0;
}

static void *churn(void *arg) {
        _Atomic uint32_t *gen = (_Atomic uint32_t *)(block + GEN_OFF);
        for (;;)
                atomic_fetch_add(gen, 1);
        return NULL;
}

int main(int argc, char **argv) {
        static uint8_t in[HEADER + BLOCK_SIZE];
        const char *mode = argc > 3 ? argv[3] : "fixself";
        uint64_t sum, addr = FORGER_ADDR;
        FILE *f;
        size_t n;
        int fd;

        if (argc < 4) {
                fprintf(stderr, "usage: forger BLOCK STATUS_FILE fixself|keep|odd|churn\n");
                return 2;
        }
        f = fopen(argv[1], "re");
        if (!f)
                return perror(argv[1]), 1;
        n = fread(in, 1, sizeof(in), f);
        fclose(f);
        fd = memfd_create("ulp-control", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, BLOCK_SIZE) < 0)
                return perror("memfd"), 1;
        block = mmap((void *)addr, BLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
        if (block == MAP_FAILED)
                return perror("mmap"), 1;
        close(fd);
        memcpy(block, in, n < HEADER ? n : HEADER);
        if (n > HEADER)
                memcpy(block + AREAS_OFF, in + HEADER, n - HEADER);
        if (strcmp(mode, "keep") != 0)
                memcpy(block + SELF_OFF, &addr, 8);
        if (strcmp(mode, "odd") == 0 || strcmp(mode, "churn") == 0) {
                /* generation, writer_pid, writer_start, writer_target: a live writer that never ends */
                uint32_t gen = 1001;
                int32_t pid = getpid();
                uint64_t st = start_time();
                memcpy(block + GEN_OFF, &gen, 4);
                memcpy(block + GEN_OFF + 4, &pid, 4);
                memcpy(block + GEN_OFF + 8, &st, 8);
                memcpy(block + GEN_OFF + 16, &pid, 4);
        }
        /* The block's code areas, where they are free here: anonymous read-execute
         * mappings, as ulp makes them, so that a copied block looks real. */
        for (uint32_t i = 0, na = *(uint32_t *)(block + N_AREAS_OFF); strcmp(mode, "noareas") && i < na && i < 64;
             i++) {
                uint64_t a = *(uint64_t *)(block + AREAS_OFF + 32 * i);
                uint64_t len = *(uint64_t *)(block + AREAS_OFF + 32 * i + 8);
                if (len && len <= (1 << 20))
                        (void)mmap((void *)a, len, PROT_READ | PROT_EXEC,
                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        }
        sum = checksum();
        if (strcmp(mode, "churn") == 0) {
                pthread_t t;
                pthread_create(&t, NULL, churn, NULL);
        }
        for (unsigned long i = 0;; i++) {
                char tmp[4096], line[64];
                uint64_t now = checksum();
                snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
                if (now == sum)
                        snprintf(line, sizeof(line), "ready %lu sum=%llx\n", i, (unsigned long long)sum);
                else
                        snprintf(line, sizeof(line), "changed\n");
                f = fopen(tmp, "we");
                if (f) {
                        fputs(line, f);
                        fclose(f);
                        rename(tmp, argv[2]);
                }
                usleep(20000);
        }
}
