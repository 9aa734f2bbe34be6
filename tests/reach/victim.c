/*
 * Victim of tests/reach, built with gcc and clang, PIE, non-PIE and static: threads call
 * the functions the patches change through volatile function pointers (so that neither
 * compiler inlines or folds them: clang has no noipa); the main thread prints what they
 * return every 10 ms, so a test sees what the process itself observes:
 *     tick N tiny=T mid=M lib=L word=W
 * With REACH_MAP_COPIES=N in its environment it first maps the first page of its own
 * executable N times, executable, inside an inaccessible reservation, each copy farther
 * from the next than the file's size: N ELF objects more to whoever reads
 * /proc/PID/maps (an object spans what its program headers say). REACH_MAP_FILE=PATH maps
 * that file instead (its first page, readable only).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef REACH_LIB_INSIDE
#include "lib.c"
#else
int lib_fn(int x);
#endif

volatile int bias;
volatile int sink;
int tiny_fn(int x);
int mid_fn(int x);
int word_fn(const char *s);

/* 4 bytes with gcc -O2 (lea 0x1(%rdi),%eax; ret), 8 after an endbr64, then the padding
 * up to the next function. */
__attribute__((noinline, used)) int tiny_fn(int x) {
        return x + 1;
}

__attribute__((noinline, used)) int mid_fn(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 2 - 6;
}

__attribute__((noinline, used)) int word_fn(const char *s) {
        return (int)strlen(s) + bias;
}

static int (*volatile p_tiny)(int) = tiny_fn;
static int (*volatile p_mid)(int) = mid_fn;
static int (*volatile p_lib)(int) = lib_fn;
static int (*volatile p_word)(const char *) = word_fn;

static void *worker(void *arg) {
        (void)arg;
        for (unsigned long n = 0;; n++) {
                sink = p_tiny(1) + p_mid(1) + p_lib(1) + p_word("abc");
                if ((n & 0xfff) == 0)
                        usleep(1);
        }
        return NULL;
}

static void map_copies(void) {
        const char *v = getenv("REACH_MAP_COPIES");
        long n = v ? atol(v) : 0, page = sysconf(_SC_PAGESIZE), stride;
        struct stat st;
        char *base;
        int fd;

        if (n <= 0)
                return;
        const char *file = getenv("REACH_MAP_FILE");
        int prot = file ? PROT_READ : PROT_READ | PROT_EXEC;
        fd = open(file ? file : "/proc/self/exe", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                perror("reach-victim: the file to map");
                exit(1);
        }
        stride = (st.st_size + page - 1) / page * page + 16 * page;
        base = mmap(NULL, (size_t)(n * stride), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) {
                perror("reach-victim: reserve");
                exit(1);
        }
        for (long i = 0; i < n; i++)
                if (mmap(base + i * stride, (size_t)page, prot, MAP_PRIVATE | MAP_FIXED, fd, 0) ==
                    MAP_FAILED) {
                        perror("reach-victim: mmap");
                        exit(1);
                }
        close(fd);
}

static void *ticker(void *arg) {
        (void)arg;
        for (unsigned long tick = 0;; tick++) {
                printf("tick %lu tiny=%d mid=%d lib=%d word=%d\n", tick, p_tiny(10), p_mid(10), p_lib(10),
                       p_word("hello"));
                usleep(10000);
        }
        return NULL;
}

/* REACH_ZOMBIE_LEADER set: the main thread leaves (pthread_exit) once the others run, a
 * zombie for as long as the process lives; a thread of its own ticks. */
int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 4;
        pthread_t t;

        map_copies();

        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 0; i < n; i++)
                pthread_create(&t, NULL, worker, NULL);
        if (getenv("REACH_ZOMBIE_LEADER")) {
                pthread_create(&t, NULL, ticker, NULL);
                pthread_exit(NULL);
        }
        ticker(NULL);
}
