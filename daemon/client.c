/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpctl's transport to ulpd: one blocking request, its progress and its reply.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "common/errno-clause.h"
#include "common/macro.h"
#include "common/ptrace-denied.h"
#include "daemon/client.h"
#include "daemon/protocol.h"
#include "daemon/report-json.h"

const char *client_socket_path(void) {
        const char *p = getenv("ULP_SOCKET");

        return p && *p ? p : PROTOCOL_SOCKET_DEFAULT;
}

int client_connect(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;

        if (!path)
                path = client_socket_path();
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int client_proof_open(pid_t pid, ClientProof *ret, char *errbuf, size_t errlen) {
        char path[64];
        _cleanup_close_ int mem_fd = -1, pidfd = -1;

        /* The pidfd first: should pid be reused before the open below, the descriptors
         * disagree and ulpd refuses. */
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                int e = errno;
                if (errbuf)
                        snprintf(errbuf, errlen, e == ESRCH || e == EINVAL ? "no process with pid %d" :
                                 "cannot open process %d: %s", (int) pid, process_errno_clause(e));
                return e == EINVAL ? -ESRCH : -e;
        }
        snprintf(path, sizeof(path), "/proc/%d/mem", (int) pid);
        mem_fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (mem_fd < 0) {
                int e = errno;
                if (errbuf) {
                        if (e == EACCES || e == EPERM)
                                ptrace_denied_line(pid, errbuf, errlen);
                        else if (e == ENOENT || e == ESRCH)
                                snprintf(errbuf, errlen, "no process with pid %d", (int) pid);
                        else
                                snprintf(errbuf, errlen, "cannot open %s: %s", path, process_errno_clause(e));
                }
                return e == ENOENT ? -ESRCH : -e;
        }
        *ret = (ClientProof) { .pid = pid, .mem_fd = TAKE_FD(mem_fd), .pidfd = TAKE_FD(pidfd) };
        return 0;
}

void client_proofs_free(ClientProof *v, size_t n) {
        for (size_t i = 0; v && i < n; i++) {
                if (v[i].mem_fd >= 0)
                        close(v[i].mem_fd);
                if (v[i].pidfd >= 0)
                        close(v[i].pidfd);
        }
        free(v);
}

int client_proofs_all(size_t max, ClientProof **ret, size_t *ret_n, bool *ret_more) {
        ClientProof *v = calloc(max ?: 1, sizeof(ClientProof));
        struct dirent *de;
        size_t n = 0;
        DIR *d;

        *ret_more = false;
        if (!v)
                return -ENOMEM;
        d = opendir("/proc");
        if (!d) {
                free(v);
                return negative_errno();
        }
        while ((de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);

                if (*end || pid <= 0 || pid > INT32_MAX || pid == getpid())
                        continue;
                if (n == max) {
                        ClientProof p;
                        /* only a process we could have sent counts as one more */
                        if (client_proof_open((pid_t) pid, &p, NULL, 0) >= 0) {
                                close(p.mem_fd);
                                close(p.pidfd);
                                *ret_more = true;
                                break;
                        }
                        continue;
                }
                if (client_proof_open((pid_t) pid, &v[n], NULL, 0) >= 0)
                        n++;
        }
        closedir(d);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* The request's "targets" and the descriptors that go with it: the patch (if any),
 * then the mem descriptor and the pidfd of each proof. */
static int send_with_proofs(int fd, struct json_object *q, int patch_fd, const ClientProof *proofs, size_t n) {
        _cleanup_free_ int *fds = NULL;
        struct json_object *t;
        size_t k = 0;

        if (n > PROTOCOL_TARGETS_MAX)
                return -E2BIG;
        fds = calloc(1 + 2 * n, sizeof(int));
        if (!fds)
                return -ENOMEM;
        if (patch_fd >= 0)
                fds[k++] = patch_fd;
        if (n > 0) {
                t = json_object_new_array();
                if (!t)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        json_object_array_add(t, json_object_new_int(proofs[i].pid));
                        fds[k++] = proofs[i].mem_fd;
                        fds[k++] = proofs[i].pidfd;
                }
                json_object_object_add(q, "targets", t);
        }
        return protocol_send_fds(fd, q, fds, k);
}

void client_results_free(ClientResult *r, size_t n) {
        for (size_t i = 0; r && i < n; i++)
                report_json_done(&r[i].report);
        free(r);
}

