/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * ulpd's internal objects, shared by ulpd.c (service, connections, transitions),
 * ulpd-auth.c (who may patch what), ulpd-log.c (journal or stderr),
 * ulpd-persist.c (sticky patches and the process connector) and ulpd-pending.c
 * (late objects: patching the libraries a process loads after the patch).
 */

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "daemon/protocol.h"
#include "ulp/libulp.h"

typedef struct Manager Manager;
typedef struct Connection Connection;
typedef struct Request Request;
typedef struct Job Job;
typedef struct Wish Wish;
typedef struct PendingProc PendingProc;

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

/* ---- transitions (ulpd.c) ------------------------------------------------------ */

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

/* ---- sticky patches (ulpd-persist.c) ------------------------------------------- */

/* Loads the wishes in the state dir and listens for exec events. Returns 0 or -errno
 * (failure to get exec events is logged and not fatal). */
int persist_setup(Manager *m);
void persist_done(Manager *m);

/* Records a wish for the patch open at patch_fd: copies it into the state dir. Returns
 * 0, or -errno with the reason in reason. */
int persist_add(Manager *m, int patch_fd, const char *name_hint, const UlpOptions *o,
                char *reason, size_t reason_len);
/* Removes the wish called name. Returns 0, -ENOENT when there is none. */
int persist_remove(Manager *m, const char *name);

/* The processes (other than ulpd) whose modules match the patch open at patch_fd: every
 * object it patches is loaded, with the build-id it pins. Returns 0 and a malloc()ed
 * array, or -errno with the reason (e.g. no build-id pin for the main executable). */
int persist_matching_pids(Manager *m, int patch_fd, const char *name_hint,
                          pid_t **ret, size_t *ret_n, char *reason, size_t reason_len);

/* The name of the patch open at fd (its ULP_PATCH_INFO name, else from hint). Returns 0,
 * or -errno with the reason. */
int persist_patch_name(int fd, const char *hint, char *ret, size_t len, char *reason, size_t reason_len);

/* Applies every wish that fits pid (a new or newly seen process). */
void persist_process_appeared(Manager *m, pid_t pid);

size_t persist_count(Manager *m);

/* ---- objects loaded later (ulpd-pending.c) -------------------------------------- */

/* Sets up the watch for libraries that processes load after a patch named them, and
 * learns the processes carrying such late objects (all of them, or those of
 * --recover-only; none with --no-recover). Returns 0 or -errno. */
int pending_setup(Manager *m);
void pending_done(Manager *m);
/* Re-reads the late objects of pid (after an operation on it finished): watches it
 * while it has some, forgets it otherwise. */
void pending_learn(Manager *m, pid_t pid);

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
        Wish *wishes;
        int netlink_fd;
        sd_event_source *netlink_source;
        sd_event_source *rescan_source;
        bool exec_events;

        /* processes with objects a patch names that they have not loaded yet */
        PendingProc *pending;
        size_t n_pending;
        sd_event_source *pending_timer;

        /* threads an operation asked to stop that had not stopped when it ended */
        sd_event_source *late_timer;

        pid_t self;
        bool no_recover;
        pid_t recover_only[16];  /* tests: take over only these (none: all) */
        size_t n_recover_only;
        char last_status[256];
};
