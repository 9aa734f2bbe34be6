/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ulpbuild/ulp-build-diff.h"

/* The functions the diff touches: for each changed line, the function whose definition
 * encloses it in the fixed tree (the last line before it that starts a definition, as
 * diff -p finds hunk contexts). For the report only: what a change did is decided by
 * the code, never by this. */
char **touched;
size_t n_touched;

static bool is_ident(char c) {
        return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool is_touched(const char *name) {
        size_t n = strcspn(name, ".");  /* fee.part.0 is fee's */
        for (size_t i = 0; i < n_touched; i++)
                if (strlen(touched[i]) == n && strncmp(touched[i], name, n) == 0)
                        return true;
        return false;
}

/* The name a definition line starts, e.g. "static inline int fee(int amount) {" → fee. */
static char *definition_name(const char *line) {
        const char *paren = strchr(line, '(');
        const char *end, *start;

        if (!is_ident(line[0]) || !paren || strchr(line, ';') || strchr(line, '='))
                return NULL;
        for (end = paren; end > line && end[-1] == ' '; end--)
                ;
        for (start = end; start > line && is_ident(start[-1]); start--)
                ;
        return end > start ? strndup(start, (size_t)(end - start)) : NULL;
}

static void touch_line(const char *tree, const char *file, long lineno) {
        char path[4096], *line = NULL, *name = NULL;
        size_t cap = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", tree, file);
        if (!(f = fopen(path, "r")))
                return;
        for (long l = 1; l <= lineno && getline(&line, &cap, f) > 0; l++) {
                char *d = definition_name(line);
                if (d) {
                        free(name);
                        name = d;
                }
        }
        fclose(f);
        free(line);
        if (!name || is_touched(name)) {
                free(name);
                return;
        }
        touched = realloc(touched, (n_touched + 1) * sizeof(*touched));
        if (!touched)
                die("out of memory");
        touched[n_touched++] = name;
}

void read_diff(const char *path, const char *tree) {
        FILE *f = fopen(path, "r");
        char *line = NULL, file[4096] = "";
        size_t cap = 0;
        long newline = 0;

        if (!f)
                die("cannot open %s: %s", path, strerror(errno));
        while (getline(&line, &cap, f) > 0) {
                long c;
                line[strcspn(line, "\n")] = 0;
                if (strncmp(line, "+++ ", 4) == 0) {
                        /* "+++ b/dir/file.c<TAB>date": drop the first component (patch -p1) */
                        const char *p = strchr(line + 4, '/');
                        snprintf(file, sizeof(file), "%.*s", (int)strcspn(p ? p + 1 : "", "\t"), p ? p + 1 : "");
                } else if (strncmp(line, "@@ ", 3) == 0 && sscanf(line, "@@ -%*d,%*d +%ld", &c) == 1) {
                        newline = c;
                } else if (strncmp(line, "@@ ", 3) == 0 && sscanf(line, "@@ -%*d +%ld", &c) == 1) {
                        newline = c;
                } else if (line[0] == '+' && file[0]) {
                        touch_line(tree, file, newline++);
                } else if (line[0] == '-' && file[0] && strncmp(line, "---", 3) != 0) {
                        touch_line(tree, file, newline);
                } else if (line[0] == ' ') {
                        newline++;
                }
        }
        free(line);
        fclose(f);
}
