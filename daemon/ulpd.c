/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpd: the live patching service. One sd-event loop serves the clients on the
 * Unix socket (protocol.h) and drives every running transition with timers, the way
 * the kernel's livepatch retries klp_try_complete_transition() from delayed work:
 * each Job owns one UlpOp on one target process and calls ulp_op_step() again after
 * the delay the step asked for, until it finished, failed or timed out.
 *
 * Lifetimes: a Connection owns at most one Request in flight; a Request owns the
 * result slots of its Jobs; a Job outlives its Request's client (a client that goes
 * away, or asked not to wait, leaves the transition running), and a Request without
 * a client is freed when its last Job finished. A Job without a Request is one ulpd
 * started itself (restart recovery, sticky patches).
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/report-json.h"
#include "daemon/request.h"
#include "daemon/ulpd.h"

#define CONNECTIONS_MAX 256
#define CONNECTION_IDLE_USEC (10ULL * 1000000ULL)   /* for a client to send a whole request */
#define OUTPUT_MAX (16u << 20)                     /* replies queued for a slow reader */
#define PROGRESS_INTERVAL_USEC (250ULL * 1000ULL)
#define HEARTBEAT_USEC (2ULL * 1000000ULL)         /* progress even when nothing changed */
#define PATCH_SIZE_MAX (256ULL << 20)

struct Connection {
        Manager *m;
        Connection *next, *prev;
        int fd;
        struct ucred cred;
        sd_event_source *io, *idle;
        MsgReader rd;
        char *out;
        size_t out_len;
        Request *req;            /* in flight: no other message may arrive meanwhile */
        bool closing;            /* close once out is flushed */
        bool read_eof;
        bool in_dispatch;        /* inside its io callback: freeing is deferred ... */
        bool dead;               /* ... to its end */
};

struct Request {
        Manager *m;
        Connection *c;           /* NULL once the client is gone or does not wait */
        unsigned running;        /* Jobs not finished */
        struct json_object *results; /* array: one report per pid, in request order */
};

struct Job {
        Manager *m;
        Job *next, *prev;
        Request *req;
        size_t index;            /* slot in req->results */
        JobKind kind;
        pid_t pid;
        char name[128];          /* patch name, for logs */
        UlpOp *op;
        UlpReport report;
        sd_event_source *timer;
        uint64_t last_progress;
        unsigned last_switched;
};

#define LIST_PREPEND(head, x) do {                      \
                (x)->prev = NULL;                       \
                (x)->next = (head);                     \
                if (head)                               \
                        (head)->prev = (x);             \
                (head) = (x);                           \
        } while (0)
#define LIST_REMOVE(head, x) do {                       \
                if ((x)->prev)                          \
                        (x)->prev->next = (x)->next;    \
                else                                    \
                        (head) = (x)->next;             \
                if ((x)->next)                          \
                        (x)->next->prev = (x)->prev;    \
                (x)->next = (x)->prev = NULL;           \
        } while (0)

#define JOB_TIMER_ACCURACY_USEC 1000

static const char *job_kind_verb(JobKind k) {
        return k == JOB_APPLY ? "apply" : k == JOB_REVERT ? "revert" : "resume";
}

static uint64_t now_usec(Manager *m) {
        uint64_t t = 0;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

/* ---- status for systemd ------------------------------------------------------------ */

void manager_update_status(Manager *m) {
        char s[256];

        if (m->n_jobs == 0)
                snprintf(s, sizeof(s), "Idle; %u client(s), %zu sticky patch(es)%s",
                         m->n_connections, persist_count(m),
                         m->wishes && !m->exec_events ? ", no exec events" : "");
        else if (m->n_jobs == 1)
                snprintf(s, sizeof(s), "Transition running: %s of %s in pid %d",
                         job_kind_verb(m->jobs->kind), m->jobs->name[0] ? m->jobs->name : "?",
                         (int) m->jobs->pid);
        else
                snprintf(s, sizeof(s), "%u transitions running", m->n_jobs);
        if (strcmp(s, m->last_status) == 0)
                return;
        snprintf(m->last_status, sizeof(m->last_status), "%s", s);
        (void) sd_notifyf(false, "STATUS=%s", s);
}

/* ---- connections: output ----------------------------------------------------------- */

static void connection_free(Connection *c);

static int connection_update_events(Connection *c) {
        uint32_t ev = 0;

        if (!c->read_eof && !c->closing)
                ev |= EPOLLIN;
        if (c->out_len > 0)
                ev |= EPOLLOUT;
        return sd_event_source_set_io_events(c->io, ev);
}

/* Writes what the socket takes. Returns 0, or -errno when the connection is dead. */
static int connection_flush(Connection *c) {
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return negative_errno();
                }
                memmove(c->out, c->out + n, c->out_len - (size_t) n);
                c->out_len -= (size_t) n;
        }
        return connection_update_events(c);
}

