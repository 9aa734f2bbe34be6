/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Requests and jobs: the lifecycle of a transition in ulpd. Each Job owns one UlpOp on
 * one target process and calls ulp_op_step() again after the delay the step asked for,
 * until it finished, failed or timed out, the way the kernel's livepatch retries
 * klp_try_complete_transition() from delayed work. A Request collects the per-pid
 * results of the jobs one client request started and answers when the last one ended.
 * Jobs ulpd starts itself (restart recovery, sticky patches) have no Request.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common/errno-clause.h"
#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/report-json.h"
#include "daemon/ulpd.h"

const char *job_kind_verb(JobKind k) {
        return k == JOB_APPLY ? "apply" : k == JOB_REVERT ? "revert" : "resume";
}

/* A request in flight on c, with no result yet. Returns NULL when out of memory. */
Request *request_new(Connection *c) {
        Request *q = calloc(1, sizeof(*q));

        if (!q || !(q->results = json_object_new_array())) {
                free(q);
                return NULL;
        }
        q->m = c->m;
        q->c = c;
        c->req = q;
        return q;
}

void request_free(Request *q) {
        if (!q)
                return;
        json_object_put(q->results);
        free(q);
}

/* The request's last job finished, or none ran: send the final result to a waiting
 * client, and free the request. */
void request_complete(Request *q) {
        Connection *c = q->c;

        if (c) {
                struct json_object *o = protocol_new_message("result");

                c->req = NULL;
                if (o)
                        json_object_object_add(o, "results", json_object_get(q->results));
                if (connection_reply(c, o)) {
                        if (c->read_eof && c->out_len == 0)
                                connection_close(c);
                        else
                                idle_arm(c, true);
                }
        }
        request_free(q);
}

void job_store_result(Job *j, int error) {
        struct json_object *o;

        if (!j->req)
                return;
        o = report_to_json(&j->report, error);
        if (o) {
                json_object_object_add(o, "pid", json_object_new_int(j->pid));
                json_object_array_put_idx(j->req->results, j->index, o);
        }
}

void job_free(Job *j) {
        Manager *m = j->m;

        LIST_REMOVE(m->jobs, j);
        m->n_jobs--;
        sd_event_source_disable_unref(j->timer);
        if (j->op)
                ulp_op_free(j->op);       /* an unfinished transition stays, for resume */
        ulp_report_done(&j->report);
        free(j);
        manager_update_status(m);
}

static void job_log_invariants(Job *j, const char *name);

void job_log_result(Job *j, int r) {
        const UlpReport *rp = &j->report;
        const char *name = rp->patch_name[0] ? rp->patch_name : j->name;

        j->m->transitions_total++;
        j->m->transitions_failed += r < 0;
        if (r >= 0)
                log_full(LOG_INFO, j->pid, name, NULL,
                         "%s of %s in pid %d done: %u threads, %u switched, %u retries, "
                         "longest thread stop %llu us, longest stop-the-world %llu us, %llu ms%s",
                         job_kind_verb(j->kind), name, (int) j->pid, rp->threads, rp->switched,
                         rp->retries, (unsigned long long) rp->max_thread_stop_us,
                         (unsigned long long) rp->max_stw_us, (unsigned long long) rp->total_ms,
                         rp->forced ? " (forced)" : "");
        else
                log_full(LOG_WARNING, j->pid, name, NULL, "%s of %s in pid %d failed: %s",
                         job_kind_verb(j->kind), name, (int) j->pid,
                         rp->message[0] ? rp->message : process_errno_clause(r));
        for (size_t i = 0; i < rp->n_stragglers; i++)
                log_full(LOG_INFO, j->pid, name, rp->stragglers[i].function,
                         "pid %d: thread %d (%s) was in %s", (int) j->pid,
                         (int) rp->stragglers[i].tid, rp->stragglers[i].comm,
                         rp->stragglers[i].function);
        for (size_t i = 0; rp->warnings && i < rp->n_warnings && rp->warnings[i]; i++)
                log_full(LOG_WARNING, j->pid, name, NULL, "pid %d: %s", (int) j->pid, rp->warnings[i]);
        job_log_invariants(j, name);
}

/* A broken invariant of the core is a bug of ulp (docs/architecture.md, "Invariants"):
 * logged at its first sight, with the count each time it grows. */
