/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The methods that change targets: apply and revert, one Job per target process.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "common/errno-clause.h"
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
                        if (ulp_process_carries(&s, name))
                                v[n++] = all[i];
                        ulp_status_done(&s);
                }
                ulp_report_done(&rep);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* What an apply or revert request asks for, once its fields are checked. */
typedef struct Transition {
        JobKind kind;
        int patch_fd;            /* ulpd's own sealed copy; -1 for a revert by name */
        AuthProofs proofs;
        pid_t *pids;
        size_t n_pids;
        UlpOptions opts;
        bool all, sticky, wait;
        const char *hint;        /* the client's "name", checked by sane_name() */
        char name[128];          /* the patch's name: for logs, and what a revert reverts */
} Transition;

static void transition_done(Transition *t) {
        if (t->patch_fd >= 0)
                close(t->patch_fd);
        auth_proofs_done(&t->proofs);
        free(t->pids);
}

/* The request's fields and descriptors, and whether they go together. Returns 0, or
 * -errno with the line for the client in reason. */
static int transition_parse_fields(Connection *c, struct json_object *q, Transition *t,
                                   char *reason, size_t len) {
        int r;

        r = auth_take_fds(&c->rd, q, t->kind == JOB_APPLY ? 1 : -1, &t->patch_fd, &t->proofs, reason, len);
        if (r < 0)
                return r;
        r = parse_pids(q, &t->pids, &t->n_pids);
        if (r == -E2BIG)
                return fail(reason, len, r, "too many process ids: at most %u in one request", PIDS_MAX);
        if (r < 0)
                return fail(reason, len, r, "invalid \"pids\": a list of distinct positive process ids is expected");
        if (parse_options(q, &t->opts) < 0)
                return fail(reason, len, -EINVAL, "invalid \"options\"");
        t->all = protocol_get_bool(q, "all", false);
        /* "persist" is its name on the wire; "sticky" is accepted too (docs/glossary.md). */
        t->sticky = protocol_get_bool(q, "persist", false) || protocol_get_bool(q, "sticky", false);
        t->wait = protocol_get_bool(q, "wait", true);
        t->hint = sane_name(protocol_get_string(q, "name"));
        if (protocol_get_string(q, "name") && !t->hint)
                return fail(reason, len, -EINVAL, "invalid patch name");
        if (!t->all && t->n_pids == 0)
                return fail(reason, len, -EINVAL, "no target: give process ids or --all");
        if (t->all && t->n_pids > 0)
                return fail(reason, len, -EINVAL, "--all and process ids exclude each other");
        if (t->sticky && !t->all)
                return fail(reason, len, -EINVAL, "--sticky needs --all");
        if (t->sticky && c->cred.uid != 0) {
                if (log_refusal_pass(c->m))
                        log_warning("refused: uid %u asked for a sticky patch, which only root may record",
                                    (unsigned) c->cred.uid);
                return fail(reason, len, -EPERM,
                            "permission denied: only root may record sticky patches (--sticky)");
        }
        return 0;
}

/* The patch file (ulpd's own copy from here on) and the patch's name: for an apply
 * the client's name for the file, for a revert the name in the file, else the name
 * the client gave. Returns 0, or -errno with the line for the client in reason. */
static int transition_patch(Transition *t, char *reason, size_t len) {
        int r;

        if (t->kind == JOB_APPLY || t->patch_fd >= 0) {
                r = check_patch_fd(&t->patch_fd, reason, len);
                if (r < 0)
                        return r;
        }
        if (t->kind == JOB_APPLY)
                snprintf(t->name, sizeof(t->name), "%s", t->hint ?: "patch.so");
        else if (t->patch_fd >= 0)
                return sticky_patch_name(t->patch_fd, t->hint, t->name, sizeof(t->name), reason, len);
        else if (t->hint)
                snprintf(t->name, sizeof(t->name), "%s", t->hint);
        else
                return fail(reason, len, -EINVAL, "revert needs the patch name");
        return 0;
}

/* --all: for an apply, the processes whose modules the patch fits (for an unprivileged
 * caller, those of them it proved it may trace); for a revert, those carrying the patch
 * that the caller may see. Returns 0, or -errno with the line for the client. */
static int transition_choose_targets(Connection *c, Transition *t, char *reason, size_t len) {
        size_t k = 0;
        int r;

        if (!t->all)
                return 0;
        free(t->pids);
        t->pids = NULL;
        if (t->kind == JOB_APPLY)
                r = sticky_matching_pids(c->m, t->patch_fd, t->hint, &t->pids, &t->n_pids, reason, len);
        else {
                r = pids_carrying(&c->cred, &t->proofs, t->name, &t->pids, &t->n_pids);
                if (r < 0)
                        snprintf(reason, len, "cannot list patched processes: %s", errno_clause(r));
        }
        if (r < 0)
                return r;
        if (t->kind != JOB_APPLY || c->cred.uid == 0)
                return 0;
        /* an unprivileged --all means all the processes the caller proved it may trace */
        for (size_t i = 0; i < t->n_pids; i++)
                if (auth_check(&c->cred, &t->proofs, t->pids[i], NULL, reason, len) >= 0)
                        t->pids[k++] = t->pids[i];
        t->n_pids = k;
        return 0;
}

