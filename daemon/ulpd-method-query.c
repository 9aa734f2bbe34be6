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

/*
 * A status request's reply, made a part at a time (protocol.h). A client that asked
 * for parts ("parts": true) gets "status_part" messages of at most STATUS_PART_PROCESSES
 * processes and STATUS_PART_BYTES each, the next made only once the client read the
 * last (ulpd-conn.c), then the final "status" with the totals: what ulpd holds for it
 * is the list of pids and one part, however many processes carry a control block, and
 * however slowly it reads. A client that did not ask gets one "status", as before,
 * or an error when that would not fit in one message. docs/limits.md.
 */
#define STATUS_PART_PROCESSES 32
#define STATUS_PART_BYTES (64u * 1024u)
/* Room left in a message for what surrounds the processes: "type", "version", the
 * counters. The patch directory's listing (status of all, in the final message) is
 * not bounded by this. */
#define STATUS_ENVELOPE_BYTES 1024u

struct StatusStream {
        pid_t *pids;
        size_t n_pids, next;
        size_t listed;            /* processes sent so far */
        pid_t pid;                /* > 0: status -p, whose failure is the reply */
        bool parts;               /* the client takes "status_part" messages */
        bool all;                 /* pids listed by ulpd: each checked against the proofs */
        bool missing_mode;        /* --missing: missing names the patch */
        char missing[128];
        AuthProofs proofs;        /* kept to check each pid when it is looked at */
        struct json_object *carry;/* an entry that did not fit in the last part */
        size_t carry_len;
};

void status_stream_free(Connection *c) {
        StatusStream *st = c->stream;

        if (!st)
                return;
        auth_proofs_done(&st->proofs);
        json_object_put(st->carry);
        free(st->pids);
        free(st);
        c->stream = NULL;
        c->held_fds = 0;
}

static size_t json_length(struct json_object *o) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        return s ? strlen(s) : 0;
}

/* What is listed for a process whose status alone does not fit in a message (a block
 * may name 8192 functions): its pid and name, and why, in its "error". */
static void status_too_large(UlpProcessStatus *s, size_t len) {
        UlpProcessStatus e = { .pid = s->pid, .trusted = s->trusted };
        size_t funcs = 0;

        for (size_t i = 0; i < s->n_patches; i++)
                funcs += s->patches[i].n_funcs;
        memcpy(e.comm, s->comm, sizeof(e.comm));
        snprintf(e.problem, sizeof(e.problem), STATUS_TOO_LARGE " (%zu KiB, %zu functions in %zu patch%s; "
                 "a message holds %u KiB): ulpctl --direct status -p %d shows it", len / 1024, funcs,
                 s->n_patches, s->n_patches == 1 ? "" : "es", PROTOCOL_MESSAGE_MAX / 1024, (int) s->pid);
        ulp_status_done(s);
        *s = e;
}

/* The entry of "processes" for s, and its length in JSON. */
static struct json_object *status_entry(UlpProcessStatus *s, size_t *ret_len) {
        struct json_object *all, *a, *e = NULL;

        for (int pass = 0; pass < 2 && !e; pass++) {
                all = status_to_json(s, 1);
                if (all && json_object_object_get_ex(all, "processes", &a))
                        e = json_object_get(json_object_array_get_idx(a, 0));
                json_object_put(all);
                if (!e)
                        return NULL;
                *ret_len = json_length(e);
                if (*ret_len + STATUS_ENVELOPE_BYTES > PROTOCOL_MESSAGE_MAX) {
                        status_too_large(s, *ret_len);
                        json_object_put(e);
                        e = NULL;
                }
        }
        return e;
}

/* Looks at the next process. Returns 1 and its entry, 0 when it is not listed, or
 * -errno after the error was sent (status -p of a process whose block cannot be read,
 * or out of memory). */
static int status_next_entry(Connection *c, StatusStream *st, struct json_object **ret, size_t *ret_len) {
        pid_t pid = st->pids[st->next++];
        UlpProcessStatus s = {};
        UlpReport rep = {};
        char reason[512];
        bool listed;
        int r;

        /* others' processes stay invisible to an unprivileged client */
        if (st->all && auth_check(&c->cred, &st->proofs, pid, NULL, reason, sizeof(reason)) < 0)
                return 0;
        if (st->missing_mode)
                listed = status_missing(pid, st->missing, &s);
        else {
                r = ulp_status(pid, &s, &rep);
                /* A block that cannot be used is listed as such, with why. */
                listed = r >= 0 || (st->pid == 0 && s.problem[0]);
                if (!listed && st->pid > 0 && r != -ENOENT) {
                        reply_error(c, r, "%s", rep.message[0] ? rep.message : process_errno_clause(r));
                        ulp_report_done(&rep);
                        ulp_status_done(&s);
                        return r;
                }
                ulp_report_done(&rep);
        }
        *ret = listed ? status_entry(&s, ret_len) : NULL;
        ulp_status_done(&s);
        if (listed && !*ret) {
                reply_error(c, -ENOMEM, "out of memory");
                return -ENOMEM;
        }
        return listed;
}