/* Queues message o (reference not taken) for the client. A client that does not read
 * its replies is dropped once OUTPUT_MAX bytes are queued. */
static int connection_send(Connection *c, struct json_object *o) {
        _cleanup_free_ char *s = NULL;
        size_t len;
        char *b;

        if (!o)
                return -ENOMEM;
        s = protocol_format(o, &len);
        if (!s)
                return -ENOMEM;
        if (c->out_len + len > OUTPUT_MAX)
                return -ENOBUFS;
        b = realloc(c->out, c->out_len + len);
        if (!b)
                return -ENOMEM;
        memcpy(b + c->out_len, s, len);
        c->out = b;
        c->out_len += len;
        return connection_flush(c);
}

/* Sends and then frees o; drops the connection when it cannot take it. Returns false
 * when c was freed. */
static bool connection_reply(Connection *c, struct json_object *o) {
        int r = connection_send(c, o);

        json_object_put(o);
        if (r < 0) {
                log_debug("dropping client (pid %d): %s", (int) c->cred.pid, strerror(-r));
                connection_free(c);
                return false;
        }
        return true;
}

/* Answers with an error and closes after flushing (for protocol violations). */
static void connection_fail(Connection *c, int error, const char *message) {
        log_debug("client pid %d: %s", (int) c->cred.pid, message);
        c->closing = true;
        if (!connection_reply(c, protocol_new_error(error, message)))
                return;
        if (c->out_len == 0)
                connection_free(c);
}

/* ---- requests and jobs -------------------------------------------------------------- */

static void request_free(Request *q) {
        if (!q)
                return;
        json_object_put(q->results);
        free(q);
}