static void job_log_invariants(Job *j, const char *name) {
        static unsigned logged;
        const char *first = NULL;
        unsigned n = ulp_invariant_failures(&first);

        if (n == logged)
                return;
        logged = n;
        log_full(LOG_ERR, j->pid, name, NULL, "internal error (a bug of ulp, please report it): %u broken "
                 "invariant(s) so far, the first: %s", n, first ? first : "?");
}

static void job_finish(Job *j, int r) {
        Request *q = j->req;
        Manager *m = j->m;
        pid_t pid = j->pid;

        job_log_result(j, r);
        job_store_result(j, r);
        j->req = NULL;
        job_free(j);
        if (r >= 0)
                pending_learn(m, pid);  /* objects the patch names that pid has not loaded */
        if (q && --q->running == 0)
                request_complete(q);
}

void job_send_progress(Job *j, bool force) {
        UlpStraggler worst;
        unsigned sw = 0, tot = 0;
        struct json_object *o;
        uint64_t now = now_usec(j->m);

        if (!j->req || !j->req->c || !j->op)
                return;
        ulp_op_progress(j->op, &sw, &tot);
        if (!force && sw == j->last_switched && now < j->last_progress + HEARTBEAT_USEC)
                return;
        if (!force && now < j->last_progress + PROGRESS_INTERVAL_USEC)
                return;
        j->last_progress = now;
        j->last_switched = sw;
        o = protocol_new_message("progress");
        if (!o)
                return;
        json_object_object_add(o, "pid", json_object_new_int(j->pid));
        json_object_object_add(o, "switched", json_object_new_int64(sw));
        json_object_object_add(o, "total", json_object_new_int64(tot));
        if (sw < tot && ulp_op_worst_straggler(j->op, &worst)) {
                struct json_object *w = json_object_new_object();
                if (w) {
                        json_object_object_add(w, "tid", json_object_new_int(worst.tid));
                        json_object_object_add(w, "name", json_object_new_string(worst.comm));
                        json_object_object_add(w, "function", json_object_new_string(worst.function));
                }
                json_object_object_add(o, "straggler", w);
        }
        (void) connection_reply(j->req->c, o);   /* may drop the client: see connection_close() */
}

/* One try_complete pass; rearms itself until the operation is over. */
static int job_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Job *j = userdata;
        Manager *m = j->m;
        uid_t uid = j->uid;
        unsigned next_ms = 0;
        uint64_t t;
        int r;

        /* A step holds the loop too (the last one runs the post-patch callback): a uid
         * that used its share waits for the window's end, like its connections. The
         * target runs meanwhile; only the transition takes longer. */
        if (uid_over_budget(m, uid) && clock_usec() < m->uid_window_end) {
                (void) sd_event_source_set_time(j->timer, m->uid_window_end + JOB_TIMER_ACCURACY_USEC);
                (void) sd_event_source_set_enabled(j->timer, SD_EVENT_ONESHOT);
                return 0;
        }
        t = clock_usec();
        r = ulp_op_step(j->op, &next_ms);
        uid_charge(m, uid, clock_usec() - t);
        if (r == 0) {
                job_send_progress(j, false);
                next_ms = MAX(1u, MIN(next_ms, 5000u));
                (void) sd_event_source_set_time_accuracy(j->timer, next_ms < JOB_TIMER_SOON_MS ?
                                                         JOB_TIMER_SOON_ACCURACY_USEC : JOB_TIMER_ACCURACY_USEC);
                (void) sd_event_source_set_time_relative(j->timer, (uint64_t) next_ms * 1000);
                (void) sd_event_source_set_enabled(j->timer, SD_EVENT_ONESHOT);
                return 0;
        }
        job_finish(j, r < 0 ? r : 0);
        return 0;
}

Job *manager_find_job(Manager *m, pid_t pid) {
        for (Job *j = m->jobs; j; j = j->next)
                if (j->pid == pid)
                        return j;
        return NULL;
}

bool manager_pid_busy(Manager *m, pid_t pid) {
        return manager_find_job(m, pid) != NULL;
}

Job *job_new(Manager *m, JobKind kind, pid_t pid, const char *name) {
        Job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->m = m;
        j->kind = kind;
        j->pid = pid;
        snprintf(j->name, sizeof(j->name), "%s", name ?: "");
        return j;
}