/* --sticky: records the sticky patch (apply) or forgets it (revert) before any job
 * starts. Returns 0, or -errno with the line for the client. */
static int transition_sticky(Manager *m, Transition *t, char *reason, size_t len) {
        int r;

        if (!t->sticky)
                return 0;
        if (t->kind == JOB_APPLY)
                return sticky_add(m, t->patch_fd, t->hint, &t->opts, NULL, reason, len);
        r = sticky_remove(m, t->name);
        if (r == -ENOENT)
                r = 0;   /* nothing recorded: reverting the running ones is all */
        if (r < 0)
                snprintf(reason, len, "cannot remove the sticky patch %s: %s", t->name, errno_clause(r));
        return r;
}

/* May the client have a job on pid now? Returns 0, or -errno with the line for the
 * client in reason and, when allowed, the proof to bind the operation to in *opts. */
static int transition_may_start(Connection *c, const Transition *t, pid_t pid, UlpOptions *opts,
                                char *reason, size_t len) {
        Job *o;
        int r;

        r = connection_may_start(c, reason, len);
        if (r < 0)
                return r;
        r = auth_check(&c->cred, &t->proofs, pid, &opts->auth_mem_fd, reason, len);
        opts->auth_mem = opts->auth_mem_fd >= 0;
        if (r < 0) {
                if (r == -EPERM && log_refusal_pass(c->m))
                        log_full(LOG_WARNING, pid, t->name, NULL, "refused %s of %s in pid %d for uid %u (pid %d): %s",
                                 job_kind_verb(t->kind), t->name, (int) pid, (unsigned) c->cred.uid,
                                 (int) c->cred.pid, reason);
                return r;
        }
        o = manager_find_job(c->m, pid);
        if (o)
                return fail(reason, len, -EBUSY,
                            "pid %d has a transition running (%s of %s); try again when it finished",
                            (int) pid, job_kind_verb(o->kind), o->name);
        return 0;
}

/* A job that could not be handed over: its report is the result for pid. */
static void transition_start_failed(Request *req, Job *j, int r) {
        j->req = req;
        job_log_result(j, r);
        job_store_result(j, r);
        ulp_report_done(&j->report);
        free(j);
}

/* Hands the job on pid to a driver, or adds why not to the request's results. Its
 * slot is filled when it ends (or, for a client that does not wait, starts). */
static void transition_start(Connection *c, const Transition *t, Request *req, pid_t pid) {
        UlpOptions opts = t->opts;
        char reason[512];
        Job *j;
        int r;

        r = transition_may_start(c, t, pid, &opts, reason, sizeof(reason));
        if (r < 0) {
                json_object_array_add(req->results, result_error(pid, r, reason, NULL));
                return;
        }
        j = job_new(c->m, t->kind, pid, t->name);
        if (!j) {
                json_object_array_add(req->results, result_error(pid, -ENOMEM, "out of memory", NULL));
                return;
        }
        j->uid = c->cred.uid;
        j->answer_at_start = !t->wait;
        j->req = req;
        j->index = json_object_array_length(req->results);
        json_object_array_add(req->results, NULL);
        r = job_submit(j, t->patch_fd, &opts);
        if (r < 0) {
                transition_start_failed(req, j, r);
                return;
        }
        req->running++;
}

/* apply and revert: parse, choose the targets, record a sticky patch, then one Job per target. */
void method_transition(Connection *c, struct json_object *q, JobKind kind) {
        _cleanup_(transition_done) Transition t = { .kind = kind, .patch_fd = -1 };
        char reason[512];
        Request *req;
        int r;

        r = transition_parse_fields(c, q, &t, reason, sizeof(reason));
        if (r >= 0)
                r = transition_patch(&t, reason, sizeof(reason));
        if (r >= 0)
                r = transition_choose_targets(c, &t, reason, sizeof(reason));
        if (r >= 0)
                r = transition_sticky(c->m, &t, reason, sizeof(reason));
        if (r < 0) {
                reply_error(c, r, "%s", reason);
                return;
        }

        /* A block ulp did not provably make (docs/control-block.md) is acted on only for
         * an unprivileged caller, in processes it may trace itself (auth_check): root's
         * requests go only to blocks with a valid MAC. */
        t.opts.trust_unsigned = c->cred.uid != 0;
        /* recorded with the patch: status says who asked for it */
        t.opts.requester_set = true;
        t.opts.requester_uid = c->cred.uid;

        req = request_new(c);
        if (!req) {
                reply_error(c, -ENOMEM, "out of memory");
                return;
        }
        req->parts = protocol_get_bool(q, "parts", false);
        req->running = 1;   /* held until every job is started, see below */
        for (size_t i = 0; i < t.n_pids; i++)
                transition_start(c, &t, req, t.pids[i]);

        /* Jobs only tell their news through the event loop, so none has answered yet;
         * the first progress of each comes when its driver started it. */
        if (--req->running == 0) {
                request_complete(req);
                return;
        }
        idle_arm(c, false);
}