static void idle_arm(Connection *c, bool on) {
        if (!c->idle)
                return;
        if (on)
                (void) sd_event_source_set_time_relative(c->idle, CONNECTION_IDLE_USEC);
        (void) sd_event_source_set_enabled(c->idle, on ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
}

/* The request's last job finished, or none ran: send the final result to a waiting
 * client, and free the request. */
static void request_complete(Request *q) {
        Connection *c = q->c;

        if (c) {
                struct json_object *o = protocol_new_message("result");

                c->req = NULL;
                if (o)
                        json_object_object_add(o, "results", json_object_get(q->results));
                if (connection_reply(c, o)) {
                        if (c->read_eof && c->out_len == 0)
                                connection_free(c);
                        else
                                idle_arm(c, true);
                }
        }
        request_free(q);
}

static void job_store_result(Job *j, int error) {
        struct json_object *o;

        if (!j->req)
                return;
        o = report_to_json(&j->report, error);
        if (o) {
                json_object_object_add(o, "pid", json_object_new_int(j->pid));
                json_object_array_put_idx(j->req->results, j->index, o);
        }
}

static void job_free(Job *j) {
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

static void job_log_result(Job *j, int r) {
        const UlpReport *rp = &j->report;
        const char *name = rp->patch_name[0] ? rp->patch_name : j->name;

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
                         rp->message[0] ? rp->message : strerror(-r));
        for (size_t i = 0; i < rp->n_stragglers; i++)
                log_full(LOG_INFO, j->pid, name, rp->stragglers[i].function,
                         "pid %d: thread %d (%s) was in %s", (int) j->pid,
                         (int) rp->stragglers[i].tid, rp->stragglers[i].comm,
                         rp->stragglers[i].function);
        for (size_t i = 0; rp->warnings && i < rp->n_warnings && rp->warnings[i]; i++)
                log_full(LOG_WARNING, j->pid, name, NULL, "pid %d: %s", (int) j->pid, rp->warnings[i]);
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

static void job_send_progress(Job *j, bool force) {
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
        (void) connection_reply(j->req->c, o);   /* may drop the client: see connection_free() */
}

/* One try_complete pass; rearms itself until the operation is over. */
static int job_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Job *j = userdata;
        unsigned next_ms = 0;
        int r;

        r = ulp_op_step(j->op, &next_ms);
        if (r == 0) {
                job_send_progress(j, false);
                next_ms = MAX(1u, MIN(next_ms, 5000u));
                (void) sd_event_source_set_time_relative(j->timer, (uint64_t) next_ms * 1000);
                (void) sd_event_source_set_enabled(j->timer, SD_EVENT_ONESHOT);
                return 0;
        }
        job_finish(j, r < 0 ? r : 0);
        return 0;
}

static Job *manager_find_job(Manager *m, pid_t pid) {
        for (Job *j = m->jobs; j; j = j->next)
                if (j->pid == pid)
                        return j;
        return NULL;
}

bool manager_pid_busy(Manager *m, pid_t pid) {
        return manager_find_job(m, pid) != NULL;
}

static Job *job_new(Manager *m, JobKind kind, pid_t pid, const char *name) {
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
static int job_launch(Job *j) {
        Manager *m = j->m;
        int r;

        if (j->report.patch_name[0])
                snprintf(j->name, sizeof(j->name), "%s", j->report.patch_name);
        /* Accuracy 1 ms: 0 would mean sd-event's default of 250 ms, and the engine's
         * retries "soon, while threads are switching" would come a quarter second late. */
        r = sd_event_add_time_relative(m->event, &j->timer, CLOCK_MONOTONIC, 0, JOB_TIMER_ACCURACY_USEC,
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
static int job_start(Job *j, int patch_fd, const UlpOptions *o) {
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
                                 name_hint, (int) pid, j->report.message[0] ? j->report.message : strerror(-r));
                ulp_report_done(&j->report);
                free(j);
                return r;
        }
        return job_launch(j);
}

/* ---- request parsing ------------------------------------------------------------------ */

/* Makes sure fd is a regular file of sane size: reading a pipe or socket a client
 * passed would block the whole daemon. */
static int check_patch_fd(int fd, char *reason, size_t len) {
        struct stat st;
        int fl;

        if (fd < 0) {
                snprintf(reason, len, "the request carries no patch file descriptor");
                return -EBADF;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                snprintf(reason, len, "the patch must be a regular file");
                return -EBADF;
        }
        if ((uint64_t) st.st_size > PATCH_SIZE_MAX) {
                snprintf(reason, len, "the patch file is too large");
                return -EFBIG;
        }
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || (fl & O_ACCMODE) == O_WRONLY) {
                snprintf(reason, len, "the patch file descriptor is not readable");
                return -EBADF;
        }
        return 0;
}

/* ---- methods ------------------------------------------------------------------------ */

static bool reply_error(Connection *c, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool reply_error(Connection *c, int error, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return connection_reply(c, protocol_new_error(error, msg));
}

/* A per-pid result that never became a Job (refused, or failed to start). */
static struct json_object *result_error(pid_t pid, int error, const char *message, const UlpReport *rep) {
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

/* The processes carrying the patch called name (for revert --all), visible to cred. */
static int pids_carrying(const struct ucred *cred, const char *name, pid_t **ret, size_t *ret_n) {
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

                if (auth_check(cred, all[i], why, sizeof(why)) < 0)
                        continue;
                if (ulp_status(all[i], &s, &rep) >= 0) {
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
static void method_transition(Connection *c, struct json_object *q, JobKind kind) {
        Manager *m = c->m;
        _cleanup_close_ int patch_fd = msgreader_take_fd(&c->rd);
        _cleanup_free_ pid_t *pids = NULL;
        size_t n_pids = 0;
        UlpOptions opts;
        Request *req;
        bool all, persist, wait;
        const char *hint;
        char name[128] = "", reason[512];
        int r;

        r = parse_pids(q, &pids, &n_pids);
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
                log_warning("refused: uid %u asked for a sticky patch, which only root may record",
                            (unsigned) c->cred.uid);
                reply_error(c, -EPERM, "permission denied: only root may record sticky patches (--persist)");
                return;
        }

        if (kind == JOB_APPLY || patch_fd >= 0) {
                r = check_patch_fd(patch_fd, reason, sizeof(reason));
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
                        r = pids_carrying(&c->cred, name, &pids, &n_pids);
                        if (r < 0)
                                snprintf(reason, sizeof(reason), "cannot list patched processes: %s", strerror(-r));
                }
                if (r < 0) {
                        reply_error(c, r, "%s", reason);
                        return;
                }
                if (kind == JOB_APPLY && c->cred.uid != 0) {
                        /* an unprivileged --all means all of one's own processes */
                        size_t k = 0;
                        for (size_t i = 0; i < n_pids; i++)
                                if (auth_check(&c->cred, pids[i], reason, sizeof(reason)) >= 0)
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
                size_t index;
                Job *j;

                r = auth_check(&c->cred, pid, reason, sizeof(reason));
                if (r < 0) {
                        if (r == -EPERM)
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
                r = job_start(j, patch_fd, &opts);
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

static void method_check(Connection *c, struct json_object *q) {
        _cleanup_close_ int patch_fd = msgreader_take_fd(&c->rd);
        struct json_object *o, *rep;
        UlpReport report = {};
        const char *hint = sane_name(protocol_get_string(q, "name"));
        char reason[512];
        int64_t pid = 0;
        int r;

        if (protocol_get_int(q, "pid", 1, INT32_MAX, &pid) < 0) {
                reply_error(c, -EINVAL, "check needs one process id");
                return;
        }
        r = check_patch_fd(patch_fd, reason, sizeof(reason));
        if (r < 0) {
                reply_error(c, r, "%s", reason);
                return;
        }
        r = auth_check(&c->cred, (pid_t) pid, reason, sizeof(reason));
        if (r < 0) {
                if (r == -EPERM)
                        log_full(LOG_WARNING, (pid_t) pid, hint, NULL, "refused check of pid %d for uid %u: %s",
                                 (int) pid, (unsigned) c->cred.uid, reason);
                reply_error(c, r, "%s", reason);
                return;
        }
        if (manager_pid_busy(c->m, (pid_t) pid)) {
                reply_error(c, -EBUSY, "pid %d has a transition running; try again when it finished", (int) pid);
                return;
        }
        r = ulp_check((pid_t) pid, patch_fd, hint ?: "patch.so", &report);
        rep = report_to_json(&report, r);
        ulp_report_done(&report);
        o = protocol_new_message("result");
        if (o && rep)
                json_object_object_add(o, "report", rep);
        else
                json_object_put(rep);
        connection_reply(c, o);
}

static void method_status(Connection *c, struct json_object *q) {
        _cleanup_free_ pid_t *pids = NULL;
        UlpProcessStatus *v = NULL;
        size_t n_pids = 0, n = 0;
        struct json_object *o, *procs;
        char reason[512];
        int64_t pid = 0;
        int r;

        r = protocol_get_int(q, "pid", 0, INT32_MAX, &pid);
        if (r == -EINVAL) {
                reply_error(c, r, "invalid process id");
                return;
        }
        if (pid > 0) {
                r = auth_check(&c->cred, (pid_t) pid, reason, sizeof(reason));
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
                if (pid == 0 && auth_check(&c->cred, pids[i], reason, sizeof(reason)) < 0)
                        continue;
                r = ulp_status(pids[i], &v[n], &rep);
                ulp_report_done(&rep);
                if (r >= 0)
                        n++;
                else if (pid > 0 && r != -ENOENT) {
                        reply_error(c, r, "cannot read the state of pid %d: %s", (int) pid, strerror(-r));
                        goto finish;
                }
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

static void method_ping(Connection *c, struct json_object *q) {
        struct json_object *o = protocol_new_message("pong");

        if (o)
                json_object_object_add(o, "daemon_version", json_object_new_string(ULP_VERSION));
        connection_reply(c, o);
}

static const struct {
        const char *name;
        void (*fn)(Connection *c, struct json_object *q);
} methods[] = {
        { "check",  method_check },
        { "status", method_status },
        { "ping",   method_ping },
};

static void dispatch(Connection *c, struct json_object *q) {
        const char *method = protocol_get_string(q, "method");

        if (!method) {
                connection_fail(c, -EBADMSG, "a request needs a \"method\"");
                return;
        }
        if (c->req) {
                /* out of order: the previous request has not had its final reply */
                connection_fail(c, -EBUSY, "a request is already in progress on this connection");
                return;
        }
        /* a fd that arrived with an earlier request is no business of this one */
        if (!protocol_streq(method, "apply") && !protocol_streq(method, "revert") &&
            !protocol_streq(method, "check")) {
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

/* ---- connections: input --------------------------------------------------------------- */

static void connection_free(Connection *c) {
        Manager *m = c->m;

        if (c->req) {
                c->req->c = NULL;  /* the jobs go on; the request is freed with the last one */
                c->req = NULL;
        }
        if (c->in_dispatch) {
                c->dead = true;
                return;
        }
        LIST_REMOVE(m->connections, c);
        m->n_connections--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->idle);
        close(c->fd);
        msgreader_done(&c->rd);
        free(c->out);
        free(c);
        manager_update_status(m);
}

static void connection_process(Connection *c) {
        for (;;) {
                struct json_object *q = NULL;
                int r;

                if (c->dead || c->closing)
                        return;
                r = msgreader_next(&c->rd, &q);
                if (r == 0)
                        return;
                if (r == -EMSGSIZE) {
                        connection_fail(c, r, "message too large");
                        return;
                }
                if (r < 0) {
                        connection_fail(c, r, "malformed message: one JSON object per line with \"version\":1 expected");
                        return;
                }
                dispatch(c, q);
                json_object_put(q);
        }
}

static int connection_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Connection *c = userdata;

        c->in_dispatch = true;
        if (revents & EPOLLOUT) {
                if (connection_flush(c) < 0)
                        connection_free(c);
                else if (c->out_len == 0 && (c->closing || (c->read_eof && !c->req)))
                        connection_free(c);
        }
        /* Gone entirely while we were not reading: epoll would report it forever. */
        if (!c->dead && (revents & (EPOLLHUP | EPOLLERR)) && (c->read_eof || c->closing))
                connection_free(c);
        if (!c->dead && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->read_eof && !c->closing) {
                /* a bounded number of reads, so one chatty client cannot starve the rest */
                for (int i = 0; i < 8 && !c->dead && !c->closing; i++) {
                        int r = msgreader_fill(&c->rd, c->fd);

                        if (r == -EAGAIN)
                                break;
                        if (r == -EMSGSIZE) {
                                connection_fail(c, r, "message too large");
                                break;
                        }
                        if (r < 0) {
                                connection_free(c);
                                break;
                        }
                        if (!c->req)
                                idle_arm(c, true);
                        connection_process(c);
                        if (r == 0) {
                                /* half-closed: answer what is in flight, then close */
                                if (!c->dead)
                                        c->read_eof = true;
                                break;
                        }
                }
                if (!c->dead) {
                        if (c->read_eof && !c->req && c->out_len == 0)
                                connection_free(c);
                        else
                                (void) connection_update_events(c);
                }
        }
        c->in_dispatch = false;
        if (c->dead) {
                c->dead = false;
                connection_free(c);
        }
        return 0;
}

static int connection_on_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        Connection *c = userdata;

        if (c->req)
                return 0;
        log_debug("client pid %d idle, closing", (int) c->cred.pid);
        connection_free(c);
        return 0;
}

static int manager_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        socklen_t len;
        Connection *c;
        int cfd, r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning("accept: %m");
                return 0;
        }
        if (m->n_connections >= CONNECTIONS_MAX) {
                log_warning("too many clients, refusing one");
                close(cfd);
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(cfd);
                return 0;
        }
        c->m = m;
        c->fd = cfd;
        msgreader_init(&c->rd);
        len = sizeof(c->cred);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                log_warning("SO_PEERCRED: %m");
                close(cfd);
                free(c);
                return 0;
        }
        r = sd_event_add_io(m->event, &c->io, cfd, EPOLLIN, connection_on_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &c->idle, CLOCK_MONOTONIC,
                                               CONNECTION_IDLE_USEC, 0, connection_on_idle, c);
        if (r < 0) {
                sd_event_source_disable_unref(c->io);
                close(cfd);
                free(c);
                return 0;
        }
        LIST_PREPEND(m->connections, c);
        m->n_connections++;
        log_debug("client connected: pid %d uid %u", (int) c->cred.pid, (unsigned) c->cred.uid);
        return 0;
}

/* ---- setup -------------------------------------------------------------------------- */

static int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                *s = '/';
        }
        return 0;
}

/* Takes the socket systemd passed, or binds our own. */
static int manager_listen(Manager *m) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int n, r;

        n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "sd_listen_fds: %s", strerror(-n));
        if (n > 1)
                return log_error_errno(-EINVAL, "systemd passed %d sockets, expected one", n);
        if (n == 1) {
                if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
                        return log_error_errno(-EINVAL, "the socket systemd passed is not a listening Unix stream socket");
                m->listen_fd = SD_LISTEN_FDS_START;
                m->listen_fd_from_systemd = true;
                (void) fcntl(m->listen_fd, F_SETFL, fcntl(m->listen_fd, F_GETFL) | O_NONBLOCK);
                log_info("listening on the socket passed by systemd");
                return 0;
        }

        if (strlen(m->socket_path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "socket path too long: %s", m->socket_path);
        strcpy(sa.sun_path, m->socket_path);
        r = mkdir_parents(m->socket_path, 0755);
        if (r < 0)
                return log_error_errno(r, "cannot create the directory of %s: %s", m->socket_path, strerror(-r));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "socket: %m");
        /* A socket file left by a dead ulpd: replace it, but never one that answers. */
        {
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct stat st;

                if (probe >= 0 && lstat(m->socket_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
                        if (connect(probe, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                                close(probe);
                                return log_error_errno(-EADDRINUSE, "another ulpd answers on %s", m->socket_path);
                        }
                        (void) unlink(m->socket_path);
                }
                if (probe >= 0)
                        close(probe);
        }
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(negative_errno(), "cannot bind %s: %m", m->socket_path);
        /* Anyone may connect: who may do what is decided per request from SO_PEERCRED. */
        if (chmod(m->socket_path, 0666) < 0)
                return log_error_errno(negative_errno(), "chmod %s: %m", m->socket_path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(negative_errno(), "listen: %m");
        m->listen_fd = TAKE_FD(fd);
        log_info("listening on %s", m->socket_path);
        return 0;
}

/* Finishes the transitions a previous ulpd left in its targets, in the direction
 * they were going (restart after a crash or kill -9). */
static void manager_resume_transitions(Manager *m) {
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
                                         j->report.message[0] ? j->report.message : strerror(-r));
                        ulp_report_done(&j->report);
                        free(j);
                        continue;
                }
                log_full(LOG_INFO, pids[i], j->report.patch_name, NULL,
                         "taking over the unfinished transition in pid %d", (int) pids[i]);
                (void) job_launch(j);
        }
}

static int manager_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        log_info("stopping on %s%s", strsignal((int) si->ssi_signo),
                 m->n_jobs ? "; running transitions stay in their targets for the next ulpd" : "");
        sd_event_exit(m->event, 0);
        return 0;
}

