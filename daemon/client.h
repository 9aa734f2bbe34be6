/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * ulpctl's side of the ulpd protocol (protocol.h): connect, send one request, read
 * progress and the final reply. All calls block; none prints.
 *
 * Return values: 0 when ulpd answered the request (per-process outcomes are in the
 * results, each with its own error), or -errno when the request as a whole failed:
 * refused by ulpd (its one-line reason in errbuf), or a transport error
 * (-ECONNRESET, -EPROTO for a reply that makes no sense, -ETIMEDOUT when ulpd went
 * silent for CLIENT_IDLE_TIMEOUT_MS).
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "ulp/libulp.h"

#define CLIENT_IDLE_TIMEOUT_MS 120000  /* ulpd sends progress at least every few seconds */

/* The socket path to use: $ULP_SOCKET, else /run/ulp/ulpd.sock. */
const char *client_socket_path(void);

/* Connects to ulpd at path (NULL: client_socket_path()). Returns 0 and *ret_fd, or
 * -ENOENT / -ECONNREFUSED when no daemon listens there, -EACCES, or other -errno. */
int client_connect(const char *path, int *ret_fd);

/*
 * A proof of ptrace access to one process, made with the caller's own credentials: the
 * kernel's ptrace access check runs when the caller opens /proc/PID/mem for reading and
 * writing; a pidfd pins which process that was. Passed to ulpd with a request
 * (protocol.h "targets"), which binds the operation to the image the descriptor refers to.
 */
typedef struct ClientProof {
        pid_t pid;
        int mem_fd;
        int pidfd;
} ClientProof;

/* Opens the proof for pid. Returns 0, -EACCES/-EPERM when the kernel refused this
 * caller (errbuf: "not allowed to trace process N: <why>"), -ESRCH when there is no
 * such process, other -errno. */
int client_proof_open(pid_t pid, ClientProof *ret, char *errbuf, size_t errlen);
void client_proofs_free(ClientProof *v, size_t n);

/* The proofs for every process the caller may trace, other than itself, at most max
 * of them (*ret_more set when there were more). */
int client_proofs_all(size_t max, ClientProof **ret, size_t *ret_n, bool *ret_more);

/* The outcome for one process of an apply or revert. */
typedef struct ClientResult {
        pid_t pid;
        int error;               /* 0, or -errno: -ETIMEDOUT not finished in time and reversed,
                                  * -EPERM refused by ulpd's authorization, ... */
        UlpReport report;        /* message holds the one line on failure */
} ClientResult;

/* Frees n results (their reports, then the array). */
void client_results_free(ClientResult *r, size_t n);

typedef struct ClientRequest {
        const pid_t *pids;
        size_t n_pids;
        bool all;                /* every process the patch fits (apply), or carrying it (revert) */
        bool sticky;             /* with all: record a sticky patch, apply it to future processes / drop it */
        const char *name;        /* apply, check: the patch's file name (a hint);
                                  * revert: the patch name (or NULL when patch_fd is given) */
        UlpOptions options;
        bool wait;               /* false: reply as soon as the transitions started */
        const ClientProof *proofs; /* at most PROTOCOL_TARGETS_MAX */
        size_t n_proofs;
} ClientRequest;

/* Progress for a waiting client: pid has switched of total threads. */
/* Progress for a waiting client: pid has switched of total threads; worst (NULL when
 * none) is the thread that holds the transition up longest. */
typedef void (*ClientProgress)(pid_t pid, unsigned switched, unsigned total, const UlpStraggler *worst,
                               void *userdata);

/* Applies the patch open at patch_fd (sent to ulpd, not consumed) as req says. With
 * req->wait, blocks until every transition finished, calling progress (if not NULL)
 * as ulpd reports it. On 0, *ret and *ret_n hold one result per process ulpd worked
 * on (with wait=false: error 0 means "started"). */
int client_apply(int fd, const ClientRequest *req, int patch_fd,
                 ClientProgress progress, void *userdata,
                 ClientResult **ret, size_t *ret_n, char *errbuf, size_t errlen);

/* Reverts the patch req->name (or the one in patch_fd when >= 0). As client_apply(). */
int client_revert(int fd, const ClientRequest *req, int patch_fd,
                  ClientProgress progress, void *userdata,
                  ClientResult **ret, size_t *ret_n, char *errbuf, size_t errlen);

/* Dry run of the patch at patch_fd on pid. Returns 0 when ulpd answered: *ret_error is
 * then ulp_check()'s result (0, -EBUSY with stragglers, or another -errno) and *ret the
 * report (free with report_json_done()). Request-level failures as above, with the
 * reason in ret->message. */
int client_check(int fd, pid_t pid, int patch_fd, const char *name_hint, const ClientProof *proof,
                 UlpReport *ret, int *ret_error);

/* The processes carrying ulp patches (pid 0: all, else only that one). *ret is freed
 * with status_json_free() (report-json.h). */
int client_status(int fd, pid_t pid, const ClientProof *proofs, size_t n_proofs,
                  UlpProcessStatus **ret, size_t *ret_n, char *errbuf, size_t errlen);

/* A status request: pid (0 all), or with patch_fd >= 0 the processes that load an
 * object the patch targets by build-id and do not carry it as they should (--missing;
 * name: the file name, a hint for the patch's name). */
typedef struct ClientStatusQuery {
        pid_t pid;
        int patch_fd;
        const char *name;
} ClientStatusQuery;

/* As client_status(); *ret_extra (optional) gets the whole reply, for the fields beyond
 * the processes ("daemon", "missing_patch"): release with json_object_put(). */
struct json_object;
int client_status_ex(int fd, const ClientStatusQuery *q, const ClientProof *proofs, size_t n_proofs,
                     UlpProcessStatus **ret, size_t *ret_n, struct json_object **ret_extra,
                     char *errbuf, size_t errlen);

/* Round trip to check that ulpd answers. */
int client_ping(int fd);
