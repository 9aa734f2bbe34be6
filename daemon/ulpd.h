/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * ulpd's internal objects, shared by its files (docs/daemon.md):
 *   ulpd.c                    arguments, main, the loop's setup and teardown, status for systemd
 *   ulpd-listen.c             the listening socket, accepting clients
 *   ulpd-conn.c               a client's connection: reading requests, queueing replies, its timer
 *   ulpd-limits.c             per-uid shares: connections, fds in flight, loop time, jobs; log rates
 *   ulpd-dispatch.c           a request to its method; what the methods share
 *   ulpd-method-transition.c  apply and revert
 *   ulpd-method-query.c       check, status, ping
 *   ulpd-job.c                requests and jobs: the lifecycle of a transition
 *   ulpd-driver.c             the driver threads that run the jobs' operations
 *   ulpd-auth.c               who may patch what
 *   ulpd-sticky.c             sticky patches and the process connector
 *   ulpd-late.c               objects a patch names that a process loads later
 *   ulpd-log.c                journal or stderr
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "daemon/protocol.h"
#include "common/list.h"
#include "ulp/libulp.h"

typedef struct Manager Manager;
typedef struct Connection Connection;
typedef struct Request Request;
typedef struct Job Job;
typedef struct StickyPatch StickyPatch;
typedef struct LateProc LateProc;
typedef struct PatchDirFile PatchDirFile;
typedef struct Driver Driver;
typedef struct StatusStream StatusStream;

/* ---- logging (ulpd-log.c) ------------------------------------------------------ */

/* Logs one line: to the journal with ULP_PID=/ULP_PATCH=/ULP_FUNC= fields when ulpd runs
 * under systemd, else to stderr. pid 0 and NULL patch/func are left out. */
