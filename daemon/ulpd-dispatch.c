/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A whole request from a client, to the method it names (ulpd-method-*.c), and what
 * the methods share: error replies, per-pid error results, the check of a patch file
 * descriptor a client passed.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/report-json.h"
#include "daemon/ulpd.h"

static const struct {
        const char *name;
        void (*fn)(Connection *c, struct json_object *q);
} methods[] = {
        { "check",  method_check },
        { "status", method_status },
        { "ping",   method_ping },
};

void dispatch(Connection *c, struct json_object *q) {
        const char *method = protocol_get_string(q, "method");

        if (!method) {
                connection_fail(c, -EBADMSG, "a request needs a \"method\"");
                return;
        }
        if (c->req || c->stream) {
                /* out of order: the previous request has not had its final reply */
                connection_fail(c, -EBUSY, "a request is already in progress on this connection");
                return;
        }
        /* a fd that arrived with an earlier request is no business of this one */
        if (!protocol_streq(method, "apply") && !protocol_streq(method, "revert") &&
            !protocol_streq(method, "check") && !protocol_streq(method, "status")) {
                int fd;
                while ((fd = msgreader_take_fd(&c->rd)) >= 0)
                        close(fd);
        }
        if (protocol_streq(method, "apply"))
                method_transition(c, q, JOB_APPLY);
        else if (protocol_streq(method, "revert"))
                method_transition(c, q, JOB_REVERT);
        else {
                for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                        if (protocol_streq(method, methods[i].name)) {
                                methods[i].fn(c, q);
                                return;
                        }
                reply_error(c, -EOPNOTSUPP, "unknown method \"%.64s\"", method);
        }
}

bool reply_error(Connection *c, int error, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return connection_reply(c, protocol_new_error(error, msg));
}

/* Results in parts of at most so many (protocol.h); each is a report of a few hundred
 * bytes. They are queued at once: the request holds them all anyway, and a client that
 * does not read is dropped at OUTPUT_MAX. */
#define RESULT_PART_MAX 256
#define RESULT_PART_BYTES (64u * 1024u)

static size_t json_length(struct json_object *o) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        return s ? strlen(s) : 0;
}

/* A new array of results[*next...], within a part's bounds (or a message's). */
static struct json_object *results_slice(struct json_object *results, size_t *next, bool parts) {
        size_t n = json_object_array_length(results), bytes = 0, budget;
        struct json_object *a = json_object_new_array();

        budget = parts ? RESULT_PART_BYTES : PROTOCOL_MESSAGE_MAX - 1024u;
        for (size_t k = 0; a && *next < n; k++) {
                struct json_object *e = json_object_array_get_idx(results, *next);
                size_t len = json_length(e) + 1;

                if (k > 0 && (bytes + len > budget || (parts && k >= RESULT_PART_MAX)))
                        break;
                json_object_array_add(a, json_object_get(e));
                bytes += len;
                (*next)++;
        }
        return a;
}

bool reply_results(Connection *c, struct json_object *results, bool parts) {
        size_t n = json_object_array_length(results), next = 0;
        struct json_object *o;

        for (;;) {
                struct json_object *a = results_slice(results, &next, parts);

                if (!a)
                        return reply_error(c, -ENOMEM, "out of memory");
                if (next < n && !parts) {
                        json_object_put(a);
                        return reply_error(c, -EMSGSIZE, "the results of these %zu processes are larger than one "
                                           "message (%u KiB); ulpctl of ulp %s or later receives them in parts, "
                                           "ulpctl status shows each process's state", n,
                                           PROTOCOL_MESSAGE_MAX / 1024, ULP_VERSION);
                }
                o = protocol_new_message(next < n ? "result_part" : "result");
                if (o) {
                        json_object_object_add(o, "results", a);
                        if (next == n)
                                json_object_object_add(o, "results_total", json_object_new_uint64(n));
                } else
                        json_object_put(a);
                if (!connection_reply(c, o))
                        return false;
                if (next == n)
                        return true;
        }
}

/* A per-pid result that never became a Job (refused, or failed to start). */
struct json_object *result_error(pid_t pid, int error, const char *message, const UlpReport *rep) {
        UlpReport empty = {};
        struct json_object *o;

        if (!rep) {
                snprintf(empty.message, sizeof(empty.message), "%s", message);
                rep = &empty;
        }
        o = report_to_json(rep, error);
        if (o)
                json_object_object_add(o, "pid", json_object_new_int(pid));
        return o;
}

/* Makes sure *fd is a regular file of sane size: reading a pipe or socket a client
 * passed would block the whole daemon. Then replaces it with our own sealed copy
 * (ulp_patch_file_copy()), which everything after works from: the client may truncate or grow
 * its file, or write to it, and none of it reaches us. */
int check_patch_fd(int *fdp, char *reason, size_t len) {
        struct stat st;
        int fd = *fdp, copy, fl, r;

        if (fd < 0) {
                snprintf(reason, len, "the request carries no patch file descriptor");
                return -EBADF;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                snprintf(reason, len, "the patch must be a regular file");
                return -EBADF;
        }
        if ((uint64_t) st.st_size > ULP_PATCH_FILE_MAX) {
                snprintf(reason, len, "the patch file is larger than %llu MiB", ULP_PATCH_FILE_MAX >> 20);
                return -EFBIG;
        }
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY) {
                snprintf(reason, len, "the patch file descriptor is not readable");
                return -EBADF;
        }
        r = ulp_patch_file_copy(fd, &copy, reason, len);
        if (r < 0)
                return r;
        close(fd);
        *fdp = copy;
        return 0;
}
