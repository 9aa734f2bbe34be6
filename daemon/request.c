/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request fields from clients, bounded before ulpd uses them. See request.h.
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/request.h"

int parse_options(struct json_object *q, UlpOptions *ret) {
        struct json_object *o;
        int64_t t = 0;

        *ret = (UlpOptions) {};
        if (!json_object_object_get_ex(q, "options", &o))
                return 0;
        if (!json_object_is_type(o, json_type_object))
                return -EINVAL;
        if (protocol_get_int(o, "timeout_ms", 0, 24LL * 3600 * 1000, &t) == -EINVAL)
                return -EINVAL;
        ret->timeout_ms = (unsigned) t;
        ret->force = protocol_get_bool(o, "force", false);
        ret->global = protocol_get_bool(o, "global", false);
        ret->return_trap = protocol_get_bool(o, "return_trap", false);
        return 0;
}

static int pid_compare(const void *a, const void *b) {
        pid_t x = *(const pid_t *) a, y = *(const pid_t *) b;

        return (x > y) - (x < y);
}

int parse_pids(struct json_object *q, pid_t **ret, size_t *ret_n) {
        _cleanup_free_ pid_t *sorted = NULL;
        struct json_object *a;
        pid_t *v;
        size_t n;

        *ret = NULL;
        *ret_n = 0;
        if (!json_object_object_get_ex(q, "pids", &a))
                return 0;
        if (!json_object_is_type(a, json_type_array))
                return -EINVAL;
        n = json_object_array_length(a);
        if (n > PIDS_MAX)
                return -E2BIG;
        if (n == 0)
                return 0;
        v = calloc(n, sizeof(pid_t));
        sorted = calloc(n, sizeof(pid_t));
        if (!v || !sorted) {
                free(v);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(a, i);
                int64_t x;

                if (!json_object_is_type(e, json_type_int) ||
                    (x = json_object_get_int64(e)) <= 0 || x > INT32_MAX) {
                        free(v);
                        return -EINVAL;
                }
                v[i] = sorted[i] = (pid_t) x;
        }
        /* The same pid twice would race itself. Sorted, not pairwise: n log n. */
        qsort(sorted, n, sizeof(pid_t), pid_compare);
        for (size_t i = 1; i < n; i++)
                if (sorted[i] == sorted[i - 1]) {
                        free(v);
                        return -EINVAL;
                }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* The patch file name a client sent: a plain file name of sane length, or NULL. */
const char *sane_name(const char *s) {
        if (!s || !*s || strlen(s) >= 128 || strchr(s, '/') || strchr(s, '\n'))
                return NULL;
        return s;
}