void log_setup(void);
void log_full(int priority, pid_t pid, const char *patch, const char *func,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define log_info(...) log_full(LOG_INFO, 0, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, 0, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, 0, NULL, NULL, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, 0, NULL, NULL, __VA_ARGS__)
/* Logs at LOG_ERR and returns error (a negative errno). */
#define log_error_errno(error, ...) ({ log_error(__VA_ARGS__); (error); })
extern int log_max_priority;

/* ---- authorization (ulpd-auth.c) ----------------------------------------------- */

/* A client's proof of ptrace access to pid (protocol.h "targets"): /proc/PID/mem it
 * opened O_RDWR, and a pidfd. */
typedef struct AuthProof {
        pid_t pid;
        int mem_fd;
        int pidfd;
} AuthProof;

typedef struct AuthProofs {
        AuthProof *v;
        size_t n;
} AuthProofs;

/* Takes the descriptors of request q out of rd: first the patch (want_patch 1: there is
 * one; 0: none; -1: either, the count tells), then the two of each "targets" entry, in
 * order. Anything else that came is closed. Returns 0, or -errno with the line for the
 * client in reason (a count that does not match, malformed or duplicate targets). */
int auth_take_fds(MsgReader *rd, struct json_object *q, int want_patch, int *ret_patch_fd,
                  AuthProofs *ret, char *reason, size_t reason_len);
void auth_proofs_done(AuthProofs *p);
const AuthProof *auth_find_proof(const AuthProofs *proofs, pid_t pid);

/* May the peer with credentials cred patch (or inspect) pid? Returns 0, or -EPERM with
 * the one line for the client in reason, -ESRCH when pid does not exist (or exited
 * since the client's proof). Nobody may touch ulpd. With a proof for pid in proofs, the
 * kernel decided at the client's open(): the proof must be valid, and *ret_mem_fd (when
 * not NULL) gets its /proc/PID/mem descriptor, to bind the operation to. Without one,
 * only root is allowed (ulpd's own authority, *ret_mem_fd -1). */
int auth_check(const struct ucred *cred, const AuthProofs *proofs, pid_t pid, int *ret_mem_fd,
               char *reason, size_t reason_len);

/* ---- transitions (ulpd-job.c) -------------------------------------------------- */

typedef enum JobKind {
        JOB_APPLY,
        JOB_REVERT,
        JOB_RESUME,
} JobKind;

/* Starts an apply of the patch open at patch_fd on pid for no client (sticky patches).
 * Returns 0 when started (or refused for a reason worth no more than a log line),
 * -EBUSY when pid has a transition running, other -errno from ulp_op_apply(). */
int manager_start_auto_apply(Manager *m, pid_t pid, int patch_fd, const char *name_hint,
                             const UlpOptions *o);
bool manager_pid_busy(Manager *m, pid_t pid);
void manager_update_status(Manager *m);

/* ---- sticky patches (ulpd-sticky.c) ------------------------------------------- */

/* Loads the sticky_patches in the state dir and listens for exec events. Returns 0 or -errno
 * (failure to get exec events is logged and not fatal). */
int sticky_setup(Manager *m);
void sticky_done(Manager *m);

/* Records the patch open at patch_fd as a sticky patch: copies it into the state dir.
 * origin: the patch directory's file it comes from, or NULL. Returns 0, or -errno with
 * the reason in reason. */
int sticky_add(Manager *m, int patch_fd, const char *name_hint, const UlpOptions *o, const char *origin,
               char *reason, size_t reason_len);
/* Removes the sticky patch called name. Returns 0, -ENOENT when there is none. */
int sticky_remove(Manager *m, const char *name);

/* The processes (other than ulpd) whose modules match the patch open at patch_fd: every
 * object it patches is loaded, with the build-id it pins. Returns 0 and a malloc()ed
 * array, or -errno with the reason (e.g. no build-id pin for the main executable). */
int sticky_matching_pids(Manager *m, int patch_fd, const char *name_hint,
                          pid_t **ret, size_t *ret_n, char *reason, size_t reason_len);

/* The name of the patch open at fd (its ULP_PATCH_INFO name, else from hint). Returns 0,
 * or -errno with the reason. */
int sticky_patch_name(int fd, const char *hint, char *ret, size_t len, char *reason, size_t reason_len);

/* Applies every sticky patch that fits pid (a new or newly seen process). */
void sticky_process_appeared(Manager *m, pid_t pid);

size_t sticky_count(Manager *m);
/* Applies the sticky patch called name to every running process it fits (each its own
 * job, a failure in one logged as its own). Returns 0, or -ENOENT when no such wish. */
int sticky_apply_running(Manager *m, const char *name);
/* The names of the sticky patches recorded from files of dir (sticky_add()'s origin), in
 * a NULL-terminated array of *ret_n malloc()ed strings. */
int sticky_names_from(Manager *m, const char *dir, char ***ret, size_t *ret_n);

/* ---- the patch directory (ulpd-patchdir.c) ---------------------------------------- */

/* Watches m->patch_dir (when set) and schedules its first scan. */
int patch_dir_setup(Manager *m);
void patch_dir_done(Manager *m);
/* Applies what is new there, reverts what went away (docs/fleet.md). */
void patch_dir_scan(Manager *m);
/* {"path":..., "error":..., "files":[{"file","state","patch"|"error"}]} for status, or
 * NULL without a patch directory. */
struct json_object *patch_dir_to_json(Manager *m);

/* ---- objects loaded later (ulpd-late.c) -------------------------------------- */

/* Sets up the watch for libraries that processes load after a patch named them, and
 * learns the processes carrying such pending objects (all of them, or those of
 * --recover-only; none with --no-recover). Returns 0 or -errno. */
int pending_setup(Manager *m);
void pending_done(Manager *m);
/* Re-reads the pending objects of pid (after an operation on it finished): watches it
 * while it has some, forgets it otherwise. */
void pending_learn(Manager *m, pid_t pid);
bool pending_watched(Manager *m, pid_t pid);

/* ---- the manager --------------------------------------------------------------- */

/* At most a burst of lines per interval for messages any client can provoke; the
 * number left out is told with the next line let through. */
typedef struct RateLimit {
        uint64_t begin;
        unsigned n, suppressed;
} RateLimit;

struct Manager {
        sd_event *event;
        char *socket_path;
        char *state_dir;
        int listen_fd;
        bool listen_fd_from_systemd;
        sd_event_source *listen_source;
        sd_event_source *accept_retry;   /* accept paused (out of fds), see accept_pause() */
        RateLimit accept_log, refusal_log;
        unsigned callback_timeout_ms;    /* a patch callback blocks the loop at most so long */
        uint64_t uid_share_usec;         /* each uid but root may use so much of the loop per window */
        /* the loop's time each uid's requests took in this window, see uid_charge() */
        struct UidUse { uid_t uid; uint64_t usec; } *uid_use;
        size_t n_uid_use;
        uint64_t uid_window_end;
        sd_event_source *uid_window_timer;

        Connection *connections;
        unsigned n_connections;
        Job *jobs;
        unsigned n_jobs;

        /* sticky patches */
        StickyPatch *sticky_patches;
        int netlink_fd;
        sd_event_source *netlink_source;
        sd_event_source *rescan_source;
        bool exec_events;

        /* processes with objects a patch names that they have not loaded yet */
        LateProc *late;
        size_t n_late;
        sd_event_source *late_objects_timer;

        /* threads an operation asked to stop that had not stopped when it ended */
        sd_event_source *late_timer;

        /* the patch directory (ulpd-patchdir.c); patch_dir NULL: none */
        char *patch_dir;
        char patch_dir_error[160];       /* why the directory itself is refused, "" */
        PatchDirFile *patch_dir_files;
        int patch_dir_inotify_fd, patch_dir_wd;
        int patch_dir_parent_wd;         /* while the directory does not exist */
        sd_event_source *patch_dir_io, *patch_dir_timer;

        /* the driver threads (ulpd-driver.c): started as jobs need them, up to max_drivers;
         * under drv_lock the jobs no driver took yet, and the drivers that could take one */
        Driver *drivers;
        unsigned n_drivers, max_drivers;
        pthread_mutex_t drv_lock;
        pthread_cond_t drv_started;
        bool drivers_ready, drivers_stop;
        Job *queue, *queue_last;
        Driver *idle;
        unsigned late_pins;      /* pids whose late threads a driver still traces */
        uint64_t job_seq;
        /* what the drivers tell the loop: jobs with news, under post_lock, and an eventfd */
        pthread_mutex_t post_lock;
        Job *posted;
        int post_fd;
        sd_event_source *post_source;

        /* transitions run to their end since start, and those of them that failed */
        uint64_t transitions_total, transitions_failed;

        pid_t self;
        bool no_recover;
        pid_t recover_only[16];  /* tests: take over only these (none: all) */
        size_t n_recover_only;
        char last_status[256];
};

/* ---- limits ------------------------------------------------------------------- */

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
#define PATCH_DIR_DEFAULT "/etc/ulp/patches.d"
#define CALLBACK_TIMEOUT_MS_DEFAULT 1000            /* a patch callback holds the loop so long */
#define UID_WINDOW_USEC (10ULL * 1000000ULL)        /* each uid but root may have ... */
#define UID_SHARE_MS_DEFAULT 1000                   /* ... so much of the loop per window (--uid-share-ms) */
#define JOBS_PER_UID_MAX 64                         /* transitions running for each uid but root */
#define DRIVERS_DEFAULT 16                          /* threads running operations at once */
#define DRIVERS_MAX 256
#define DRIVER_JOBS_MAX 4                           /* operations one driver runs interleaved */
#define UID_DRIVERS_SHARE 4                         /* each uid but root occupies 1/4 of --drivers (at least 1) */

/* ---- the objects of the loop ----------------------------------------------------
 *
 * Lifetimes: a Connection owns at most one Request in flight; a Request owns the
 * result slots of its Jobs; a Job outlives its Request's client (a client that goes
 * away, or asked not to wait, leaves the transition running), and a Request without
 * a client is freed when its last Job finished. A Job without a Request is one ulpd
 * started itself (restart recovery, sticky patches).
 */

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
        StatusStream *stream;    /* a status sent in parts: in flight as well */
        unsigned held_fds;       /* descriptors its stream keeps (access proofs) */
        bool closing;            /* close once out is flushed */
        bool read_eof;
        bool throttled;          /* its uid used its share of the loop: not read until ... */
        uint64_t dispatch_start; /* when its current request began to be dispatched */
        unsigned n_ref;          /* the list's while open, and each running callback's */
};

