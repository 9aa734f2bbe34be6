/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The methods that only look: check (would this patch apply?), status, ping.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/report-json.h"
#include "daemon/request.h"
#include "daemon/ulpd.h"

void method_check(Connection *c, struct json_object *q) {
        _cleanup_close_ int patch_fd = -1;
        _cleanup_(auth_proofs_done) AuthProofs proofs = {};
        struct json_object *o, *rep;
        UlpReport report = {};
        const char *hint = sane_name(protocol_get_string(q, "name"));
        char reason[512];
        int64_t pid = 0;
        int r, mem_fd = -1;

        r = auth_take_fds(&c->rd, q, 1, &patch_fd, &proofs, reason, sizeof(reason));
        if (r < 0) {
                reply_error(c, r, "%s", reason);
                return;
        }
        if (protocol_get_int(q, "pid", 1, INT32_MAX, &pid) < 0) {
                reply_error(c, -EINVAL, "check needs one process id");
                return;
        }
        r = check_patch_fd(&patch_fd, reason, sizeof(reason));
        if (r < 0) {
                reply_error(c, r, "%s", reason);
                return;
        }
        r = auth_check(&c->cred, &proofs, (pid_t) pid, &mem_fd, reason, sizeof(reason));
        if (r < 0) {
                if (r == -EPERM && log_refusal_pass(c->m))
                        log_full(LOG_WARNING, (pid_t) pid, hint, NULL, "refused check of pid %d for uid %u: %s",
                                 (int) pid, (unsigned) c->cred.uid, reason);
                reply_error(c, r, "%s", reason);
                return;
        }
        if (manager_pid_busy(c->m, (pid_t) pid)) {
                reply_error(c, -EBUSY, "pid %d has a transition running; try again when it finished", (int) pid);
                return;
        }
        r = ulp_check_with((pid_t) pid, patch_fd, hint ?: "patch.so",
                           &(UlpOptions) { .auth_mem = mem_fd >= 0, .auth_mem_fd = mem_fd }, &report);
        rep = report_to_json(&report, r);
        ulp_report_done(&report);
        o = protocol_new_message("result");
        if (o && rep)
                json_object_object_add(o, "report", rep);
        else
                json_object_put(rep);
        connection_reply(c, o);
}

void method_status(Connection *c, struct json_object *q) {
        _cleanup_(auth_proofs_done) AuthProofs proofs = {};
        _cleanup_free_ pid_t *pids = NULL;
        int none = -1;
        UlpProcessStatus *v = NULL;
        size_t n_pids = 0, n = 0;
        struct json_object *o, *procs;
        char reason[512];
        int64_t pid = 0;
        int r;

        r = auth_take_fds(&c->rd, q, 0, &none, &proofs, reason, sizeof(reason));
        if (r < 0) {
                reply_error(c, r, "%s", reason);
                return;
        }
        r = protocol_get_int(q, "pid", 0, INT32_MAX, &pid);
        if (r == -EINVAL) {
                reply_error(c, r, "invalid process id");
                return;
        }
        if (pid > 0) {
                r = auth_check(&c->cred, &proofs, (pid_t) pid, NULL, reason, sizeof(reason));
                if (r < 0) {
                        reply_error(c, r, "%s", reason);
                        return;
                }
                pids = malloc(sizeof(pid_t));
                if (!pids) {
                        reply_error(c, -ENOMEM, "out of memory");
                        return;
                }
                pids[0] = (pid_t) pid;
                n_pids = 1;
        } else {
                r = ulp_list_processes(&pids, &n_pids);
                if (r < 0) {
                        reply_error(c, r, "cannot list processes: %s", strerror(-r));
                        return;
                }
        }
        v = calloc(n_pids ?: 1, sizeof(*v));
        if (!v) {
                reply_error(c, -ENOMEM, "out of memory");
                return;
        }
        for (size_t i = 0; i < n_pids; i++) {
                UlpReport rep = {};

                /* others' processes stay invisible to an unprivileged client */
                if (pid == 0 && auth_check(&c->cred, &proofs, pids[i], NULL, reason, sizeof(reason)) < 0)
                        continue;
                r = ulp_status(pids[i], &v[n], &rep);
                /* A block that cannot be used is listed as such, with why. */
                if (r >= 0 || (pid == 0 && v[n].problem[0]))
                        n++;
                else if (pid > 0 && r != -ENOENT) {
                        reply_error(c, r, "%s", rep.message[0] ? rep.message : strerror(-r));
                        ulp_report_done(&rep);
                        goto finish;
                }
                ulp_report_done(&rep);
        }
        procs = status_to_json(v, n);
        o = protocol_new_message("status");
        if (o && procs) {
                struct json_object *a;
                if (json_object_object_get_ex(procs, "processes", &a))
                        json_object_object_add(o, "processes", json_object_get(a));
        }
        json_object_put(procs);
        connection_reply(c, o);
finish:
        for (size_t i = 0; i < n; i++)
                ulp_status_done(&v[i]);
        free(v);
}

void method_ping(Connection *c, struct json_object *q) {
        struct json_object *o = protocol_new_message("pong");

        if (o)
                json_object_object_add(o, "daemon_version", json_object_new_string(ULP_VERSION));
        connection_reply(c, o);
}