/* Reads the next message of the reply, waiting at most CLIENT_IDLE_TIMEOUT_MS for each
 * chunk of bytes. */
static int client_recv(int fd, MsgReader *rd, struct json_object **ret) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int r;

                r = msgreader_next(rd, ret);
                if (r != 0)
                        return r < 0 ? -EPROTO : 0;
                if (rd->eof)
                        return -ECONNRESET;
                r = poll(&p, 1, CLIENT_IDLE_TIMEOUT_MS);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (r == 0)
                        return -ETIMEDOUT;
                r = msgreader_fill(rd, fd);
                if (r < 0 && r != -EAGAIN && r != -EINTR)
                        return r == -EMSGSIZE ? -EPROTO : r;
        }
}

static const char *message_type(struct json_object *m) {
        return protocol_get_string(m, "type") ?: "";
}

/* The next message of the reply and its type; when there is none, why in errbuf. */
static int recv_reply(int fd, MsgReader *rd, struct json_object **ret, const char **ret_type,
                      char *errbuf, size_t errlen) {
        int r = client_recv(fd, rd, ret);

        if (r == -EPROTO)
                return fail(errbuf, errlen, r, "no complete reply from ulpd: a message was malformed or "
                            "larger than %u KiB", PROTOCOL_MESSAGE_MAX / 1024);
        if (r == -ECONNRESET)
                return fail(errbuf, errlen, r, "no complete reply from ulpd: it closed the connection");
        if (r == -ETIMEDOUT)
                return fail(errbuf, errlen, r, "no complete reply from ulpd: it sent nothing for %d s",
                            CLIENT_IDLE_TIMEOUT_MS / 1000);
        if (r < 0)
                return fail(errbuf, errlen, r, "no complete reply from ulpd: %s", errno_clause(r));
        *ret_type = message_type(*ret);
        return 0;
}

/* An "error" reply: its errno as -errno and its line in errbuf. */
static int error_reply(struct json_object *m, char *errbuf, size_t errlen) {
        int64_t e = EIO;

        (void) protocol_get_int(m, "errno", 1, 4095, &e);
        fail(errbuf, errlen, 0, "%s", protocol_get_string(m, "error") ?: process_errno_clause((int) e));
        return -(int) e;
}

/* A reply other than the one waited for, consumed: "error" ends the call with its
 * message (negative), "progress" is passed over (1), anything else is -EPROTO. */
static int other_reply(struct json_object *m, const char *t, char *errbuf, size_t errlen) {
        int r = 1;

        if (protocol_streq(t, "error"))
                r = error_reply(m, errbuf, errlen);
        else if (!protocol_streq(t, "progress")) {
                fail(errbuf, errlen, 0, "unexpected reply from ulpd: %s", t);
                r = -EPROTO;
        }
        json_object_put(m);
        return r;
}

/* The request could not be sent. ulpd answers a connection it cannot take (too many of
 * that user's) with one error line and closes it, maybe before the request was written:
 * that line, not the broken pipe, is the answer. */
static int send_failed(int fd, int error, char *errbuf, size_t errlen) {
        struct json_object *m = NULL;
        MsgReader rd;
        int r = error;

        msgreader_init(&rd);
        if ((error == -EPIPE || error == -ECONNRESET) && client_recv(fd, &rd, &m) >= 0 &&
            protocol_streq(message_type(m), "error"))
                r = error_reply(m, errbuf, errlen);
        else
                fail(errbuf, errlen, 0, "cannot send the request to ulpd: %s",
                     error == -EPIPE || error == -ECONNRESET ? "it closed the connection" : errno_clause(error));
        json_object_put(m);
        msgreader_done(&rd);
        return r;
}

static struct json_object *options_to_json(const UlpOptions *o) {
        struct json_object *j = json_object_new_object();

        if (!j)
                return NULL;
        json_object_object_add(j, "timeout_ms", json_object_new_int64(o->timeout_ms));
        json_object_object_add(j, "force", json_object_new_boolean(o->force));
        json_object_object_add(j, "global", json_object_new_boolean(o->global));
        json_object_object_add(j, "return_trap", json_object_new_boolean(o->return_trap));
        return j;
}