struct Request {
        Manager *m;
        Connection *c;           /* NULL once the client is gone or does not wait */
        unsigned running;        /* Jobs not finished */
        struct json_object *results; /* array: one report per pid, in request order */
        bool parts;              /* the client takes "result_part" messages (protocol.h) */
};

/* What a job's driver last told the loop about it (ulpd-driver.c). */
typedef struct JobNews {
        bool started;            /* the operation started (its first progress is due) */
        bool finished;           /* it ended: result, and report in the Job */
        int result;
        uint64_t charge_usec;    /* the driver's time since the last news, for the uid */
        unsigned switched, total;
        bool has_worst;
        UlpStraggler worst;
        char patch_name[128];
        struct json_object *started_result; /* answer_at_start: the result "started" */
        bool no_late;            /* finished: its process's block names no late object */
} JobNews;

/*
 * A Job is the loop's (its links, request, name, progress) and, from job_submit() until
 * it posts its end, its driver's (op, report, options and descriptors, due): the one
 * thread that traces the target, for the whole operation (docs/daemon.md, "Drivers").
 * The two meet only in news, under m->post_lock, and hold_until.
 */
struct Job {
        Manager *m;
        Job *next, *prev;
        Request *req;
        size_t index;            /* slot in req->results */
        JobKind kind;
        pid_t pid;
        uid_t uid;               /* whose request started it (0: root's, or ulpd's own) */
        char name[128];          /* patch name, for logs */
        bool answer_at_start;    /* the client does not wait: its result is "started" */
        uint64_t last_progress;
        unsigned last_switched;
        JobNews seen;            /* the last news the loop took */
        bool deferred;           /* not handed to a driver yet: another start of its uid runs */
        bool no_late;            /* its end: the block names no late object (JobNews) */
        uint64_t seq;            /* order of submission */

