/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target "protocol": arbitrary bytes from a client, through the code ulpd runs on
 * them. The bytes go through a socketpair in pieces whose sizes the first input byte
 * chooses (so that lines split across reads are exercised), into MsgReader
 * (msgreader_fill, msgreader_next); every message that comes out goes through what
 * ulpd's dispatch does with each method's fields (request.c, protocol_get_*).
 *
 * Besides the sanitizers, it checks what ulpd relies on: accepted pids are positive,
 * distinct and at most PIDS_MAX; an accepted name is short, without '/' or newline;
 * option values are in range; and what ulpd formats from a message is one line that
 * parses back as one message. (Not necessarily as an equal object: json-c reads
 * sloppy numbers such as 1e as doubles and writes them back as they print.)
 */

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(e) do { \
                if (!(e)) { \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #e); \
                        abort(); \
                } \
        } while (0)

static int pid_cmp(const void *a, const void *b) {
        pid_t x = *(const pid_t *) a, y = *(const pid_t *) b;

        return (x > y) - (x < y);
}

static void check_transition(struct json_object *q) {
        _cleanup_free_ pid_t *pids = NULL, *sorted = NULL;
        size_t n = 0;
        UlpOptions o;
        const char *name;
        int r;

        r = parse_pids(q, &pids, &n);
        if (r == 0) {
                CHECK(n <= PIDS_MAX);
                CHECK((n == 0) == (pids == NULL));
                if (n > 0) {
                        sorted = malloc(n * sizeof(pid_t));
                        CHECK(sorted);
                        memcpy(sorted, pids, n * sizeof(pid_t));
                        qsort(sorted, n, sizeof(pid_t), pid_cmp);
                        for (size_t i = 0; i < n; i++) {
                                CHECK(sorted[i] > 0);
                                CHECK(i == 0 || sorted[i] != sorted[i - 1]);
                        }
                }
        } else
                CHECK(r == -EINVAL || r == -E2BIG || r == -ENOMEM);

        r = parse_options(q, &o);
        if (r == 0)
                CHECK(o.timeout_ms <= 24u * 3600 * 1000);
        else
                CHECK(r == -EINVAL);

        (void) protocol_get_bool(q, "all", false);
        (void) protocol_get_bool(q, "persist", false);
        (void) protocol_get_bool(q, "wait", true);
        name = sane_name(protocol_get_string(q, "name"));
        if (name) {
                CHECK(*name && strlen(name) < 128);
                CHECK(!strchr(name, '/') && !strchr(name, '\n'));
        }
}

static void check_pid_field(struct json_object *q, int64_t min) {
        int64_t pid = -1;
        int r;

        r = protocol_get_int(q, "pid", min, INT32_MAX, &pid);
        if (r == 0)
                CHECK(pid >= min && pid <= INT32_MAX);
        else
                CHECK(r == -EINVAL || r == -ENOENT);
}

/* What ulpd formats from this message comes back through a reader as one message. */
static void check_roundtrip(struct json_object *q) {
        _cleanup_free_ char *line = NULL;
        struct json_object *back = NULL;
        MsgReader rd;
        size_t len;

        line = protocol_format(q, &len);
        CHECK(line);
        if (len > PROTOCOL_MESSAGE_MAX)
                return;   /* protocol_send refuses it */
        msgreader_init(&rd);
        rd.buf = malloc(len);
        CHECK(rd.buf);
        memcpy(rd.buf, line, len);
        rd.len = rd.size = len;
        CHECK(msgreader_next(&rd, &back) == 1);
        CHECK(json_object_is_type(back, json_type_object));
        CHECK(rd.len == 0);
        json_object_put(back);
        msgreader_done(&rd);
}

static void dispatch(struct json_object *q) {
        const char *method = protocol_get_string(q, "method");

        if (protocol_streq(method, "apply") || protocol_streq(method, "revert"))
                check_transition(q);
        else if (protocol_streq(method, "check")) {
                check_pid_field(q, 1);
                (void) sane_name(protocol_get_string(q, "name"));
        } else if (protocol_streq(method, "status"))
                check_pid_field(q, 0);
        check_roundtrip(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        MsgReader rd;
        size_t chunk, sent = 0, got = 0;
        int sv[2];

        if (size < 1)
                return 0;
        /* 0: all at once; else pieces of 1..255 bytes */
        chunk = data[0] ? data[0] : SIZE_MAX;
        data++;
        size--;

        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
        msgreader_init(&rd);
        while (sent < size) {
                size_t n = MIN(chunk, size - sent);
                ssize_t w = send(sv[0], data + sent, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                bool failed = false;

                /* a full socket buffer: read what is there first */
                if (w < 0)
                        CHECK(errno == EAGAIN && got < sent);
                else
                        sent += (size_t) w;
                /* take in everything sent so far, handling each complete line as ulpd does */
                while (got < sent && !failed) {
                        struct json_object *q = NULL;
                        int r = msgreader_fill(&rd, sv[1]);

                        if (r == -EMSGSIZE)
                                failed = true;   /* ulpd closes the connection */
                        else {
                                CHECK(r > 0);
                                got += (size_t) r;
                        }
                        CHECK(rd.len <= PROTOCOL_MESSAGE_MAX + 1);
                        while (!failed && (r = msgreader_next(&rd, &q)) != 0) {
                                if (r < 0) {
                                        CHECK(r == -EBADMSG || r == -EMSGSIZE || r == -ENOMEM);
                                        failed = true;   /* ulpd closes the connection */
                                        break;
                                }
                                dispatch(q);
                                json_object_put(q);
                        }
                }
                if (failed)
                        break;
        }
        msgreader_done(&rd);
        close(sv[0]);
        close(sv[1]);
        return 0;
}
