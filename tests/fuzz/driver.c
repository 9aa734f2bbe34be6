/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Runs a fuzz target (LLVMFuzzerTestOneInput) without libFuzzer: over every file of
 * the directories and over the files given as arguments, or over the target's
 * committed corpus (FUZZ_CORPUS) when given none. Each input is passed in a buffer of
 * exactly its size, so that a sanitizer build catches a read past its end. Exits 0
 * when every input ran, 1 when an argument could not be read or there was no input at
 * all (an empty corpus tests nothing); a crash is the target's failure.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INPUT_MAX (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path, size_t *n_inputs) {
        struct stat st;
        uint8_t *buf;
        size_t done = 0;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size > INPUT_MAX) {
                fprintf(stderr, "%s: not a regular file of at most %u bytes\n", path, INPUT_MAX);
                close(fd);
                return -1;
        }
        /* exactly the input's size, so that an overread is caught; malloc(0) may give NULL */
        buf = malloc(st.st_size ? (size_t) st.st_size : 1);
        if (!buf) {
                close(fd);
                return -1;
        }
        while (done < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + done, (size_t) st.st_size - done);

                if (n <= 0) {
                        fprintf(stderr, "%s: short read\n", path);
                        free(buf);
                        close(fd);
                        return -1;
                }
                done += (size_t) n;
        }
        close(fd);
        LLVMFuzzerTestOneInput(buf, done);
        free(buf);
        (*n_inputs)++;
        return 0;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char * const *) a, *(char * const *) b);
}

static int run_path(const char *path, size_t *n_inputs) {
        struct stat st;
        struct dirent *de;
        char **names = NULL;
        size_t n = 0;
        int r = 0;
        DIR *d;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        if (!S_ISDIR(st.st_mode))
                return run_file(path, n_inputs);
        d = opendir(path);
        if (!d) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        /* sorted: the same order on every machine, so a failure reproduces */
        while ((de = readdir(d))) {
                char **v;

                if (de->d_name[0] == '.')
                        continue;
                v = realloc(names, (n + 1) * sizeof(char *));
                if (!v || asprintf(&v[n], "%s/%s", path, de->d_name) < 0) {
                        names = v ? v : names;
                        r = -1;
                        break;
                }
                names = v;
                n++;
        }
        closedir(d);
        if (n)
                qsort(names, n, sizeof(char *), name_cmp);
        for (size_t i = 0; i < n; i++) {
                if (r == 0 && run_file(names[i], n_inputs) < 0)
                        r = -1;
                free(names[i]);
        }
        free(names);
        return r;
}

int main(int argc, char **argv) {
        size_t n_inputs = 0;
        int r = 0;

        if (LLVMFuzzerInitialize)
                LLVMFuzzerInitialize(&argc, &argv);
        if (argc < 2)
                r = run_path(FUZZ_CORPUS, &n_inputs);
        for (int i = 1; i < argc; i++)
                if (run_path(argv[i], &n_inputs) < 0)
                        r = -1;
        if (r < 0)
                return 1;
        if (n_inputs == 0) {
                fprintf(stderr, "no input: an empty corpus tests nothing\n");
                return 1;
        }
        fprintf(stderr, "%zu inputs ran\n", n_inputs);
        return 0;
}