static int results_from_json(struct json_object *m, ClientResult **ret, size_t *ret_n) {
        struct json_object *a;
        ClientResult *v;
        size_t n;

        if (!json_object_object_get_ex(m, "results", &a) || !json_object_is_type(a, json_type_array))
                return -EPROTO;
        n = json_object_array_length(a);
        v = calloc(n ?: 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(a, i);
                int64_t pid = 0;
                int r;

                (void) protocol_get_int(e, "pid", 0, INT32_MAX, &pid);
                v[i].pid = (pid_t) pid;
                r = report_from_json(e, &v[i].report, &v[i].error);
                if (r < 0) {
                        client_results_free(v, i);
                        return r == -ENOMEM ? r : -EPROTO;
                }
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* Takes the results of a "result_part" into all. */
static int results_take_part(struct json_object *m, struct json_object *all) {
        struct json_object *a;

        if (!json_object_object_get_ex(m, "results", &a) || !json_object_is_type(a, json_type_array))
                return -EPROTO;
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (json_object_array_add(all, json_object_get(json_object_array_get_idx(a, i))) < 0)
                        return -ENOMEM;
        return 0;
}

/* The final "result": the parts that came before it, then its own, in its "results";
 * its "results_total" (when there) must count them all. */
static int results_assemble(struct json_object *m, struct json_object *parts, char *errbuf, size_t errlen) {
        int64_t total;
        int r;

        if (json_object_array_length(parts) > 0) {
                r = results_take_part(m, parts);
                if (r < 0)
                        return fail(errbuf, errlen, r, "%s", "malformed result from ulpd");
                json_object_object_add(m, "results", json_object_get(parts));
        }
        if (protocol_get_int(m, "results_total", 0, INT64_MAX, &total) >= 0 &&
            (uint64_t) total != json_object_array_length(json_object_object_get(m, "results")))
                return fail(errbuf, errlen, -EPROTO, "ulpd sent %zu of %" PRIi64 " results",
                            json_object_array_length(json_object_object_get(m, "results")), total);
        return 0;
}

static int client_transition(int fd, const char *method, const ClientRequest *req, int patch_fd,
                             ClientProgress progress, void *userdata,
                             ClientResult **ret, size_t *ret_n, char *errbuf, size_t errlen) {
        struct json_object *q = json_object_new_object(), *pids, *parts;
        MsgReader rd;
        int r;

        if (!q)
                return -ENOMEM;
        json_object_object_add(q, "method", json_object_new_string(method));
        pids = json_object_new_array();
        for (size_t i = 0; pids && i < req->n_pids; i++)
                json_object_array_add(pids, json_object_new_int(req->pids[i]));
        json_object_object_add(q, "pids", pids);
        json_object_object_add(q, "all", json_object_new_boolean(req->all));
        json_object_object_add(q, "persist", json_object_new_boolean(req->sticky)); /* its name on the wire */
        if (req->name)
                json_object_object_add(q, "name", json_object_new_string(req->name));
        json_object_object_add(q, "wait", json_object_new_boolean(req->wait));
        json_object_object_add(q, "options", options_to_json(&req->options));
        /* results of any number of processes, in messages of bounded size (protocol.h) */
        json_object_object_add(q, "parts", json_object_new_boolean(true));

        r = send_with_proofs(fd, q, patch_fd, req->proofs, req->n_proofs);
        json_object_put(q);
        if (r < 0)
                return send_failed(fd, r, errbuf, errlen);

        parts = json_object_new_array();
        if (!parts)
                return -ENOMEM;
        msgreader_init(&rd);
        for (;;) {
                struct json_object *m = NULL;
                const char *t;

                r = recv_reply(fd, &rd, &m, &t, errbuf, errlen);
                if (r < 0)
                        break;
                if (protocol_streq(t, "progress")) {
                        int64_t pid = 0, sw = 0, tot = 0, tid = 0;
                        struct json_object *w = NULL;
                        UlpStraggler worst = {};
                        bool have = false;

                        (void) protocol_get_int(m, "pid", 0, INT32_MAX, &pid);
                        (void) protocol_get_int(m, "switched", 0, UINT32_MAX, &sw);
                        (void) protocol_get_int(m, "total", 0, UINT32_MAX, &tot);
                        if (json_object_object_get_ex(m, "straggler", &w) && json_object_is_type(w, json_type_object) &&
                            protocol_get_int(w, "tid", 1, INT32_MAX, &tid) >= 0) {
                                worst.tid = (pid_t) tid;
                                snprintf(worst.comm, sizeof(worst.comm), "%s", protocol_get_string(w, "name") ?: "");
                                snprintf(worst.function, sizeof(worst.function), "%s",
                                         protocol_get_string(w, "function") ?: "");
                                have = true;
                        }
                        if (progress)
                                progress((pid_t) pid, (unsigned) sw, (unsigned) tot, have ? &worst : NULL, userdata);
                } else if (protocol_streq(t, "started")) {
                        /* informational: the result follows */
                } else if (protocol_streq(t, "result_part")) {
                        r = results_take_part(m, parts);
                        if (r < 0) {
                                fail(errbuf, errlen, 0, "%s", "malformed result from ulpd");
                                json_object_put(m);
                                break;
                        }
                } else if (protocol_streq(t, "result")) {
                        r = results_assemble(m, parts, errbuf, errlen);
                        if (r >= 0) {
                                r = results_from_json(m, ret, ret_n);
                                if (r < 0)
                                        fail(errbuf, errlen, 0, "%s", "malformed result from ulpd");
                        }
                        json_object_put(m);
                        break;
                } else if (protocol_streq(t, "error")) {
                        r = error_reply(m, errbuf, errlen);
                        json_object_put(m);
                        break;
                } else {
                        fail(errbuf, errlen, 0, "unexpected reply from ulpd: %s", t);
                        json_object_put(m);
                        r = -EPROTO;
                        break;
                }
                json_object_put(m);
        }
        json_object_put(parts);
        msgreader_done(&rd);
        return r;
}

int client_apply(int fd, const ClientRequest *req, int patch_fd,
                 ClientProgress progress, void *userdata,
                 ClientResult **ret, size_t *ret_n, char *errbuf, size_t errlen) {
        if (patch_fd < 0)
                return -EBADF;
        return client_transition(fd, "apply", req, patch_fd, progress, userdata, ret, ret_n, errbuf, errlen);
}

int client_revert(int fd, const ClientRequest *req, int patch_fd,
                  ClientProgress progress, void *userdata,
                  ClientResult **ret, size_t *ret_n, char *errbuf, size_t errlen) {
        if (patch_fd < 0 && !req->name)
                return -EINVAL;
        return client_transition(fd, "revert", req, patch_fd, progress, userdata, ret, ret_n, errbuf, errlen);
}

/* Sends q and reads its single final reply of type want (or "error"). */
static int client_call(int fd, struct json_object *q, int pass_fd, const ClientProof *proofs, size_t n_proofs,
                       const char *want, struct json_object **ret, char *errbuf, size_t errlen) {
        MsgReader rd;
        int r;

        r = send_with_proofs(fd, q, pass_fd, proofs, n_proofs);
        if (r < 0)
                return send_failed(fd, r, errbuf, errlen);
        msgreader_init(&rd);
        for (;;) {
                struct json_object *m = NULL;
                const char *t;

                r = recv_reply(fd, &rd, &m, &t, errbuf, errlen);
                if (r < 0)
                        break;
                if (protocol_streq(t, want)) {
                        *ret = m;
                        r = 0;
                        break;
                }
                r = other_reply(m, t, errbuf, errlen);
                if (r <= 0)
                        break;
        }
        msgreader_done(&rd);
        return r;
}

int client_check(int fd, pid_t pid, int patch_fd, const char *name_hint, const ClientProof *proof,
                 UlpReport *ret, int *ret_error) {
        struct json_object *q = json_object_new_object(), *m = NULL, *rep;
        int r;

        *ret = (UlpReport) {};
        if (!q)
                return -ENOMEM;
        json_object_object_add(q, "method", json_object_new_string("check"));
        json_object_object_add(q, "pid", json_object_new_int(pid));
        if (name_hint)
                json_object_object_add(q, "name", json_object_new_string(name_hint));
        r = client_call(fd, q, patch_fd, proof, proof ? 1 : 0, "result", &m, ret->message, sizeof(ret->message));
        json_object_put(q);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(m, "report", &rep))
                r = -EPROTO;
        else
                r = report_from_json(rep, ret, ret_error);
        json_object_put(m);
        if (r < 0)
                snprintf(ret->message, sizeof(ret->message), "malformed check result from ulpd");
        return r < 0 ? -EPROTO : 0;
}

int client_status(int fd, pid_t pid, const ClientProof *proofs, size_t n_proofs,
                  UlpProcessStatus **ret, size_t *ret_n, char *errbuf, size_t errlen) {
        return client_status_ex(fd, &(ClientStatusQuery) { .pid = pid, .patch_fd = -1 }, proofs, n_proofs,
                                ret, ret_n, NULL, errbuf, errlen);
}

/* Takes the processes of a "status_part" (or of the final "status") into all. */
static int status_take_part(struct json_object *m, struct json_object *all) {
        struct json_object *a;

        if (!json_object_object_get_ex(m, "processes", &a) || !json_object_is_type(a, json_type_array))
                return -EPROTO;
        for (size_t i = 0; i < json_object_array_length(a); i++)
                if (json_object_array_add(all, json_object_get(json_object_array_get_idx(a, i))) < 0)
                        return -ENOMEM;
        return 0;
}

/* Reads a status reply: the "status_part" messages, if any, then the final "status",
 * whose "processes" become all that came (the one document a single message was). */
static int status_recv(int fd, struct json_object **ret, char *errbuf, size_t errlen) {
        struct json_object *all = json_object_new_array();
        MsgReader rd;
        int r;

        if (!all)
                return -ENOMEM;
        msgreader_init(&rd);
        for (;;) {
                struct json_object *m = NULL;
                const char *t;
                int64_t total;

                r = recv_reply(fd, &rd, &m, &t, errbuf, errlen);
                if (r < 0)
                        break;
                if (protocol_streq(t, "status_part") || protocol_streq(t, "status")) {
                        r = status_take_part(m, all);
                        if (r < 0) {
                                fail(errbuf, errlen, 0, "%s", "malformed status from ulpd");
                                json_object_put(m);
                                break;
                        }
                        if (protocol_streq(t, "status_part")) {
                                json_object_put(m);
                                continue;
                        }
                        /* a part lost or added on the way is a reply that makes no sense */
                        if (protocol_get_int(m, "processes_total", 0, INT64_MAX, &total) >= 0 &&
                            (uint64_t) total != json_object_array_length(all)) {
                                r = fail(errbuf, errlen, -EPROTO, "ulpd's status listed %" PRIi64 " processes, "
                                         "%zu arrived", total, json_object_array_length(all));
                                json_object_put(m);
                                break;
                        }
                        json_object_object_add(m, "processes", TAKE_PTR(all));
                        *ret = m;
                        r = 0;
                        break;
                }
                r = other_reply(m, t, errbuf, errlen);
                if (r <= 0)
                        break;
        }
        json_object_put(all);
        msgreader_done(&rd);
        return r;
}

int client_status_ex(int fd, const ClientStatusQuery *sq, const ClientProof *proofs, size_t n_proofs,
                     UlpProcessStatus **ret, size_t *ret_n, struct json_object **ret_extra,
                     char *errbuf, size_t errlen) {
        struct json_object *q = json_object_new_object(), *m = NULL;
        int r;

        if (!q)
                return -ENOMEM;
        json_object_object_add(q, "method", json_object_new_string("status"));
        json_object_object_add(q, "pid", json_object_new_int(sq->pid));
        if (sq->name)
                json_object_object_add(q, "name", json_object_new_string(sq->name));
        /* any number of processes, in messages of bounded size (protocol.h) */
        json_object_object_add(q, "parts", json_object_new_boolean(true));
        r = send_with_proofs(fd, q, sq->patch_fd, proofs, n_proofs);
        json_object_put(q);
        if (r < 0)
                return send_failed(fd, r, errbuf, errlen);
        r = status_recv(fd, &m, errbuf, errlen);
        if (r < 0)
                return r;
        r = status_from_json(m, ret, ret_n);
        if (r >= 0 && ret_extra)
                *ret_extra = json_object_get(m);
        json_object_put(m);
        if (r < 0) {
                fail(errbuf, errlen, 0, "%s", "malformed status from ulpd");
                return -EPROTO;
        }
        return 0;
}

int client_ping(int fd) {
        struct json_object *q = json_object_new_object(), *m = NULL;
        int r;

        if (!q)
                return -ENOMEM;
        json_object_object_add(q, "method", json_object_new_string("ping"));
        r = client_call(fd, q, -1, NULL, 0, "pong", &m, NULL, 0);
        json_object_put(q);
        json_object_put(m);
        return r;
}
