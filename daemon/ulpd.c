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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/list.h"
#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/report-json.h"
#include "daemon/request.h"
#include "daemon/ulpd.h"

/* The limits below, why they are what they are and what a client sees when it hits one:
 * docs/limits.md. */
#define CONNECTIONS_MAX 256
#define CONNECTIONS_ROOT_RESERVED 32                /* of CONNECTIONS_MAX, only root may take */
#define CONNECTIONS_PER_UID_MAX 16                  /* for each uid but root */
#define CONNECTION_IDLE_USEC (10ULL * 1000000ULL)   /* before a request, and between requests */
#define REQUEST_DEADLINE_SEC 10                     /* from a request's first byte to its last */
#define REQUEST_DEADLINE_USEC (REQUEST_DEADLINE_SEC * 1000000ULL)
#define ACCEPT_BACKOFF_USEC (100ULL * 1000ULL)      /* accept paused for so long when out of fds */
#define LOG_BURST 10                                /* lines a client can provoke ... */
#define LOG_INTERVAL_USEC (10ULL * 1000000ULL)      /* ... in this interval */
/* fds ulpd wants: per connection its socket and what one request may bring, and room for
 * the transitions' own. */
#define UID_FDS_MAX (2 * PROTOCOL_FDS_MAX)            /* fds in flight for each uid but root */
#define FDS_RESERVED 1024                           /* of the fd limit, never for unprivileged requests */
#define NOFILE_WANTED (CONNECTIONS_MAX * (1 + PROTOCOL_FDS_MAX) + 1024)
#define OUTPUT_MAX (16u << 20)                     /* replies queued for a slow reader */
#define PROGRESS_INTERVAL_USEC (250ULL * 1000ULL)
#define HEARTBEAT_USEC (2ULL * 1000000ULL)         /* progress even when nothing changed */
#define CALLBACK_TIMEOUT_MS_DEFAULT 1000            /* a patch callback holds the loop so long */
#define UID_WINDOW_USEC (10ULL * 1000000ULL)        /* each uid but root may have ... */
#define UID_LOOP_BUDGET_USEC (1ULL * 1000000ULL)    /* ... so much of the loop per window */
#define JOBS_PER_UID_MAX 64                         /* transitions running for each uid but root */

struct Connection {
        Manager *m;
        Connection *next, *prev;
        int fd;
        struct ucred cred;
        sd_event_source *io, *idle;
        enum {
                TIMER_OFF,               /* a request is in flight: its jobs have their own */
                TIMER_IDLE,              /* nothing buffered: CONNECTION_IDLE_USEC */
                TIMER_REQUEST,           /* part of a request: REQUEST_DEADLINE_USEC */
                TIMER_RESUME,            /* no longer throttled: process what it sent, at once */
        } timer;
        MsgReader rd;
        char *out;
        size_t out_len;
        Request *req;            /* in flight: no other message may arrive meanwhile */
        bool closing;            /* close once out is flushed */
        bool read_eof;
        bool throttled;          /* its uid used its share of the loop: not read until ... */
        uint64_t dispatch_start; /* when its current request began to be dispatched */
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
        uid_t uid;               /* whose request started it (0: root's, or ulpd's own) */
        char name[128];          /* patch name, for logs */
        UlpOp *op;
        UlpReport report;
        sd_event_source *timer;
        uint64_t last_progress;
        unsigned last_switched;
};

#define JOB_TIMER_ACCURACY_USEC 1000

static const char *job_kind_verb(JobKind k) {
        return k == JOB_APPLY ? "apply" : k == JOB_REVERT ? "revert" : "resume";
}

