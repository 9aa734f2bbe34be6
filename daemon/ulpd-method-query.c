/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The methods that only look: check (would this patch apply?), status, ping.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "common/errno-clause.h"
#include "common/errfmt.h"
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

/* ulpd's own counters, for monitoring (ulpctl status --prometheus). */
static struct json_object *daemon_counters(Manager *m) {
        struct json_object *d = json_object_new_object();

        if (!d)
                return NULL;
        json_object_object_add(d, "transitions_total", json_object_new_uint64(m->transitions_total));
        json_object_object_add(d, "transitions_failed", json_object_new_uint64(m->transitions_failed));
        json_object_object_add(d, "invariant_failures", json_object_new_uint64(ulp_invariant_failures(NULL)));
        return d;
}

/* --missing: is pid, which loads an object the patch targets, without the patch as it
 * should be (applied, every thread switched with the check)? Fills *s either way. */
static bool status_missing(pid_t pid, const char *name, UlpProcessStatus *s) {
        UlpReport rep = {};
        int r = ulp_status(pid, s, &rep);

        ulp_report_done(&rep);
        if (r == -ENOENT || (r < 0 && !s->problem[0])) {
                char path[32];
                FILE *f;

                *s = (UlpProcessStatus) { .pid = pid };
                snprintf(path, sizeof(path), "/proc/%d/comm", (int) pid);
                f = fopen(path, "re");
                if (f) {
                        if (fgets(s->comm, sizeof(s->comm), f))
                                s->comm[strcspn(s->comm, "\n")] = 0;
                        fclose(f);
                }
                return r == -ENOENT;   /* one gone meanwhile is not missing anything */
        }
        if (r < 0)
                return true;           /* a refused block: nobody can tell it is patched */
        for (size_t i = 0; i < s->n_patches; i++)
                if (strcmp(s->patches[i].name, name) == 0 && s->patches[i].state == ULP_PATCH_PATCHED &&
                    !s->patches[i].forced)
                        return false;
        return true;
}

/* The processes a status request is about: pid alone, those the patch at patch_fd
 * targets (--missing, its name in missing_name), or every process with ulp state. */
static int status_pids(Connection *c, int64_t pid, int *patch_fd, const char *hint, char *missing_name,
                       size_t name_len, pid_t **ret, size_t *ret_n, char *reason, size_t len) {
        int r;

        if (*patch_fd >= 0) {
                r = check_patch_fd(patch_fd, reason, len);
                if (r >= 0)
                        r = sticky_patch_name(*patch_fd, hint, missing_name, name_len, reason, len);
                if (r >= 0)
                        r = sticky_matching_pids(c->m, *patch_fd, hint, ret, ret_n, reason, len);
                return r;
        }
        if (pid > 0) {
                *ret = malloc(sizeof(pid_t));
                if (!*ret)
                        return fail(reason, len, -ENOMEM, "out of memory");
                (*ret)[0] = (pid_t) pid;
                *ret_n = 1;
                return 0;
        }
        r = ulp_list_processes(ret, ret_n);
        if (r < 0)
                return fail(reason, len, r, "cannot list the processes in /proc");
        return 0;
}

void method_status(Connection *c, struct json_object *q) {
        _cleanup_(auth_proofs_done) AuthProofs proofs = {};
        _cleanup_free_ pid_t *pids = NULL;
        _cleanup_close_ int patch_fd = -1;
        UlpProcessStatus *v = NULL;
        size_t n_pids = 0, n = 0;
        struct json_object *o, *procs;
        char reason[512], missing[128] = "";
        int64_t pid = 0;
        int r;

        r = auth_take_fds(&c->rd, q, -1, &patch_fd, &proofs, reason, sizeof(reason));
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
        }
        r = status_pids(c, patch_fd >= 0 ? 0 : pid, &patch_fd, sane_name(protocol_get_string(q, "name")),
                        missing, sizeof(missing), &pids, &n_pids, reason, sizeof(reason));
        if (r < 0) {
                reply_error(c, r, "%s", reason);
                return;
        }
        v = calloc(n_pids ?: 1, sizeof(*v));
        if (!v) {
                reply_error(c, -ENOMEM, "out of memory");
                return;
        }
        for (size_t i = 0; i < n_pids; i++) {
                UlpReport rep = {};

                /* others' processes stay invisible to an unprivileged client */
                if ((pid == 0 || patch_fd >= 0) &&
                    auth_check(&c->cred, &proofs, pids[i], NULL, reason, sizeof(reason)) < 0)
                        continue;
                if (patch_fd >= 0) {
                        if (status_missing(pids[i], missing, &v[n]))
                                n++;
                        else
                                ulp_status_done(&v[n]);
                        continue;
                }
                r = ulp_status(pids[i], &v[n], &rep);
                /* A block that cannot be used is listed as such, with why. */
                if (r >= 0 || (pid == 0 && v[n].problem[0]))
                        n++;
                else if (pid > 0 && r != -ENOENT) {
                        reply_error(c, r, "%s", rep.message[0] ? rep.message : process_errno_clause(r));
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
                json_object_object_add(o, "daemon", daemon_counters(c->m));
                if (c->m->patch_dir)
                        json_object_object_add(o, "patch_dir", patch_dir_to_json(c->m));
                if (patch_fd >= 0)
                        json_object_object_add(o, "missing_patch", json_object_new_string(missing));
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