static void manager_free(Manager *m) {
        while (m->jobs) {
                Job *j = m->jobs;
                Request *q = j->req;

                /* The transition stays consistent in the target; the next ulpd resumes it. */
                if (q && q->c) {
                        struct json_object *e = protocol_new_error(-ESHUTDOWN,
                                "ulpd is stopping; the transition stays in the target and the next ulpd finishes it");
                        Connection *c = q->c;
                        c->req = NULL;
                        q->c = NULL;
                        (void) connection_send(c, e);
                        json_object_put(e);
                }
                j->req = NULL;
                job_free(j);
                if (q && --q->running == 0)
                        request_free(q);
        }
        while (m->connections)
                connection_free(m->connections);
        persist_done(m);
        pending_done(m);
        sd_event_source_disable_unref(m->listen_source);
        if (m->listen_fd >= 0) {
                close(m->listen_fd);
                if (!m->listen_fd_from_systemd)
                        (void) unlink(m->socket_path);
        }
        sd_event_unref(m->event);
        free(m->socket_path);
        free(m->state_dir);
}

static void help(void) {
        printf("ulpd [OPTIONS...]\n\n"
               "Live patching service for running processes.\n\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --socket PATH      Listen on PATH (default %s)\n"
               "     --state-dir DIR    Sticky patches live in DIR (default /var/lib/ulp)\n"
               "     --no-recover       Do not take over transitions left unfinished in targets\n"
               "                        (another tool drives them; tests on a shared machine)\n"
               "     --recover-only PID Take over only the transition in PID (repeatable; tests)\n"
               "     --debug            Log debug messages\n",
               PROTOCOL_SOCKET_DEFAULT);
}