/* Hands a started op to the loop: the first step runs at once (after the replies
 * queued so far). Takes ownership of j. */
int job_launch(Job *j) {
        Manager *m = j->m;
        int r;

        if (j->report.patch_name[0])
                snprintf(j->name, sizeof(j->name), "%s", j->report.patch_name);
        /* Accuracy 1 us: the first step is due now (0 would mean sd-event's default of
         * 250 ms, and 1 ms a wake-up up to a millisecond late). */
        r = sd_event_add_time_relative(m->event, &j->timer, CLOCK_MONOTONIC, 0, JOB_TIMER_SOON_ACCURACY_USEC,
                                       job_on_timer, j);
        if (r < 0) {
                ulp_op_free(j->op);
                ulp_report_done(&j->report);
                free(j);
                return r;
        }
        LIST_PREPEND(m->jobs, j);
        m->n_jobs++;
        log_full(LOG_INFO, j->pid, j->name, NULL, "%s of %s in pid %d started",
                 job_kind_verb(j->kind), j->name, (int) j->pid);
        manager_update_status(m);
        return 0;
}

/* Starts kind on pid. On failure the report is in j->report and j is not linked. */
int job_start(Job *j, int patch_fd, const UlpOptions *options) {
        /* A callback runs inside the loop: ulpd's own bound, not the library's 10 s. */
        UlpOptions opts = *options, *o = &opts;

        opts.callback_timeout_ms = j->m->callback_timeout_ms;
        if (j->kind == JOB_APPLY) {
                if (lseek(patch_fd, 0, SEEK_SET) < 0)
                        return negative_errno();
                return ulp_op_apply(j->pid, patch_fd, j->name, o, &j->op, &j->report);
        }
        if (j->kind == JOB_REVERT)
                return ulp_op_revert(j->pid, j->name, o, &j->op, &j->report);
        return ulp_op_resume(j->pid, o, &j->op, &j->report);
}

int manager_start_auto_apply(Manager *m, pid_t pid, int patch_fd, const char *name_hint,
                             const UlpOptions *o) {
        Job *j;
        int r;

        if (manager_pid_busy(m, pid))
                return -EBUSY;
        j = job_new(m, JOB_APPLY, pid, name_hint);
        if (!j)
                return -ENOMEM;
        r = job_start(j, patch_fd, o);
        if (r < 0) {
                if (r != -EEXIST)
                        log_full(LOG_DEBUG, pid, name_hint, NULL, "sticky apply of %s to pid %d: %s",
                                 name_hint, (int) pid, j->report.message[0] ? j->report.message : process_errno_clause(r));
                ulp_report_done(&j->report);
                free(j);
                return r;
        }
        return job_launch(j);
}

/* Finishes the transitions a previous ulpd left in its targets, in the direction
 * they were going (restart after a crash or kill -9). */
void manager_resume_transitions(Manager *m) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r;

        r = ulp_list_processes(&pids, &n);
        if (r < 0) {
                log_warning("cannot look for unfinished transitions: %s", strerror(-r));
                return;
        }
        for (size_t i = 0; i < n; i++) {
                UlpOptions o = {};
                Job *j;

                bool wanted = m->n_recover_only == 0;

                for (size_t k = 0; k < m->n_recover_only; k++)
                        wanted = wanted || m->recover_only[k] == pids[i];
                if (!wanted || pids[i] == m->self || manager_pid_busy(m, pids[i]))
                        continue;
                j = job_new(m, JOB_RESUME, pids[i], NULL);
                if (!j)
                        return;
                r = ulp_op_resume(pids[i], &o, &j->op, &j->report);
                if (r < 0) {
                        if (r != -ENOENT)
                                log_full(LOG_WARNING, pids[i], NULL, NULL,
                                         "cannot take over the transition in pid %d: %s", (int) pids[i],
                                         j->report.message[0] ? j->report.message : process_errno_clause(r));
                        ulp_report_done(&j->report);
                        free(j);
                        continue;
                }
                log_full(LOG_INFO, pids[i], j->report.patch_name, NULL,
                         "taking over the unfinished transition in pid %d", (int) pids[i]);
                (void) job_launch(j);
        }
}
