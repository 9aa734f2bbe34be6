/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reports and status survive the trip through JSON; the wire framing rejects garbage. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/protocol.h"
#include "daemon/report-json.h"
#include "tests/test.h"

TEST(report_roundtrip) {
        UlpStraggler st[2] = { { 42, "worker", "compute+0x12" }, { 43, "io", "inner" } };
        char *w[] = { "compute.constprop.0 not patched", NULL };
        UlpReport r = { .threads = 5, .switched = 3, .retries = 7, .max_thread_stop_us = 123,
                        .max_stw_us = 456, .total_ms = 789, .forced = true,
                        .warnings = w, .n_warnings = 1, .stragglers = st, .n_stragglers = 2 };
        UlpReport back;
        struct json_object *o;
        int error = 0;

        strcpy(r.patch_name, "fix");
        strcpy(r.message, "did not finish in time");
        o = report_to_json(&r, -ETIMEDOUT);
        ASSERT_TRUE(o);
        ASSERT_OK(report_from_json(o, &back, &error));
        ASSERT_EQ(error, -ETIMEDOUT);
        ASSERT_STREQ(back.message, "did not finish in time");
        ASSERT_STREQ(back.patch_name, "fix");
        ASSERT_EQ(back.threads, 5);
        ASSERT_EQ(back.switched, 3);
        ASSERT_EQ(back.retries, 7);
        ASSERT_EQ(back.max_thread_stop_us, 123);
        ASSERT_EQ(back.max_stw_us, 456);
        ASSERT_EQ(back.total_ms, 789);
        ASSERT_TRUE(back.forced);
        ASSERT_EQ(back.n_warnings, 1);
        ASSERT_STREQ(back.warnings[0], w[0]);
        ASSERT_TRUE(back.warnings[1] == NULL);
        ASSERT_EQ(back.n_stragglers, 2);
        ASSERT_EQ(back.stragglers[1].tid, 43);
        ASSERT_STREQ(back.stragglers[0].comm, "worker");
        ASSERT_STREQ(back.stragglers[0].function, "compute+0x12");
        ASSERT_STREQ(json_object_get_string(json_object_object_get(o, "errno_name")), "ETIMEDOUT");
        report_json_done(&back);
        json_object_put(o);

        /* success: ok true, no error key, error 0 */
        r.message[0] = 0;
        o = report_to_json(&r, 0);
        ASSERT_TRUE(json_object_get_boolean(json_object_object_get(o, "ok")));
        ASSERT_TRUE(!json_object_object_get_ex(o, "error", NULL));
        ASSERT_OK(report_from_json(o, &back, &error));
        ASSERT_EQ(error, 0);
        report_json_done(&back);
        json_object_put(o);

        /* not a report */
        o = json_object_new_array();
        ASSERT_ERR(report_from_json(o, &back, &error), -EBADMSG);
        json_object_put(o);
}

TEST(status_roundtrip) {
        UlpFuncStatus f = { "", "compute", 0x401136 };
        UlpStraggler st = { 7, "t", "compute" };
        UlpPatchStatus p[2] = {
                { .state = ULP_PATCH_PATCHED, .replace = true, .funcs = &f, .n_funcs = 1 },
                { .state = ULP_PATCH_TRANSITION, .forced = true, .stragglers = &st, .n_stragglers = 1 },
        };
        UlpProcessStatus s[2] = { { .pid = 100, .patches = p, .n_patches = 2 }, { .pid = 101 } };
        p[0].applied_ns = 1796000000ULL * 1000000000ULL + 123;   /* 2026-11-30T...Z, to the second */
        p[0].applied_uid = 1000;
        UlpProcessStatus *back = NULL;
        size_t n = 0;
        struct json_object *o;

        strcpy(p[0].name, "fix1");
        strcpy(p[1].name, "fix2");
        strcpy(s[0].comm, "victim");
        o = status_to_json(s, 2);
        ASSERT_TRUE(o);
        /* addresses travel as hex strings (docs/json.md) */
        ASSERT_TRUE(strstr(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                           "\"symbol\":\"compute\",\"addr\":\"0x401136\""));
        ASSERT_OK(status_from_json(o, &back, &n));
        ASSERT_EQ(n, 2);
        ASSERT_EQ(back[0].pid, 100);
        ASSERT_STREQ(back[0].comm, "victim");
        ASSERT_EQ(back[0].n_patches, 2);
        ASSERT_STREQ(back[0].patches[0].name, "fix1");
        ASSERT_STREQ(ulp_patch_state_to_string(back[0].patches[0].state), "patched");
        ASSERT_TRUE(back[0].patches[0].replace);
        ASSERT_EQ(back[0].patches[0].n_funcs, 1);
        ASSERT_STREQ(back[0].patches[0].funcs[0].symbol, "compute");
        ASSERT_EQ_U64(back[0].patches[0].funcs[0].addr, 0x401136);
        ASSERT_EQ_U64(back[0].patches[0].applied_ns, 1796000000ULL * 1000000000ULL);
        ASSERT_EQ(back[0].patches[0].applied_uid, 1000);
        ASSERT_EQ_U64(back[0].patches[1].applied_ns, 0);    /* not known: not sent */
        ASSERT_STREQ(ulp_patch_state_to_string(back[0].patches[1].state), "transition");
        ASSERT_TRUE(back[0].patches[1].forced);
        ASSERT_EQ(back[0].patches[1].n_stragglers, 1);
        ASSERT_EQ(back[0].patches[1].stragglers[0].tid, 7);
        ASSERT_EQ(back[1].n_patches, 0);
        status_json_free(back, n);
        json_object_put(o);
}