static int parse_argv(int argc, char **argv, Manager *m) {
        enum { ARG_VERSION = 0x100, ARG_SOCKET, ARG_STATE_DIR, ARG_DEBUG, ARG_NO_RECOVER, ARG_RECOVER_ONLY };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h' },
                { "version",   no_argument,       NULL, ARG_VERSION },
                { "socket",    required_argument, NULL, ARG_SOCKET },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "debug",     no_argument,       NULL, ARG_DEBUG },
                { "no-recover", no_argument,      NULL, ARG_NO_RECOVER },
                { "recover-only", required_argument, NULL, ARG_RECOVER_ONLY },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("ulpd %s\n", ULP_VERSION);
                        return 0;
                case ARG_SOCKET:
                        free(m->socket_path);
                        m->socket_path = strdup(optarg);
                        break;
                case ARG_STATE_DIR:
                        free(m->state_dir);
                        m->state_dir = strdup(optarg);
                        break;
                case ARG_DEBUG:
                        log_max_priority = LOG_DEBUG;
                        break;
                case ARG_NO_RECOVER:
                        m->no_recover = true;
                        break;
                case ARG_RECOVER_ONLY: {
                        char *end;
                        long p = strtol(optarg, &end, 10);
                        if (*end || p <= 0 || p > INT32_MAX || m->n_recover_only >= ELEMENTSOF(m->recover_only)) {
                                fprintf(stderr, "ulpd: invalid --recover-only %s\n", optarg);
                                return -EINVAL;
                        }
                        m->recover_only[m->n_recover_only++] = (pid_t) p;
                        break;
                }
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "ulpd: unexpected argument %s\n", argv[optind]);
                return -EINVAL;
        }
        if (!m->socket_path || !m->state_dir)
                return -ENOMEM;
        return 1;
}

