/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The methods that change targets: apply and revert, one Job per target process.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/request.h"
#include "daemon/ulpd.h"

/* The processes carrying the patch called name (for revert --all), visible to cred. */
static int pids_carrying(const struct ucred *cred, const AuthProofs *proofs, const char *name,
                         pid_t **ret, size_t *ret_n) {
        _cleanup_free_ pid_t *all = NULL;
        size_t n_all = 0, n = 0;
        pid_t *v;
        int r;

        r = ulp_list_processes(&all, &n_all);
        if (r < 0)
                return r;
        v = calloc(n_all ?: 1, sizeof(pid_t));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n_all; i++) {
                UlpProcessStatus s = {};
                UlpReport rep = {};
                char why[256];

                if (auth_check(cred, proofs, all[i], NULL, why, sizeof(why)) < 0)
                        continue;
                if (ulp_status(all[i], &s, &rep) >= 0 && (s.trusted || cred->uid != 0)) {
                        for (size_t k = 0; k < s.n_patches; k++)
                                if (strcmp(s.patches[k].name, name) == 0 &&
                                    strcmp(s.patches[k].state ?: "", "unpatched") != 0) {
                                        v[n++] = all[i];
                                        break;
                                }
                        ulp_status_done(&s);
                }
                ulp_report_done(&rep);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* apply and revert: one Job per target. */
void method_transition(Connection *c, struct json_object *q, JobKind kind) {
        Manager *m = c->m;
        _cleanup_close_ int patch_fd = -1;
        _cleanup_(auth_proofs_done) AuthProofs proofs = {};
        _cleanup_free_ pid_t *pids = NULL;
        size_t n_pids = 0;
        UlpOptions opts;
        Request *req;
        bool all, persist, wait;
        const char *hint;
        char name[128] = "", reason[512];
        int r;

        r = auth_take_fds(&c->rd, q, kind == JOB_APPLY ? 1 : -1, &patch_fd, &proofs, reason, sizeof(reason));
        if (r < 0) {
                reply_error(c, r, "%s", reason);
                return;
        }
        r = parse_pids(q, &pids, &n_pids);
        if (r == -E2BIG) {
                reply_error(c, r, "too many process ids: at most %u in one request", PIDS_MAX);
                return;
        }
        if (r < 0) {
                reply_error(c, r, "invalid \"pids\": a list of distinct positive process ids is expected");
                return;
        }
        if (parse_options(q, &opts) < 0) {
                reply_error(c, -EINVAL, "invalid \"options\"");
                return;
        }
        all = protocol_get_bool(q, "all", false);
        persist = protocol_get_bool(q, "persist", false);
        wait = protocol_get_bool(q, "wait", true);
        hint = sane_name(protocol_get_string(q, "name"));
        if (protocol_get_string(q, "name") && !hint) {
                reply_error(c, -EINVAL, "invalid patch name");
                return;
        }
        if (!all && n_pids == 0) {
                reply_error(c, -EINVAL, "no target: give process ids or --all");
                return;
        }
        if (all && n_pids > 0) {
                reply_error(c, -EINVAL, "--all and process ids exclude each other");
                return;
        }
        if (persist && !all) {
                reply_error(c, -EINVAL, "--persist needs --all");
                return;
        }
        if (persist && c->cred.uid != 0) {
                if (log_refusal_pass(m))
                        log_warning("refused: uid %u asked for a sticky patch, which only root may record",
                                    (unsigned) c->cred.uid);
                reply_error(c, -EPERM, "permission denied: only root may record sticky patches (--persist)");
                return;
        }

        if (kind == JOB_APPLY || patch_fd >= 0) {
                r = check_patch_fd(&patch_fd, reason, sizeof(reason));
                if (r < 0) {
                        reply_error(c, r, "%s", reason);
                        return;
                }
        }
        if (kind == JOB_APPLY)
                snprintf(name, sizeof(name), "%s", hint ?: "patch.so");
        else if (patch_fd >= 0) {
                r = persist_patch_name(patch_fd, hint, name, sizeof(name), reason, sizeof(reason));
                if (r < 0) {
                        reply_error(c, r, "%s", reason);
                        return;
                }
        } else if (hint)
                snprintf(name, sizeof(name), "%s", hint);
        else {
                reply_error(c, -EINVAL, "revert needs the patch name");
                return;
        }

        if (all) {
                free(pids);
                pids = NULL;
                if (kind == JOB_APPLY)
                        r = persist_matching_pids(m, patch_fd, hint, &pids, &n_pids, reason, sizeof(reason));
                else {
                        r = pids_carrying(&c->cred, &proofs, name, &pids, &n_pids);
                        if (r < 0)
                                snprintf(reason, sizeof(reason), "cannot list patched processes: %s", strerror(-r));
                }
                if (r < 0) {
                        reply_error(c, r, "%s", reason);
                        return;
                }
                if (kind == JOB_APPLY && c->cred.uid != 0) {
                        /* an unprivileged --all means all the processes the caller proved
                         * it may trace */
                        size_t k = 0;
                        for (size_t i = 0; i < n_pids; i++)
                                if (auth_check(&c->cred, &proofs, pids[i], NULL, reason, sizeof(reason)) >= 0)
                                        pids[k++] = pids[i];
                        n_pids = k;
                }
        }
        if (persist) {
                if (kind == JOB_APPLY)
                        r = persist_add(m, patch_fd, hint, &opts, reason, sizeof(reason));
                else {
                        r = persist_remove(m, name);
                        if (r == -ENOENT)
                                r = 0;   /* nothing recorded: reverting the running ones is all */
                        snprintf(reason, sizeof(reason), "cannot remove the sticky patch %s: %s", name, strerror(-r));
                }
                if (r < 0) {
                        reply_error(c, r, "%s", reason);
                        return;
                }
        }

        /* A block ulp did not provably make (docs/control-block.md) is acted on only for
         * an unprivileged caller, in processes it may trace itself (auth_check): root's
         * requests go only to blocks with a valid MAC. */
        opts.trust_unsigned = c->cred.uid != 0;

        req = calloc(1, sizeof(*req));
        if (!req || !(req->results = json_object_new_array())) {
                free(req);
                reply_error(c, -ENOMEM, "out of memory");
                return;
        }
        req->m = m;
        req->c = c;
        c->req = req;
        req->running = 1;   /* held until every job is started, see below */

        for (size_t i = 0; i < n_pids; i++) {
                pid_t pid = pids[i];
                UlpOptions jopts = opts;
                size_t index;
                Job *j;

                r = connection_may_start(c, reason, sizeof(reason));
                if (r < 0) {
                        json_object_array_add(req->results, result_error(pid, r, reason, NULL));
                        continue;
                }
                r = auth_check(&c->cred, &proofs, pid, &jopts.auth_mem_fd, reason, sizeof(reason));
                jopts.auth_mem = jopts.auth_mem_fd >= 0;
                if (r < 0) {
                        if (r == -EPERM && log_refusal_pass(m))
                                log_full(LOG_WARNING, pid, name, NULL, "refused %s of %s in pid %d for uid %u (pid %d): %s",
                                         job_kind_verb(kind), name, (int) pid, (unsigned) c->cred.uid,
                                         (int) c->cred.pid, reason);
                        json_object_array_add(req->results, result_error(pid, r, reason, NULL));
                        continue;
                }
                if (manager_pid_busy(m, pid)) {
                        Job *o = manager_find_job(m, pid);
                        snprintf(reason, sizeof(reason),
                                 "pid %d has a transition running (%s of %s); try again when it finished",
                                 (int) pid, job_kind_verb(o->kind), o->name);
                        json_object_array_add(req->results, result_error(pid, -EBUSY, reason, NULL));
                        continue;
                }
                j = job_new(m, kind, pid, name);
                if (!j) {
                        json_object_array_add(req->results, result_error(pid, -ENOMEM, "out of memory", NULL));
                        continue;
                }
                j->uid = c->cred.uid;
                r = job_start(j, patch_fd, &jopts);
                if (r < 0) {
                        j->req = req;
                        j->index = json_object_array_length(req->results);
                        json_object_array_add(req->results, NULL);
                        job_log_result(j, r);
                        job_store_result(j, r);
                        ulp_report_done(&j->report);
                        free(j);
                        continue;
                }
                j->index = json_object_array_length(req->results);
                if (wait) {
                        j->req = req;
                        json_object_array_add(req->results, NULL);
                } else {
                        struct json_object *o = result_error(pid, 0, "", &j->report);
                        if (o)
                                json_object_object_add(o, "started", json_object_new_boolean(true));
                        json_object_array_add(req->results, o);
                }
                index = j->index;
                r = job_launch(j);
                if (r < 0) {
                        json_object_array_put_idx(req->results, index,
                                                  result_error(pid, r, "cannot schedule the transition", NULL));
                        continue;
                }
                if (wait)
                        req->running++;
        }

        /* Jobs only finish from the event loop, so none has completed yet. */
        if (--req->running == 0) {
                request_complete(req);
                return;
        }
        idle_arm(c, false);
        /* The first progress tells the client which targets are under way. */
        for (Job *j = m->jobs; j; j = j->next)
                if (j->req == req)
                        job_send_progress(j, true);
}