        /* the driver's */
        Job *drv_next;
        UlpOp *op;
        UlpReport report;
        UlpOptions opts;
        int patch_fd;            /* apply: a descriptor of its own on ulpd's copy; else -1 */
        int auth_fd;             /* opts.auth_mem_fd, its own copy until the start; -1 */
        char start_name[128];    /* the name the start is given */
        uint64_t due;
        uint64_t news_sent;      /* when the last progress news went, and its count */
        unsigned news_switched;
        bool sync_start;         /* the loop waits for the start (job_start()) */
        bool refused;            /* not started: its uid used its share meanwhile */
        bool start_done;         /* under m->drv_lock, for the waiting loop */
        int start_result;

        /* the loop writes, the driver reads: no step before (a uid over its share) */
        _Atomic uint64_t hold_until;

        /* under m->post_lock */
        bool posted;
        Job *post_next;
        JobNews news;
};

#define JOB_TIMER_ACCURACY_USEC 1000
/* A step due now or within a few ms waits for nothing else: sd-event would otherwise
 * place its wake-up anywhere within the accuracy, a whole millisecond late on average
 * half of it (docs/performance.md). */
#define JOB_TIMER_SOON_ACCURACY_USEC 1
#define JOB_TIMER_SOON_MS 10

static inline uint64_t now_usec(Manager *m) {
        uint64_t t = 0;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &t);
        return t;
}

static inline uint64_t clock_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- listening (ulpd-listen.c) ------------------------------------------------- */

/* Takes the socket systemd passed, or binds our own. */
int manager_listen(Manager *m);
int manager_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* ---- connections (ulpd-conn.c) -------------------------------------------------- */

/* Serves a client accepted on cfd with credentials cred. Returns 0, or -errno (cfd
 * closed). */
int connection_new(Manager *m, int cfd, const struct ucred *cred);
int connection_update_events(Connection *c);
/* Queues message o (reference not taken) for the client. Returns 0, or -errno when
 * the connection is dead or does not read its replies. */
int connection_send(Connection *c, struct json_object *o);
/* Sends and then frees o; closes the connection when it cannot take it. Returns false
 * when c was closed. */
bool connection_reply(Connection *c, struct json_object *o);
/* Answers with an error and closes after flushing (for protocol violations). */
void connection_fail(Connection *c, int error, const char *message);
/* Keeps the connection's one timer on the deadline that applies now. */
void idle_arm(Connection *c, bool on);
/* Takes and drops a reference: the memory of c goes with the last one. */
Connection *connection_ref(Connection *c);
Connection *connection_unref(Connection *c);
/* Ends the connection now: its socket, timers, descriptors in flight and queued replies
 * are released, its request goes on without a client, and the list's reference is
 * dropped. Whoever still holds one sees connection_closed(). Idempotent. */
void connection_close(Connection *c);
bool connection_closed(const Connection *c);

/* ---- limits (ulpd-limits.c) ----------------------------------------------------- */