int main(int argc, char **argv) {
        Manager m = { .listen_fd = -1, .netlink_fd = -1 };
        sigset_t ss;
        int r;

        log_setup();
        m.socket_path = strdup(PROTOCOL_SOCKET_DEFAULT);
        m.state_dir = strdup("/var/lib/ulp");
        r = parse_argv(argc, argv, &m);
        if (r <= 0) {
                manager_free(&m);
                return r < 0 ? 2 : 0;
        }
        m.self = getpid();
        (void) signal(SIGPIPE, SIG_IGN);

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigprocmask(SIG_BLOCK, &ss, NULL);

        r = sd_event_default(&m.event);
        if (r < 0) {
                log_error("sd_event_default: %s", strerror(-r));
                goto finish;
        }
        (void) sd_event_add_signal(m.event, NULL, SIGTERM, manager_on_signal, &m);
        (void) sd_event_add_signal(m.event, NULL, SIGINT, manager_on_signal, &m);
        /* WATCHDOG=1 from the loop itself: a stuck loop is what the watchdog is for */
        r = sd_event_set_watchdog(m.event, true);
        if (r < 0)
                log_warning("cannot enable the watchdog: %s", strerror(-r));

        r = manager_listen(&m);
        if (r < 0)
                goto finish;
        r = sd_event_add_io(m.event, &m.listen_source, m.listen_fd, EPOLLIN, manager_on_accept, &m);
        if (r < 0) {
                log_error("sd_event_add_io: %s", strerror(-r));
                goto finish;
        }

        if (!m.no_recover)
                manager_resume_transitions(&m);
        (void) pending_setup(&m);
        (void) persist_setup(&m);

        manager_update_status(&m);
        (void) sd_notify(false, "READY=1");
        log_info("ulpd %s ready", ULP_VERSION);

        r = sd_event_loop(m.event);
        if (r < 0)
                log_error("event loop: %s", strerror(-r));
finish:
        manager_free(&m);
        return r < 0 ? 1 : 0;
}
