/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Requests and jobs: the lifecycle of a transition in ulpd. Each Job owns one UlpOp on
 * one target process, run by one driver thread (ulpd-driver.c), which calls
 * ulp_op_step() again after the delay the step asked for, until it finished, failed or
 * timed out, the way the kernel's livepatch retries klp_try_complete_transition() from
 * delayed work. The loop learns what happened from the job's news (job_on_news()). A
 * Request collects the per-pid results of the jobs one client request started and
 * answers when the last one ended (or, for a client that does not wait, started). Jobs
 * ulpd starts itself (restart recovery, sticky patches) have no Request.
 */

#include <errno.h>
#include <fcntl.h>
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
                c->req = NULL;
                if (reply_results(c, q->results, q->parts)) {
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

/* Frees a linked job the driver no longer holds (it ended, or the drivers were joined). */
void job_free(Job *j) {
        Manager *m = j->m;

        LIST_REMOVE(m->jobs, j);
        m->n_jobs--;
        if (j->op)
                ulp_op_free(j->op);       /* an unfinished transition stays, for resume */
        if (j->patch_fd >= 0)
                close(j->patch_fd);
        if (j->auth_fd >= 0)
                close(j->auth_fd);
        json_object_put(j->news.started_result);
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
        bool no_late = j->no_late;

        /* a refusal any client can ask for by the hundred is no transition of its own */
        if (!j->refused)
                job_log_result(j, r);
        else if (log_refusal_pass(m))
                log_full(LOG_WARNING, pid, j->name, NULL, "%s of %s in pid %d for uid %u: %s",
                         job_kind_verb(j->kind), j->name, (int) pid, (unsigned) j->uid, j->report.message);
        job_store_result(j, r);
        j->req = NULL;
        job_free(j);
        /* objects the patch names that pid has not loaded: read again only when the
         * operation's own block names some, or pid is watched already (its list is
         * refreshed); a thousand processes patched are not read a thousand times more */
        if (r >= 0 && (!no_late || pending_watched(m, pid)))
                pending_learn(m, pid);
        if (q && --q->running == 0)
                request_complete(q);
}

/* Progress as the driver last told it (j->seen). */
void job_send_progress(Job *j, bool force) {
        unsigned sw = j->seen.switched, tot = j->seen.total;
        struct json_object *o;
        uint64_t now = now_usec(j->m);

        if (!j->req || !j->req->c || !j->seen.started)
                return;
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
        if (sw < tot && j->seen.has_worst) {
                const UlpStraggler *worst = &j->seen.worst;
                struct json_object *w = json_object_new_object();
                if (w) {
                        json_object_object_add(w, "tid", json_object_new_int(worst->tid));
                        json_object_object_add(w, "name", json_object_new_string(worst->comm));
                        json_object_object_add(w, "function", json_object_new_string(worst->function));
                }
                json_object_object_add(o, "straggler", w);
        }
        (void) connection_reply(j->req->c, o);   /* may drop the client: see connection_close() */
}

/* The uid of j used its share of ulpd's time (the drivers' and the loop's): its jobs
 * take no step before the window's end, on whichever driver. The targets run meanwhile;
 * only their transitions take longer. */
static void job_charge(Job *j, uint64_t usec) {
        Manager *m = j->m;

        if (j->uid == 0 || usec == 0)
                return;
        uid_charge(m, j->uid, usec);
        if (!uid_over_budget(m, j->uid))
                return;
        for (Job *k = m->jobs; k; k = k->next)
                if (k->uid == j->uid)
                        job_hold(k, m->uid_window_end + JOB_TIMER_ACCURACY_USEC);
}

/* A client that does not wait is answered once its job started. */
static void job_answer_started(Job *j, struct json_object *started_result) {
        Request *q = j->req;

        if (!q)
                return;
        json_object_array_put_idx(q->results, j->index,
                                  started_result ?: result_error(j->pid, -ENOMEM, "out of memory", NULL));
        j->req = NULL;
        if (--q->running == 0)
                request_complete(q);
}

/* Is a start of uid's (other than j) handed to a driver and not started yet? */
static bool uid_starting(Manager *m, uid_t uid, const Job *j) {
        for (Job *k = m->jobs; k; k = k->next)
                if (k != j && k->uid == uid && !k->deferred && !k->seen.started)
                        return true;
        return false;
}

/*
 * A uid other than root starts one operation at a time, as when starts ran in the loop:
 * its next start is handed to a driver only once the loop charged the last one, so
 * that a uid whose start used its share (a spinning pre-patch callback) has its other
 * starts refused, not tried on every driver at once. Root's starts, ulpd's purpose
 * (a library patch on every process), run side by side.
 */
static void uid_start_next(Manager *m, uid_t uid) {
        for (;;) {
                Job *next = NULL;
                int r;

                if (uid_starting(m, uid, NULL))
                        return;
                for (Job *k = m->jobs; k; k = k->next)
                        if (k->uid == uid && k->deferred && (!next || k->seq < next->seq))
                                next = k;
                if (!next)
                        return;
                next->deferred = false;
                if (uid_over_budget(m, uid)) {
                        next->refused = true;
                        snprintf(next->report.message, sizeof(next->report.message),
                                 "not started: uid %u used its share of ulpd's time; try again in a few seconds",
                                 (unsigned) uid);
                        job_finish(next, -EAGAIN);
                        continue;
                }
                r = driver_take(m, next);
                if (r >= 0)
                        return;
                snprintf(next->report.message, sizeof(next->report.message),
                         "cannot schedule the transition: %s", strerror(-r));
                job_finish(next, r);
        }
}

void job_on_news(Job *j, const JobNews *n) {
        bool first = n->started && !j->seen.started;
        Manager *m = j->m;
        uid_t uid = j->uid;

        job_charge(j, n->charge_usec);
        if (n->started) {
                j->seen.started = true;
                if (n->patch_name[0])
                        snprintf(j->name, sizeof(j->name), "%s", n->patch_name);
                log_full(LOG_INFO, j->pid, j->name, NULL, "%s of %s in pid %d started",
                         job_kind_verb(j->kind), j->name, (int) j->pid);
        }
        if (n->switched || n->total) {
                j->seen.switched = n->switched;
                j->seen.total = n->total;
                j->seen.has_worst = n->has_worst;
                j->seen.worst = n->worst;
        }
        if (j->answer_at_start && n->started)
                job_answer_started(j, n->started_result);
        else if (n->started_result)
                json_object_put(n->started_result);
        /* The first progress tells the client which targets are under way: sent even
         * when the end came in the same news. */
        job_send_progress(j, first);
        if (n->finished) {
                j->no_late = n->no_late;
                job_finish(j, n->result);
        }
        if (uid != 0 && (n->started || n->finished) && !m->drivers_stop)
                uid_start_next(m, uid);   /* stopping: its next jobs stay for the next ulpd */
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
        j->patch_fd = j->auth_fd = -1;
        snprintf(j->name, sizeof(j->name), "%s", name ?: "");
        return j;
}

/* What the driver needs for the start, its own: the options, ulpd's bound on callbacks,
 * a descriptor of the patch with its own offset (drivers read at once), the client's
 * proof (its request's descriptors close when the request was dispatched). Returns 0,
 * or -errno with the reason in j->report. */
static int job_prepare(Job *j, int patch_fd, const UlpOptions *options) {
        char path[64];

        j->opts = *options;
        /* A callback holds a driver and its other jobs: ulpd's own bound, not the library's 10 s. */
        j->opts.callback_timeout_ms = j->m->callback_timeout_ms;
        snprintf(j->start_name, sizeof(j->start_name), "%s", j->name);
        if (j->kind == JOB_APPLY) {
                snprintf(path, sizeof(path), "/proc/self/fd/%d", patch_fd);
                j->patch_fd = open(path, O_RDONLY | O_CLOEXEC);
                if (j->patch_fd < 0)
                        goto fail;
        }
        if (j->opts.auth_mem && j->opts.auth_mem_fd >= 0) {
                j->auth_fd = fcntl(j->opts.auth_mem_fd, F_DUPFD_CLOEXEC, 3);
                if (j->auth_fd < 0)
                        goto fail;
                j->opts.auth_mem_fd = j->auth_fd;
        }
        return 0;
fail:
        snprintf(j->report.message, sizeof(j->report.message), "cannot start: %s", strerror(errno));
        if (j->patch_fd >= 0)
                close(j->patch_fd);
        j->patch_fd = -1;
        return negative_errno();
}

/* Links j and hands it to a driver. Returns 0, or -errno (j not linked). */
static int job_link(Job *j) {
        Manager *m = j->m;
        int r;

        j->seq = ++m->job_seq;
        if (j->uid != 0 && uid_starting(m, j->uid, NULL))
                j->deferred = true;     /* uid_start_next() hands it over */
        LIST_PREPEND(m->jobs, j);
        m->n_jobs++;
        if (uid_over_budget(m, j->uid))
                job_hold(j, m->uid_window_end + JOB_TIMER_ACCURACY_USEC);
        if (j->deferred) {
                manager_update_status(m);
                return 0;
        }
        r = driver_take(m, j);
        if (r < 0) {
                LIST_REMOVE(m->jobs, j);
                m->n_jobs--;
                snprintf(j->report.message, sizeof(j->report.message), "cannot schedule the transition: %s",
                         strerror(-r));
                return r;
        }
        manager_update_status(m);
        return 0;
}

static void job_unprepare(Job *j) {
        if (j->patch_fd >= 0)
                close(j->patch_fd);
        if (j->auth_fd >= 0)
                close(j->auth_fd);
        j->patch_fd = j->auth_fd = -1;
}

int job_submit(Job *j, int patch_fd, const UlpOptions *options) {
        int r = job_prepare(j, patch_fd, options);

        if (r >= 0)
                r = job_link(j);
        if (r < 0)
                job_unprepare(j);
        return r;
}

int job_start(Job *j, int patch_fd, const UlpOptions *options) {
        Manager *m = j->m;
        int r;

        j->sync_start = true;
        r = job_submit(j, patch_fd, options);
        if (r < 0)
                return r;
        r = driver_wait_start(j);
        if (r < 0) {
                /* the driver let it go: the caller frees it, with its report */
                LIST_REMOVE(m->jobs, j);
                m->n_jobs--;
                manager_update_status(m);
        }
        return r;
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
        return 0;
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
                r = job_start(j, -1, &o);
                if (r < 0) {
                        if (r != -ENOENT)
                                log_full(LOG_WARNING, pids[i], NULL, NULL,
                                         "cannot take over the transition in pid %d: %s", (int) pids[i],
                                         j->report.message[0] ? j->report.message : process_errno_clause(r));
                        ulp_report_done(&j->report);
                        free(j);
                        continue;
                }
                log_full(LOG_INFO, pids[i], NULL, NULL,
                         "taking over the unfinished transition in pid %d", (int) pids[i]);
        }
}