/* The final message: the processes not sent in parts, and the totals. */
static struct json_object *status_final(Connection *c, StatusStream *st, struct json_object *procs) {
        struct json_object *o = protocol_new_message("status");

        if (!o) {
                json_object_put(procs);
                return NULL;
        }
        json_object_object_add(o, "processes", procs);
        json_object_object_add(o, "processes_total", json_object_new_uint64(st->listed));
        json_object_object_add(o, "daemon", daemon_counters(c->m));
        if (c->m->patch_dir)
                json_object_object_add(o, "patch_dir", patch_dir_to_json(c->m));
        if (st->missing_mode)
                json_object_object_add(o, "missing_patch", json_object_new_string(st->missing));
        return o;
}

/* Ends the stream after its last message was queued (or the connection dropped). */
static void status_stream_end(Connection *c) {
        status_stream_free(c);
        if (connection_closed(c))
                return;
        if (c->read_eof && c->out_len == 0)
                connection_close(c);
        else {
                idle_arm(c, true);
                (void) connection_update_events(c);
        }
}

/* Fills page with the next processes, up to a part's bounds (a client that takes
 * parts), or all of them within one message. Returns 1 when more follow, 0 when these
 * were the last, -errno after the error was sent. */
static int status_fill(Connection *c, StatusStream *st, struct json_object *page) {
        size_t budget = st->parts ? STATUS_PART_BYTES : PROTOCOL_MESSAGE_MAX - STATUS_ENVELOPE_BYTES;
        size_t bytes = 0, n = 0;

        for (;;) {
                struct json_object *e = NULL;
                size_t len = 0;
                int r;

                if (st->carry) {
                        e = TAKE_PTR(st->carry);
                        len = st->carry_len;
                } else if (st->next < st->n_pids) {
                        r = status_next_entry(c, st, &e, &len);
                        if (r <= 0) {
                                if (r < 0)
                                        return r;
                                continue;
                        }
                } else
                        return 0;
                if (n > 0 && (bytes + len + 1 > budget || (st->parts && n >= STATUS_PART_PROCESSES))) {
                        if (!st->parts) {
                                json_object_put(e);
                                reply_error(c, -EMSGSIZE, "the status of these processes is larger than one message "
                                            "(%u KiB); ulpctl of ulp %s or later receives it in parts",
                                            PROTOCOL_MESSAGE_MAX / 1024, ULP_VERSION);
                                return -EMSGSIZE;
                        }
                        st->carry = e;
                        st->carry_len = len;
                        return 1;
                }
                json_object_array_add(page, e);
                bytes += len + 1;
                n++;
                st->listed++;
        }
}

void status_stream_continue(Connection *c) {
        StatusStream *st = c->stream;
        struct json_object *page = json_object_new_array(), *o;
        int r;

        if (!page) {
                reply_error(c, -ENOMEM, "out of memory");
                status_stream_end(c);
                return;
        }
        r = status_fill(c, st, page);
        if (r < 0) {
                json_object_put(page);
                status_stream_end(c);
                return;
        }
        if (r > 0 || (st->parts && json_object_array_length(page) > 0)) {
                o = protocol_new_message("status_part");
                if (o)
                        json_object_object_add(o, "processes", page);
                else
                        json_object_put(page);
                if (!connection_reply(c, o) || r > 0) {
                        if (connection_closed(c))
                                status_stream_end(c);
                        return;
                }
                page = json_object_new_array();
        }
        (void) connection_reply(c, status_final(c, st, page));
        status_stream_end(c);
}

void method_status(Connection *c, struct json_object *q) {
        _cleanup_(auth_proofs_done) AuthProofs proofs = {};
        _cleanup_free_ pid_t *pids = NULL;
        _cleanup_close_ int patch_fd = -1;
        StatusStream *st;
        size_t n_pids = 0;
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
        st = calloc(1, sizeof(*st));
        if (!st) {
                reply_error(c, -ENOMEM, "out of memory");
                return;
        }
        *st = (StatusStream) {
                .pids = TAKE_PTR(pids),
                .n_pids = n_pids,
                .pid = patch_fd >= 0 ? 0 : (pid_t) pid,
                .parts = protocol_get_bool(q, "parts", false),
                .all = pid == 0 || patch_fd >= 0,
                .missing_mode = patch_fd >= 0,
                .proofs = proofs,
        };
        proofs = (AuthProofs) {};
        snprintf(st->missing, sizeof(st->missing), "%s", missing);
        c->stream = st;
        c->held_fds = (unsigned) (2 * st->proofs.n);
        status_stream_continue(c);
}

void method_ping(Connection *c, struct json_object *q) {
        struct json_object *o = protocol_new_message("pong");

        if (o)
                json_object_object_add(o, "daemon_version", json_object_new_string(ULP_VERSION));
        connection_reply(c, o);
}
