/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the texts of /proc/PID/task/TID/stat and status as the looks at every
 * thread parse them (patcher/target.c). The kernel writes them, but a thread names
 * itself (prctl), and the name is inside both. The first byte picks the parser; the
 * rest is the text, NUL-terminated as the reads leave it. Whatever the parse says must
 * come from inside the text: a stat state is a byte of it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "patcher/target-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *buf;

        if (size < 1 || size > 8192)
                return 0;
        buf = malloc(size);
        if (!buf)
                return 0;
        memcpy(buf, data + 1, size - 1);
        buf[size - 1] = 0;
        if (data[0] & 1) {
                TaskStat s;
                if (target__parse_task_stat(buf, &s) == 0 && (!s.state || !strchr(buf, s.state)))
                        abort();
        } else {
                uint64_t blocked;
                pid_t tracer;
                char state;
                target__parse_look_status(buf, &state, &tracer, &blocked);
                if (tracer < 0 || (state && !strchr(buf, state)))
                        abort();
        }
        free(buf);
        return 0;
}