static uint64_t now_usec(Manager *m) {
        uint64_t t = 0;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

/* At most LOG_BURST lines per LOG_INTERVAL_USEC; counts what it holds back. */
static bool ratelimit_pass(Manager *m, RateLimit *rl) {
        uint64_t now = now_usec(m);

        if (rl->begin == 0 || now >= rl->begin + LOG_INTERVAL_USEC) {
                rl->begin = now;
                rl->n = 0;
        }
        if (rl->n >= LOG_BURST) {
                rl->suppressed++;
                return false;
        }
        rl->n++;
        return true;
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

        if (!c->read_eof && !c->closing && !c->throttled)
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

/* Keeps the connection's one timer on the deadline that applies now (on: unless a
 * request is in flight): none while a request runs (its jobs have their timeouts);
 * REQUEST_DEADLINE_USEC from the first byte of a request, never pushed back by later
 * bytes (a client trickling a byte every few seconds would hold its slot forever);
 * CONNECTION_IDLE_USEC from when the connection went idle. */
static void idle_arm(Connection *c, bool on) {
        int timer;

        if (!c->idle)
                return;
        timer = !on || c->req || c->throttled ? TIMER_OFF : c->rd.len > 0 ? TIMER_REQUEST : TIMER_IDLE;
        if (timer == (int) c->timer)
                return;
        c->timer = timer;
        if (timer != TIMER_OFF)
                (void) sd_event_source_set_time_relative(c->idle, timer == TIMER_REQUEST ?
                                                         REQUEST_DEADLINE_USEC : CONNECTION_IDLE_USEC);
        (void) sd_event_source_set_enabled(c->idle, timer != TIMER_OFF ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
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

static uint64_t clock_usec(void);
static bool uid_over_budget(Manager *m, uid_t uid);
static void uid_charge(Manager *m, uid_t uid, uint64_t usec);

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
static int job_start(Job *j, int patch_fd, const UlpOptions *options) {
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
                                 name_hint, (int) pid, j->report.message[0] ? j->report.message : strerror(-r));
                ulp_report_done(&j->report);
                free(j);
                return r;
        }
        return job_launch(j);
}

/* ---- request parsing ------------------------------------------------------------------ */

/* Makes sure *fd is a regular file of sane size: reading a pipe or socket a client
 * passed would block the whole daemon. Then replaces it with our own sealed copy
 * (ulp_patch_file_copy()), which everything after works from: the client may truncate or grow
 * its file, or write to it, and none of it reaches us. */
static int check_patch_fd(int *fdp, char *reason, size_t len) {
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

/* ---- methods ------------------------------------------------------------------------ */

static int connection_may_start(Connection *c, char *reason, size_t len);
static bool log_refusal_pass(Manager *m);

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

/* apply and revert: one Job per target. */
static void method_transition(Connection *c, struct json_object *q, JobKind kind) {
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

static void method_check(Connection *c, struct json_object *q) {
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

static void method_status(Connection *c, struct json_object *q) {
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

/* ---- the loop's time, shared between uids ---------------------------------------------
 *
 * A request's synchronous part (starting an operation: attaching, loading the patch,
 * its pre-patch callback) runs inside the loop and holds every other client meanwhile.
 * It cannot be cut short, but who pays for it can be counted: each uid but root may use
 * UID_LOOP_BUDGET_USEC of the loop per UID_WINDOW_USEC; a uid over its share is not read
 * from until the window ends, so the others' requests go first. */

static uint64_t clock_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static struct UidUse *uid_use_find(Manager *m, uid_t uid) {
        for (size_t i = 0; i < m->n_uid_use; i++)
                if (m->uid_use[i].uid == uid)
                        return &m->uid_use[i];
        return NULL;
}

static bool uid_over_budget(Manager *m, uid_t uid) {
        struct UidUse *u;

        if (uid == 0)
                return false;
        u = uid_use_find(m, uid);
        return u && u->usec >= UID_LOOP_BUDGET_USEC;
}

/* Inside a request: may c's uid start one more operation? Not once it used its share of
 * the loop, counting what this request took so far (a request naming many processes,
 * each start may take a callback timeout), nor with JOBS_PER_UID_MAX transitions running
 * (each steps in the loop until it ends). Returns 0, or -EAGAIN with the line for the
 * client. */
static int connection_may_start(Connection *c, char *reason, size_t len) {
        struct UidUse *u;
        unsigned n = 0;

        if (c->cred.uid == 0)
                return 0;
        u = uid_use_find(c->m, c->cred.uid);
        if ((u ? u->usec : 0) + (clock_usec() - c->dispatch_start) >= UID_LOOP_BUDGET_USEC) {
                snprintf(reason, len, "not started: uid %u used its share of ulpd's time; "
                         "try again in a few seconds", (unsigned) c->cred.uid);
                return -EAGAIN;
        }
        for (Job *j = c->m->jobs; j; j = j->next)
                n += j->uid == c->cred.uid;
        if (n >= JOBS_PER_UID_MAX) {
                snprintf(reason, len, "not started: uid %u has %u transitions running, the most one user may have",
                         (unsigned) c->cred.uid, n);
                return -EAGAIN;
        }
        return 0;
}

/* Refusals any client can ask for by the thousand (a request naming others' processes). */
static bool log_refusal_pass(Manager *m) {
        if (!ratelimit_pass(m, &m->refusal_log))
                return false;
        if (m->refusal_log.suppressed > 0)
                log_warning("%u more refusals were not logged", m->refusal_log.suppressed);
        m->refusal_log.suppressed = 0;
        return true;
}

/* The window ended: every uid starts afresh; the connections held back are read again.
 * What they sent meanwhile is processed from their own timers (connection_on_idle), one
 * loop iteration each, so that other clients' events come in between. */
static int uid_window_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->n_uid_use = 0;
        m->uid_window_end = 0;
        for (Connection *c = m->connections; c; c = c->next) {
                if (!c->throttled)
                        continue;
                c->throttled = false;
                (void) connection_update_events(c);
                if (c->rd.len == 0) {
                        idle_arm(c, true);
                        continue;
                }
                c->timer = TIMER_RESUME;
                (void) sd_event_source_set_time_relative(c->idle, 0);
                (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
        }
        return 0;
}

static void uid_charge(Manager *m, uid_t uid, uint64_t usec) {
        struct UidUse *u;

        if (uid == 0)
                return;
        u = uid_use_find(m, uid);
        if (!u) {
                struct UidUse *v = reallocarray(m->uid_use, m->n_uid_use + 1, sizeof(*v));

                if (!v)
                        return;
                m->uid_use = v;
                u = &v[m->n_uid_use++];
                *u = (struct UidUse) { .uid = uid };
        }
        u->usec += usec;
        if (m->uid_window_end)
                return;
        m->uid_window_end = clock_usec() + UID_WINDOW_USEC;
        if (!m->uid_window_timer) {
                if (sd_event_add_time_relative(m->event, &m->uid_window_timer, CLOCK_MONOTONIC,
                                               UID_WINDOW_USEC, 10 * 1000, uid_window_on_timer, m) < 0)
                        m->n_uid_use = m->uid_window_end = 0;   /* no window: no throttling */
                return;
        }
        (void) sd_event_source_set_time_relative(m->uid_window_timer, UID_WINDOW_USEC);
        (void) sd_event_source_set_enabled(m->uid_window_timer, SD_EVENT_ONESHOT);
}

/* Stops reading c until the window ends (uid_window_on_timer); its deadlines wait too,
 * for the pause is ulpd's doing. */
static void connection_throttle(Connection *c) {
        log_debug("client pid %d: uid %u used its share of ulpd's time, next request after the others",
                  (int) c->cred.pid, (unsigned) c->cred.uid);
        c->throttled = true;
        idle_arm(c, false);
        (void) connection_update_events(c);
}

static void connection_process(Connection *c) {
        Manager *m = c->m;
        uid_t uid = c->cred.uid;

        for (;;) {
                struct json_object *q = NULL;
                uint64_t t;
                int fd, r;

                if (c->dead || c->closing)
                        return;
                if (!c->req && uid_over_budget(m, uid)) {
                        connection_throttle(c);
                        return;
                }
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
                t = c->dispatch_start = clock_usec();
                dispatch(c, q);
                uid_charge(m, uid, clock_usec() - t);
                json_object_put(q);
                if (c->dead)
                        return;
                /* fds the request brought and did not take are not kept for another */
                while ((fd = msgreader_take_fd(&c->rd)) >= 0)
                        close(fd);
                /* the next request's deadline runs from its own first byte */
                idle_arm(c, false);
                idle_arm(c, true);
        }
}

/* Descriptors that requests in flight brought: a uid other than root may hold at most
 * UID_FDS_MAX of them (two requests' worth), and all such uids together at most what the
 * fd limit leaves after FDS_RESERVED for root and the work itself, so that no user can
 * exhaust ulpd's descriptors (docs/limits.md). True, with the line for the client, when c's
 * request goes over. */
static bool connection_fds_over(Connection *c, char *reason, size_t len) {
        size_t uid_fds = 0, all_fds = 0;
        struct rlimit rl;

        if (c->cred.uid == 0)
                return false;
        for (Connection *o = c->m->connections; o; o = o->next) {
                if (o->cred.uid == 0)
                        continue;
                all_fds += o->rd.n_fds;
                if (o->cred.uid == c->cred.uid)
                        uid_fds += o->rd.n_fds;
        }
        if (uid_fds > UID_FDS_MAX) {
                snprintf(reason, len, "uid %u has %zu file descriptors in requests to ulpd, the most one user "
                         "may have is %u", (unsigned) c->cred.uid, uid_fds, (unsigned) UID_FDS_MAX);
                return true;
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur != RLIM_INFINITY &&
            all_fds + FDS_RESERVED > rl.rlim_cur) {
                snprintf(reason, len, "ulpd holds as many file descriptors of users' requests as it can (%zu); "
                         "try again later", all_fds);
                return true;
        }
        return false;
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
        if (!c->dead && (revents & (EPOLLHUP | EPOLLERR)) && (c->read_eof || c->closing || c->throttled))
                connection_free(c);
        if (!c->dead && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->read_eof && !c->closing &&
            !c->throttled) {
                char msg_fds[192];

                /* a bounded number of reads, so one chatty client cannot starve the rest */
                for (int i = 0; i < 8 && !c->dead && !c->closing && !c->throttled; i++) {
                        int r = msgreader_fill(&c->rd, c->fd);

                        if (r == -EAGAIN)
                                break;
                        if (r == -EMSGSIZE) {
                                connection_fail(c, r, "message too large");
                                break;
                        }
                        if (r == -ETOOMANYREFS) {
                                char msg[128];

                                snprintf(msg, sizeof(msg), "too many file descriptors: a request carries at most %u",
                                         (unsigned) PROTOCOL_FDS_MAX);
                                connection_fail(c, r, msg);
                                break;
                        }
                        if (r < 0) {
                                connection_free(c);
                                break;
                        }
                        if (c->rd.n_fds > 0 && connection_fds_over(c, msg_fds, sizeof(msg_fds))) {
                                connection_fail(c, -ETOOMANYREFS, msg_fds);
                                break;
                        }
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

        if (c->timer == TIMER_RESUME) {
                c->timer = TIMER_OFF;
                c->in_dispatch = true;
                connection_process(c);
                c->in_dispatch = false;
                if (c->dead) {
                        c->dead = false;
                        connection_free(c);
                } else
                        idle_arm(c, true);
                return 0;
        }
        if (c->req)
                return 0;
        if (c->timer == TIMER_REQUEST && !c->closing) {
                char msg[128];

                /* Told why, then closed; closed anyway after another idle period if the
                 * client does not even read that. */
                c->timer = TIMER_IDLE;
                (void) sd_event_source_set_time_relative(c->idle, CONNECTION_IDLE_USEC);
                (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
                snprintf(msg, sizeof(msg), "request not received whole within %u s of its first byte",
                         (unsigned) REQUEST_DEADLINE_SEC);
                connection_fail(c, -ETIMEDOUT, msg);
                return 0;
        }
        log_debug("client pid %d idle, closing", (int) c->cred.pid);
        connection_free(c);
        return 0;
}

/* A warning any client can provoke at will: a burst per interval, then a count. */
#define log_warning_ratelimited(m, rl, ...) do {                                          \
                if (ratelimit_pass((m), (rl))) {                                          \
                        if ((rl)->suppressed > 0)                                         \
                                log_warning("%u more like the next were not logged", (rl)->suppressed); \
                        (rl)->suppressed = 0;                                             \
                        log_warning(__VA_ARGS__);                                         \
                }                                                                         \
        } while (0)

static int accept_resume(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_ON);
        return 0;
}

/* Out of fds or kernel memory: the connection stays in the backlog, so epoll reports the
 * socket ready again at once and accepting again would spin. Listening pauses for a
 * moment instead; connections that end meanwhile make room. */
static void accept_pause(Manager *m, int error) {
        int r;

        log_warning_ratelimited(m, &m->accept_log, "cannot accept a client: %s; not accepting for %llu ms",
                                strerror(error), ACCEPT_BACKOFF_USEC / 1000);
        if (!m->accept_retry)
                r = sd_event_add_time_relative(m->event, &m->accept_retry, CLOCK_MONOTONIC,
                                               ACCEPT_BACKOFF_USEC, 10 * 1000, accept_resume, m);
        else {
                r = sd_event_source_set_time_relative(m->accept_retry, ACCEPT_BACKOFF_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->accept_retry, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                return;   /* no timer to resume: better to keep trying than to go deaf */
        (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_OFF);
}

/* May a new connection from cred be served? Root has CONNECTIONS_ROOT_RESERVED slots no
 * other uid can take; every other uid has at most CONNECTIONS_PER_UID_MAX, so that one
 * user can take neither root's slots nor the others'. A connection holds at most
 * 1 + PROTOCOL_FDS_MAX of ulpd's fds (its socket and what its request brought; the
 * reader closes the rest), so this bounds a uid's fds as well. Returns 0, or -errno
 * with the line for the client. */
static int connection_admit(Manager *m, const struct ucred *cred, char *reason, size_t len) {
        unsigned same = 0, unprivileged = 0, fds = 0;

        for (Connection *c = m->connections; c; c = c->next) {
                if (c->cred.uid != 0)
                        unprivileged++;
                if (c->cred.uid == cred->uid) {
                        same++;
                        fds += 1 + (unsigned) c->rd.n_fds;
                }
        }
        if (m->n_connections >= CONNECTIONS_MAX ||
            (cred->uid != 0 && unprivileged >= CONNECTIONS_MAX - CONNECTIONS_ROOT_RESERVED)) {
                snprintf(reason, len, "ulpd serves as many clients as it can (%u); try again later",
                         cred->uid != 0 ? CONNECTIONS_MAX - CONNECTIONS_ROOT_RESERVED : CONNECTIONS_MAX);
                return -EAGAIN;
        }
        if (cred->uid != 0 && same >= CONNECTIONS_PER_UID_MAX) {
                snprintf(reason, len, "uid %u has %u connections to ulpd (holding %u file descriptors), "
                         "the most one user may have", (unsigned) cred->uid, same, fds);
                return -EUSERS;
        }
        return 0;
}

/* Tells a client that was not admitted why, as the reply to whatever it sends, and
 * closes. Never waits: the line fits in an empty socket buffer, or is lost. */
static void connection_refuse(int fd, int error, const char *reason) {
        _cleanup_free_ char *s = NULL;
        struct json_object *o = protocol_new_error(error, reason);
        size_t len = 0;

        if (o) {
                s = protocol_format(o, &len);
                json_object_put(o);
        }
        if (s)
                (void) send(fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
}

static int manager_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        struct ucred cred = {};
        char reason[256];
        socklen_t len;
        Connection *c;
        int cfd, r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                        accept_pause(m, errno);
                else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning_ratelimited(m, &m->accept_log, "accept: %m");
                return 0;
        }
        len = sizeof(cred);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_ratelimited(m, &m->accept_log, "SO_PEERCRED: %m");
                close(cfd);
                return 0;
        }
        r = connection_admit(m, &cred, reason, sizeof(reason));
        if (r < 0) {
                log_warning_ratelimited(m, &m->accept_log, "refused a client (pid %d uid %u): %s",
                                        (int) cred.pid, (unsigned) cred.uid, reason);
                connection_refuse(cfd, r, reason);
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(cfd);
                return 0;
        }
        c->m = m;
        c->fd = cfd;
        c->cred = cred;
        c->timer = TIMER_IDLE;
        msgreader_init(&c->rd);
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

/* systemd's default LimitNOFILE is 1024 soft, 512K hard: the soft limit is for programs
 * that still use select(), which ulpd does not. With 1024, clients passing fds ran ulpd
 * out of them. */
static void raise_nofile_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warning("cannot raise the limit of open files to %llu: %m",
                                    (unsigned long long) rl.rlim_max);
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < NOFILE_WANTED)
                log_warning("the limit of open files is %llu, below the %u that ulpd's limits assume: "
                            "raise LimitNOFILE=", (unsigned long long) rl.rlim_cur, (unsigned) NOFILE_WANTED);
}

static int manager_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        log_info("stopping on %s%s", strsignal((int) si->ssi_signo),
                 m->n_jobs ? "; running transitions stay in their targets for the next ulpd" : "");
        sd_event_exit(m->event, 0);
        return 0;
}

/*
 * Threads an operation asked to stop that had not stopped when it ended (a vfork parent
 * in D state) stay traced by this thread until they stop: each must be detached as soon
 * as it does, or it sits in its stop with nobody to resume it. Looked at every few ms
 * while any is left; after every dispatch, in case an operation just left one.
 */
#define LATE_POLL_USEC (5ULL * 1000ULL)

static int manager_on_late_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        if (ulp_release_late() > 0) {
                (void) sd_event_source_set_time_relative(s, LATE_POLL_USEC);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        return 0;
}

static int manager_on_post(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        int on = SD_EVENT_OFF;

        if (!m->late_timer || ulp_release_late() == 0)
                return 0;
        (void) sd_event_source_get_enabled(m->late_timer, &on);
        if (on == SD_EVENT_OFF) {
                (void) sd_event_source_set_time_relative(m->late_timer, LATE_POLL_USEC);
                (void) sd_event_source_set_enabled(m->late_timer, SD_EVENT_ONESHOT);
        }
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
        sd_event_source_disable_unref(m->accept_retry);
        sd_event_source_disable_unref(m->uid_window_timer);
        free(m->uid_use);
        sd_event_source_disable_unref(m->late_timer);
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
               "     --callback-timeout MS  Give up on a patch callback after MS ms (default %u);\n"
               "                        every client waits while one runs\n"
               "     --debug            Log debug messages\n",
               PROTOCOL_SOCKET_DEFAULT, CALLBACK_TIMEOUT_MS_DEFAULT);
}

static int parse_argv(int argc, char **argv, Manager *m) {
        enum { ARG_VERSION = 0x100, ARG_SOCKET, ARG_STATE_DIR, ARG_DEBUG, ARG_NO_RECOVER, ARG_RECOVER_ONLY,
               ARG_CALLBACK_TIMEOUT };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h' },
                { "version",   no_argument,       NULL, ARG_VERSION },
                { "socket",    required_argument, NULL, ARG_SOCKET },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "debug",     no_argument,       NULL, ARG_DEBUG },
                { "no-recover", no_argument,      NULL, ARG_NO_RECOVER },
                { "recover-only", required_argument, NULL, ARG_RECOVER_ONLY },
                { "callback-timeout", required_argument, NULL, ARG_CALLBACK_TIMEOUT },
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
                case ARG_CALLBACK_TIMEOUT: {
                        char *end;
                        long ms = strtol(optarg, &end, 10);
                        if (*end || ms <= 0 || ms > 600 * 1000) {
                                fprintf(stderr, "ulpd: invalid --callback-timeout %s (1..600000 ms)\n", optarg);
                                return -EINVAL;
                        }
                        m->callback_timeout_ms = (unsigned) ms;
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
        Manager m = { .listen_fd = -1, .netlink_fd = -1, .callback_timeout_ms = CALLBACK_TIMEOUT_MS_DEFAULT };
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
        raise_nofile_limit();

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

        r = sd_event_add_time_relative(m.event, &m.late_timer, CLOCK_MONOTONIC, LATE_POLL_USEC,
                                       JOB_TIMER_ACCURACY_USEC, manager_on_late_timer, &m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m.late_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_post(m.event, NULL, manager_on_post, &m);
        if (r < 0) {
                log_error("cannot set up the timer for threads left to stop: %s", strerror(-r));
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