bool ratelimit_pass(Manager *m, RateLimit *rl);
/* Refusals any client can ask for by the thousand (a request naming others' processes). */
bool log_refusal_pass(Manager *m);
/* A warning any client can provoke at will: a burst per interval, then a count. */
#define log_warning_ratelimited(m, rl, ...) do {                                          \
                if (ratelimit_pass((m), (rl))) {                                          \
                        if ((rl)->suppressed > 0)                                         \
                                log_warning("%u more like the next were not logged", (rl)->suppressed); \
                        (rl)->suppressed = 0;                                             \
                        log_warning(__VA_ARGS__);                                         \
                }                                                                         \
        } while (0)
bool uid_over_budget(Manager *m, uid_t uid);
void uid_charge(Manager *m, uid_t uid, uint64_t usec);
/* Inside a request: may c's uid start one more operation? Returns 0, or -EAGAIN with
 * the line for the client. */
int connection_may_start(Connection *c, char *reason, size_t len);
/* True, with the line for the client, when the fds c's request brought go over its
 * uid's share or all users' share. */
bool connection_fds_over(Connection *c, char *reason, size_t len);
/* May a new connection from cred be served? Returns 0, or -errno with the line for
 * the client. */
int connection_admit(Manager *m, const struct ucred *cred, char *reason, size_t len);

/* ---- dispatch and methods (ulpd-dispatch.c, ulpd-method-*.c) -------------------- */

void dispatch(Connection *c, struct json_object *q);
bool reply_error(Connection *c, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sends the results of an apply or revert: in parts when the client takes them, else in
 * one message, or an error line when they do not fit in one. Returns false when c was
 * closed. */
bool reply_results(Connection *c, struct json_object *results, bool parts);
/* A per-pid result that never became a Job (refused, or failed to start). */
struct json_object *result_error(pid_t pid, int error, const char *message, const UlpReport *rep);
/* Makes sure *fdp is a regular file of sane size and replaces it with ulpd's own sealed
 * copy. Returns 0, or -errno with the line for the client. */
int check_patch_fd(int *fdp, char *reason, size_t len);
void method_transition(Connection *c, struct json_object *q, JobKind kind);
void method_check(Connection *c, struct json_object *q);
void method_status(Connection *c, struct json_object *q);
void method_ping(Connection *c, struct json_object *q);
/* Sends the next part of c's status (c->stream), or its end, which frees the stream. */
void status_stream_continue(Connection *c);
void status_stream_free(Connection *c);

/* ---- requests and jobs (ulpd-job.c) --------------------------------------------- */

const char *job_kind_verb(JobKind k);
/* A request in flight on c, with no result yet. Returns NULL when out of memory. */
Request *request_new(Connection *c);
void request_free(Request *q);
/* The request's last job finished, or none ran: send the final result to a waiting
 * client, and free the request. */
void request_complete(Request *q);
Job *job_new(Manager *m, JobKind kind, pid_t pid, const char *name);
/* Starts kind on pid on a driver and waits for the start (ulpd's own jobs). On failure
 * the report is in j->report and j is not linked; on success the job is the loop's. */
int job_start(Job *j, int patch_fd, const UlpOptions *options);
/* Hands kind on pid to a driver without waiting: its start's failure comes as its end.
 * On failure here the report is in j->report and j is not linked. */
int job_submit(Job *j, int patch_fd, const UlpOptions *options);
void job_free(Job *j);
void job_store_result(Job *j, int error);
void job_log_result(Job *j, int r);
void job_send_progress(Job *j, bool force);
Job *manager_find_job(Manager *m, pid_t pid);
/* Finishes the transitions a previous ulpd left in its targets. */
void manager_resume_transitions(Manager *m);
/* The driver's news of j, taken by the loop (ulpd-driver.c). */
void job_on_news(Job *j, const JobNews *n);

/* ---- drivers (ulpd-driver.c) ----------------------------------------------------- */

int drivers_setup(Manager *m);
/* Stops and joins every driver: the operations they hold are freed there (each stays in
 * its target, for the next ulpd). */
void drivers_done(Manager *m);
/* Queues j for the first driver with room, which keeps it for its whole life. Returns 0
 * or -errno. */
int driver_take(Manager *m, Job *j);
/* Waits until a driver tried to start j; returns the start's result. */
int driver_wait_start(Job *j);
/* The uid of j is over its share until t: j takes no step (nor starts) before. */
void job_hold(Job *j, uint64_t t);
