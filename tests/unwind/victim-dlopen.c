/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* victim-dlopen LIBRARY FUNCTION: loads LIBRARY, says "ready" and calls FUNCTION (which
 * never returns) with a 4 MiB buffer of its own. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
        void *h, (*fn)(void *);
        char *buf;

        if (argc != 3)
                return 2;
        h = dlopen(argv[1], RTLD_NOW);
        if (!h) {
                fprintf(stderr, "%s\n", dlerror());
                return 1;
        }
        *(void **) &fn = dlsym(h, argv[2]);
        buf = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (!fn || buf == MAP_FAILED)
                return 1;
        memset(buf, 1, 4 << 20);
        printf("ready\n");
        fflush(stdout);
        fn(buf);
        return 0;
}