static int feed(MsgReader *rd, const char *s) {
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
                return -errno;
        r = (int) write(sv[0], s, strlen(s));
        close(sv[0]);
        if (r < 0)
                return -errno;
        while ((r = msgreader_fill(rd, sv[1])) > 0)
                ;
        close(sv[1]);
        return r;
}

/* A status from an older ulpd, with the address as a number, still reads. */
TEST(status_addr_number) {
        struct json_object *o = json_tokener_parse(
                "{\"processes\":[{\"pid\":5,\"patches\":[{\"name\":\"a\",\"state\":\"patched\","
                "\"functions\":[{\"symbol\":\"f\",\"addr\":4198710},{\"symbol\":\"g\",\"addr\":\"0xzz\"}]}]}]}");
        UlpProcessStatus *back = NULL;
        size_t n = 0;

        ASSERT_TRUE(o);
        ASSERT_OK(status_from_json(o, &back, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ_U64(back[0].patches[0].funcs[0].addr, 0x401136);
        ASSERT_EQ_U64(back[0].patches[0].funcs[1].addr, 0);
        status_json_free(back, n);
        json_object_put(o);
}

TEST(framing) {
        struct json_object *o = NULL;
        MsgReader rd;

        msgreader_init(&rd);
        ASSERT_OK(feed(&rd, "{\"version\":1,\"method\":\"ping\"}\n{\"version\":1}"));
        ASSERT_EQ(msgreader_next(&rd, &o), 1);
        ASSERT_STREQ(protocol_get_string(o, "method"), "ping");
        json_object_put(o);
        ASSERT_EQ(msgreader_next(&rd, &o), 0);            /* truncated: needs more */
        msgreader_done(&rd);

        msgreader_init(&rd);
        ASSERT_OK(feed(&rd, "garbage\n{\"version\":2}\n[1]\n{\"version\":1} x\n{\"version\":1,\"a\":\n"));
        for (int i = 0; i < 5; i++)
                ASSERT_ERR(msgreader_next(&rd, &o), -EBADMSG);
        ASSERT_EQ(msgreader_next(&rd, &o), 0);
        msgreader_done(&rd);
}

/* The patch and two access proofs per target: more descriptors than the kernel passes in
 * one sendmsg() arrive all, in order, with the one line they belong to. */
TEST(fds_batched) {
        struct rlimit rl;
        int sp[2], fds[PROTOCOL_FDS_MAX];
        struct json_object *q = json_object_new_object(), *got = NULL;
        MsgReader rd;
        int r = 0;

        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
        if (rl.rlim_cur < 3 * PROTOCOL_FDS_MAX && rl.rlim_max >= 3 * PROTOCOL_FDS_MAX) {
                rl.rlim_cur = 3 * PROTOCOL_FDS_MAX;
                ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
        }
        if (rl.rlim_cur < 3 * PROTOCOL_FDS_MAX) {
                test_skip("RLIMIT_NOFILE %llu is below %d", (unsigned long long) rl.rlim_cur,
                          3 * PROTOCOL_FDS_MAX);
        }
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
        for (int i = 0; i < PROTOCOL_FDS_MAX; i++) {
                char name[32];
                snprintf(name, sizeof(name), "fd-%d", i);
                fds[i] = memfd_create(name, MFD_CLOEXEC);
                ASSERT_TRUE(fds[i] >= 0);
        }
        json_object_object_add(q, "method", json_object_new_string("ping"));
        ASSERT_OK(protocol_send_fds(sp[0], q, fds, PROTOCOL_FDS_MAX));
        ASSERT_ERR(protocol_send_fds(sp[0], q, fds, PROTOCOL_FDS_MAX + 1), -E2BIG);
        json_object_put(q);
        for (int i = 0; i < PROTOCOL_FDS_MAX; i++)
                close(fds[i]);

        msgreader_init(&rd);
        while ((r = msgreader_next(&rd, &got)) == 0)
                ASSERT_TRUE(msgreader_fill(&rd, sp[1]) > 0);
        ASSERT_EQ(r, 1);
        ASSERT_EQ(rd.n_fds, PROTOCOL_FDS_MAX);
        for (int i = 0; i < PROTOCOL_FDS_MAX; i++) {
                char path[64], link[128], want[64];
                int fd = msgreader_take_fd(&rd);
                ssize_t n;

                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                n = readlink(path, link, sizeof(link) - 1);
                ASSERT_TRUE(n > 0);
                link[n] = 0;
                snprintf(want, sizeof(want), "/memfd:fd-%d (deleted)", i);
                ASSERT_STREQ(link, want);
                close(fd);
        }
        json_object_put(got);
        msgreader_done(&rd);
        close(sp[0]);
        close(sp[1]);
}

TEST_MAIN()
