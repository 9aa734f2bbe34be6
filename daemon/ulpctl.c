/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpctl: the operator's tool. Talks to ulpd by default; --direct does the work in
 * this process with libulp (for CI and machines without the daemon), loaded then from
 * ulpctl-direct.so (ulpctl.h).
 *
 * Exit status: 0 done; 1 failed, target unchanged; 2 usage; 3 the transition did
 * not finish in time and was reversed.
 */

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "common/macro.h"
#include "daemon/client.h"
#include "daemon/protocol.h"
#include "daemon/report-json.h"
#include "daemon/ulpctl.h"

/* The work done in this process: ulpctl-direct.so, loaded now and only now (ulpctl.h).
 * Found through the executable's run path: no directory a caller could choose. */
static int run_direct(const Args *a, const char *verb) {
        void *h = dlopen(ULPCTL_DIRECT_MODULE, RTLD_LAZY | RTLD_LOCAL);
        UlpctlDirectMain f;

        if (!h) {
                fprintf(stderr, "ulpctl: %s needs %s: %s\n", a->direct ? "--direct" : verb, ULPCTL_DIRECT_MODULE,
                        dlerror());
                return 1;
        }
        f = (UlpctlDirectMain) dlsym(h, ULPCTL_DIRECT_ENTRY);
        if (!f) {
                fprintf(stderr, "ulpctl: %s: %s\n", ULPCTL_DIRECT_MODULE, dlerror());
                return 1;
        }
        /* not closed: what it printed through stdio is flushed at exit */
        return f(ULPCTL_DIRECT_ABI, a, verb);
}

/* Why ulpd could not be reached, as a sentence about its socket. */
static void connect_failed(int r) {
        const char *why = r == -ENOENT ? "there is no socket there" :
                          r == -ECONNREFUSED ? "nothing listens on the socket there" :
                          r == -EACCES || r == -EPERM ? "this user may not connect to it" : strerror(-r);
        fprintf(stderr, "ulpctl: no ulpd answers on %s (%s); start ulpd, or use --direct\n", client_socket_path(), why);
}

/* The proofs of access sent with a request through ulpd (client.h): ulpd lets the
 * kernel's decision at our open() stand for ours. For the pids given, each one's; a pid
 * the kernel refuses us is reported here and dropped from the request (root's are left
 * to ulpd's own authority). For --all by another user than root, every process we may
 * trace is a candidate, and no other. Returns 0 (the pids kept in kept, *ret_kept), or
 * -errno; *worst gets the error of a dropped pid. */
static int gather_proofs(const Args *a, ClientProof **ret, size_t *ret_n, pid_t *kept, size_t *ret_kept,
                         int *worst, json_object *json_results) {
        bool root = geteuid() == 0;
        size_t n = 0, k = 0;
        ClientProof *v;

        *ret = NULL;
        *ret_n = *ret_kept = 0;
        if (a->all) {
                bool more = false;
                int r;

                if (root)
                        return 0;
                r = client_proofs_all(PROTOCOL_TARGETS_MAX, ret, ret_n, &more);
                if (r < 0) {
                        fprintf(stderr, "ulpctl: cannot list the processes in /proc (%s)\n", strerror(-r));
                        return r;
                }
                if (more)
                        fprintf(stderr, "warning: you may trace more than %d processes; only %zu are considered\n",
                                PROTOCOL_TARGETS_MAX, *ret_n);
                return 0;
        }
        if (!root && a->n_pids > PROTOCOL_TARGETS_MAX) {
                /* each pid goes with its proof, and a request carries so many descriptors */
                fprintf(stderr, "ulpctl: too many -p: at most %d processes in one command through ulpd "
                        "for a user other than root\n", PROTOCOL_TARGETS_MAX);
                return -E2BIG;
        }
        v = calloc(MIN(a->n_pids, (size_t) PROTOCOL_TARGETS_MAX) ?: 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < a->n_pids; i++) {
                char err[256] = "";
                int r;

                /* root's proofs beyond what a request carries are left to ulpd's authority */
                if (root && n == PROTOCOL_TARGETS_MAX) {
                        kept[k++] = a->pids[i];
                        continue;
                }
                r = client_proof_open(a->pids[i], &v[n], err, sizeof(err));

                if (r >= 0) {
                        n++;
                        kept[k++] = a->pids[i];
                } else if (root)
                        kept[k++] = a->pids[i];
                else {
                        if (r == -EACCES)
                                r = -EPERM;
                        if (json_results) {
                                UlpReport rep = {};
                                json_object *j;
                                snprintf(rep.message, sizeof(rep.message), "%s", err);
                                j = report_to_json(&rep, r);
                                json_object_object_add(j, "pid", json_object_new_int(a->pids[i]));
                                json_object_array_add(json_results, j);
                        } else
                                fprintf(stderr, "ulpctl: %s\n", err);
                        if (*worst == 0)
                                *worst = r;
                }
        }
        *ret = v;
        *ret_n = n;
        *ret_kept = k;
        return 0;
}

/* --all found no process: a revert of a name nobody carries is most likely a typo, and
 * says so (exit 1); a sticky one still dropped the wish, and an apply finds none now
 * that later ones may fit. */
static int none_for_all(const Args *a, bool apply, const char *name) {
        if (apply || a->sticky) {
                if (!a->json)   /* stdout holds the JSON document alone */
                        printf("no running process %s %s\n", apply ? "fits" : "carries", name);
                return 0;
        }
        fprintf(stderr, "ulpctl: no process carries %s\n", name);
        return 1;
}

/* Through ulpd: same output, the daemon does the work. */
static int daemon_apply_or_revert(const Args *a, bool apply) {
        _cleanup_close_ int fd = -1, patch_fd = -1;
        ClientRequest req = { .pids = a->pids, .n_pids = a->n_pids, .all = a->all, .sticky = a->sticky,
                              .name = apply ? base_name(a->target) : a->target,
                              .options = options_of(a), .wait = !a->no_wait };
        ClientResult *res = NULL;
        ClientProof *proofs = NULL;
        pid_t kept[ELEMENTSOF(a->pids)];
        size_t n = 0, n_kept = 0;
        char err[256] = "";
        int r, worst = 0;
        json_object *results = a->json ? json_object_new_array() : NULL;

        r = gather_proofs(a, &proofs, &req.n_proofs, kept, &n_kept, &worst, results);
        if (r < 0)
                return 1;
        req.proofs = proofs;
        req.pids = kept;
        req.n_pids = n_kept;
        if (!a->all && n_kept == 0) {
                client_proofs_free(proofs, req.n_proofs);
                n = 0;
                goto print;
        }
        r = client_connect(client_socket_path(), &fd);
        if (r < 0) {
                connect_failed(r);
                return 1;
        }
        if (apply || looks_like_file(a->target)) {
                if (open_patch(a->target, &patch_fd) < 0)
                        return 1;
                if (!apply)
                        req.name = NULL;
        }
        r = apply ? client_apply(fd, &req, patch_fd, progress, NULL, &res, &n, err, sizeof(err))
                  : client_revert(fd, &req, patch_fd, progress, NULL, &res, &n, err, sizeof(err));
        progress_done();
        client_proofs_free(proofs, req.n_proofs);
        if (r < 0) {
                fprintf(stderr, "ulpctl: %s\n", err[0] ? err : strerror(-r));
                json_object_put(results);
                return r == -ETIMEDOUT ? EXIT_TIMEDOUT : 1;
        }
print:
        for (size_t i = 0; i < n; i++) {
                if (results) {
                        json_object *j = report_to_json(&res[i].report, res[i].error);
                        json_object_object_add(j, "pid", json_object_new_int(res[i].pid));
                        json_object_array_add(results, j);
                } else if (a->no_wait && res[i].error == 0)
                        printf("started %s on process %d\n", apply ? "applying" : "reverting", res[i].pid);
                else
                        print_report(res[i].pid, apply ? "applied" : "reverted", &res[i].report, res[i].error);
                if (res[i].error < 0 && (worst == 0 || res[i].error == -ETIMEDOUT))
                        worst = res[i].error;
        }
        print_json_results(results);
        client_results_free(res, n);
        if (a->all && n == 0)
                return none_for_all(a, apply, req.name ?: a->target);
        return exit_code_for(worst);
}

/* The processes an unprivileged caller proves access to with status: for -p, that one;
 * for --missing, every process; else those that carry ulp state. root proves none:
 * ulpd's own authority. */
static int status_candidates(const Args *a, pid_t **ret, size_t *ret_n) {
        struct dirent *de;
        size_t n = 0, size = 0;
        pid_t *v = NULL;
        DIR *d;

        *ret = NULL;
        *ret_n = 0;
        if (geteuid() == 0)
                return 0;
        if (a->n_pids) {
                *ret = malloc(sizeof(pid_t));
                if (!*ret)
                        return -ENOMEM;
                (*ret)[0] = a->pids[0];
                *ret_n = 1;
                return 0;
        }
        if (!a->n_missing) {
                (void) ulp_list_processes(ret, ret_n);   /* none listed: none proven, none shown */
                return 0;
        }
        d = opendir("/proc");
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);

                if (*end || pid <= 0 || pid > INT32_MAX || pid == getpid())
                        continue;
                if (n == size) {
                        pid_t *b = reallocarray(v, size = MAX(size * 2, (size_t) 256), sizeof(pid_t));
                        if (!b) {
                                free(v);
                                closedir(d);
                                return -ENOMEM;
                        }
                        v = b;
                }
                v[n++] = (pid_t) pid;
        }
        closedir(d);
        *ret = v;
        *ret_n = n;
        return 0;
}

/* The proofs of the next candidates from *next on, as many as one request carries:
 * those the kernel refuses are left out (not this caller's), except for -p, whose
 * refusal ends the command. */
static int status_batch_proofs(const Args *a, const pid_t *cand, size_t n_cand, size_t *next,
                               ClientProof **ret, size_t *ret_n) {
        ClientProof *v = calloc(MIN(n_cand - *next, (size_t) PROTOCOL_TARGETS_MAX) ?: 1, sizeof(*v));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        for (; *next < n_cand && n < PROTOCOL_TARGETS_MAX; (*next)++) {
                char err[256] = "";

                if (client_proof_open(cand[*next], &v[n], err, sizeof(err)) >= 0)
                        n++;
                else if (a->n_pids) {
                        fprintf(stderr, "ulpctl: %s\n", err);
                        free(v);
                        return -EPERM;
                }
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* A status request for a user other than root proves access to each process it is
 * about, and a request carries PROTOCOL_TARGETS_MAX proofs: more candidates than that
 * are asked about in several requests on fd, whose processes are put together (each
 * request lists only the processes it proved access to; the last reply's other fields
 * are kept). Returns 0, or -errno with the reason in err (empty when a line said it). */
static int status_query(const Args *a, int fd, const ClientStatusQuery *sq, const pid_t *cand, size_t n_cand,
                        UlpProcessStatus **ret, size_t *ret_n, json_object **ret_reply, char *err, size_t errlen) {
        UlpProcessStatus *all = NULL;
        json_object *reply = NULL;
        size_t n_all = 0, next = 0;
        int r;

        do {
                ClientProof *proofs = NULL;
                UlpProcessStatus *s = NULL, *b;
                size_t n_proofs = 0, n = 0;

                r = status_batch_proofs(a, cand, n_cand, &next, &proofs, &n_proofs);
                if (r < 0) {
                        fail(err, errlen, r, "%s", r == -EPERM ? "" : strerror(-r));
                        break;
                }
                json_object_put(reply);
                reply = NULL;
                r = client_status_ex(fd, sq, proofs, n_proofs, &s, &n, &reply, err, errlen);
                client_proofs_free(proofs, n_proofs);
                if (r < 0)
                        break;
                b = reallocarray(all, n_all + n ?: 1, sizeof(*all));
                if (!b) {
                        status_json_free(s, n);
                        r = fail(err, errlen, -ENOMEM, "out of memory");
                        break;
                }
                all = b;
                memcpy(all + n_all, s, n * sizeof(*s));
                n_all += n;
                free(s);   /* its elements moved to all */
        } while (next < n_cand);
        if (r < 0) {
                status_json_free(all, n_all);
                json_object_put(reply);
                return r;
        }
        *ret = all ?: calloc(1, sizeof(*all));
        *ret_n = n_all;
        *ret_reply = reply;
        return 0;
}

static uint64_t extra_u64(json_object *o, const char *k) {
        json_object *v;
        return json_object_object_get_ex(o, k, &v) ? json_object_get_uint64(v) : 0;
}

/* What a missing process lacks, in a few words. */
static const char *missing_why(const UlpProcessStatus *s, const char *name) {
        if (s->problem[0])
                return "its ulp control block is refused";
        for (size_t j = 0; j < s->n_patches; j++) {
                const UlpPatchStatus *p = &s->patches[j];
                if (strcmp(p->name, name) != 0)
                        continue;
                if (p->state == ULP_PATCH_TRANSITION)
                        return "in transition";
                if (p->state == ULP_PATCH_PATCHED)
                        return "applied, forced";
                return "reverted";
        }
        return "not applied";
}

/* status --missing for each patch named: the processes lacking it, or only their count
 * for --prometheus (into x). Returns 1 when any is listed, -1 when a patch could not be
 * looked at (said why; the others still are), else 0. */
static int status_missing(const Args *a, int fd, const pid_t *cand, size_t n_cand, StatusExtra *x) {
        json_object *results = a->json && !a->prometheus ? json_object_new_array() : NULL;
        bool failed = false;
        int ret = 0;

        for (size_t i = 0; i < a->n_missing; i++) {
                _cleanup_close_ int patch_fd = -1;
                UlpProcessStatus *s = NULL;
                json_object *reply = NULL, *v;
                size_t n = 0;
                char err[256] = "";
                const char *name;
                int r;

                if (open_patch(a->missing[i], &patch_fd) < 0) {
                        failed = true;
                        continue;
                }
                r = status_query(a, fd, &(ClientStatusQuery) { .patch_fd = patch_fd, .name = base_name(a->missing[i]) },
                                 cand, n_cand, &s, &n, &reply, err, sizeof(err));
                if (r < 0) {
                        fprintf(stderr, "ulpctl: %s: %s\n", a->missing[i], err[0] ? err : "ulpd gave no answer");
                        failed = true;
                        continue;
                }
                name = json_object_object_get_ex(reply, "missing_patch", &v) ? json_object_get_string(v) : "";
                if (x) {
                        x->missing_patch[x->n_missing] = strdup(name);
                        x->missing[x->n_missing++] = n;
                } else if (results) {
                        json_object *o = status_to_json(s, n);
                        if (o)
                                json_object_object_add(o, "patch", json_object_new_string(name));
                        json_object_array_add(results, o);
                } else {
                        if (n == 0)
                                printf("every process that loads what %s patches carries it\n", name);
                        for (size_t k = 0; k < n; k++)
                                printf("process %d (%s): %s %s\n", s[k].pid, s[k].comm, name, missing_why(&s[k], name));
                }
                if (n)
                        ret = 1;
                status_json_free(s, n);
                json_object_put(reply);
        }
        print_json_results(results);
        return failed ? -1 : ret;
}

static int verb_status(const Args *a) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ pid_t *cand = NULL;
        UlpProcessStatus *s = NULL;
        json_object *reply = NULL, *d;
        StatusExtra x = {};
        size_t n = 0, n_cand = 0;
        char err[256] = "";
        int r, ret = 0;

        if (a->direct && a->n_missing) {
                fprintf(stderr, "ulpctl: --missing needs ulpd (it matches build-ids in every process)\n");
                return 1;
        }
        if (a->direct)
                return run_direct(a, "status");
        r = client_connect(client_socket_path(), &fd);
        if (r < 0) {
                connect_failed(r);
                return 1;
        }
        if (status_candidates(a, &cand, &n_cand) < 0) {
                fprintf(stderr, "ulpctl: cannot list the processes in /proc\n");
                return 1;
        }
        if (a->n_missing && !a->prometheus)
                return status_missing(a, fd, cand, n_cand, NULL) != 0;
        /* --prometheus: the counts are the metrics; only a failure is one for the exit status */
        if (a->n_missing)
                ret = status_missing(a, fd, cand, n_cand, &x) < 0;
        r = status_query(a, fd, &(ClientStatusQuery) { .pid = a->n_pids ? a->pids[0] : 0, .patch_fd = -1 },
                         cand, n_cand, &s, &n, &reply, err, sizeof(err));
        if (r < 0) {
                if (r != -EPERM || err[0])
                        fprintf(stderr, "ulpctl: %s\n", err[0] ? err : strerror(-r));
                return 1;
        }
        if (json_object_object_get_ex(reply, "daemon", &d) && json_object_is_type(d, json_type_object)) {
                x.have_daemon = true;
                x.transitions_total = extra_u64(d, "transitions_total");
                x.transitions_failed = extra_u64(d, "transitions_failed");
                x.invariant_failures = extra_u64(d, "invariant_failures");
        }
        if (json_object_object_get_ex(reply, "patch_dir", &d) && json_object_is_type(d, json_type_object))
                x.patch_dir = d;
        print_status(a, s, n, &x);
        json_object_put(reply);
        status_json_free(s, n);
        for (size_t i = 0; i < x.n_missing; i++)
                free((char *) x.missing_patch[i]);
        return ret;
}

/* check of one process through ulpd: 0 when ulpd answered (the check's own outcome in
 * *error and rep), else -errno after saying why. */
static int daemon_check_one(const Args *a, pid_t pid, int patch_fd, UlpReport *rep, int *error) {
        _cleanup_close_ int fd = -1;
        ClientProof proof;
        char err[256] = "";
        bool have;
        int r;

        r = client_connect(client_socket_path(), &fd);
        if (r < 0) {
                connect_failed(r);
                return r;
        }
        r = client_proof_open(pid, &proof, err, sizeof(err));
        if (r < 0 && geteuid() != 0) {
                /* the caller's own refusal: reported as ulpd reports its own */
                snprintf(rep->message, sizeof(rep->message), "%s", err);
                snprintf(rep->patch_name, sizeof(rep->patch_name), "%s", base_name(a->target));
                *error = r == -EACCES ? -EPERM : r;
                return 0;
        }
        have = r >= 0;
        r = client_check(fd, pid, patch_fd, base_name(a->target), have ? &proof : NULL, rep, error);
        if (have) {
                close(proof.mem_fd);
                close(proof.pidfd);
        }
        if (r < 0 && rep->message[0] && r != -ECONNRESET && r != -EPROTO && r != -ETIMEDOUT) {
                /* refused by ulpd for this process (no such process, not allowed): its result */
                *error = r;
                return 0;
        }
        if (r < 0)
                fprintf(stderr, "ulpctl: %s\n", rep->message[0] ? rep->message : strerror(-r));
        return r;
}

static int verb_check(const Args *a) {
        _cleanup_close_ int patch_fd = -1;
        json_object *results = a->json ? json_object_new_array() : NULL;
        int worst = 0;

        if (a->n_pids == 0) {
                fprintf(stderr, "ulpctl: check needs -p PID (one or more)\n");
                return EXIT_USAGE;
        }
        if (a->direct)
                return run_direct(a, "check");
        if (open_patch(a->target, &patch_fd) < 0)
                return 1;
        for (size_t i = 0; i < a->n_pids; i++) {
                UlpReport rep = {};
                int error = 0;

                if (daemon_check_one(a, a->pids[i], patch_fd, &rep, &error) < 0) {
                        json_object_put(results);
                        return 1;
                }
                print_check(a, a->pids[i], &rep, error, results);
                report_json_done(&rep);
                if (error < 0 && worst == 0)
                        worst = error;
        }
        print_json_results(results);
        return worst == 0 ? 0 : 1;
}

static int verb_apply(const Args *a) {
        return a->direct ? run_direct(a, "apply") : daemon_apply_or_revert(a, true);
}

static int verb_revert(const Args *a) {
        return a->direct ? run_direct(a, "revert") : daemon_apply_or_revert(a, false);
}

static int verb_info(const Args *a) {
        return run_direct(a, "info");
}

static void usage(FILE *f) {
        fputs("usage: ulpctl [--direct] apply  (-p PID)... | --all  PATCH.so [--timeout S] [--force] [--global]\n"
              "                                  [--return-trap] [--no-wait] [--sticky] [--json]\n"
              "                                  [--callback-timeout MS (--direct)]\n"
              "       ulpctl [--direct] revert (-p PID)... | --all  NAME|PATCH.so [--timeout S] [--force] [--json]\n"
              "       ulpctl [--direct] status [-p PID | --all] [--json | --prometheus]\n"
              "       ulpctl status --missing PATCH.so... [--json | --prometheus]\n"
              "       ulpctl [--direct] check  (-p PID)... PATCH.so [--json]\n"
              "       ulpctl info PATCH.so [--json]\n"
              "--sticky (with --all): also every matching process started later (--persist is the old spelling)\n"
              "status lists the processes that carry an applied patch, a transition or a refused\n"
              "control block; --all lists every process with ulp state (reverted patches too)\n", f);
}

typedef struct Verb {
        const char *name;
        bool needs_target;
        bool needs_pids;         /* -p or --all */
        int (*run)(const Args *a);
} Verb;

static const Verb verbs[] = {
        { "apply", true, true, verb_apply },
        { "revert", true, true, verb_revert },
        { "status", false, false, verb_status },
        { "check", true, false, verb_check },
        { "info", true, false, verb_info },
};

static int parse_pid(const char *s, pid_t *ret) {
        char *end;
        long v;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v <= 0 || v > INT_MAX)
                return -EINVAL;
        *ret = (pid_t)v;
        return 0;
}

static int parse_args(int argc, char **argv, Args *a, const Verb **ret_verb) {
        enum { ARG_DIRECT = 256, ARG_ALL, ARG_JSON, ARG_FORCE, ARG_GLOBAL, ARG_TIMEOUT, ARG_NOWAIT, ARG_STICKY, ARG_TRAP,
               ARG_CB_TIMEOUT, ARG_PROMETHEUS, ARG_MISSING };
        static const struct option opts[] = {
                { "direct", no_argument, NULL, ARG_DIRECT },   { "all", no_argument, NULL, ARG_ALL },
                { "json", no_argument, NULL, ARG_JSON },       { "force", no_argument, NULL, ARG_FORCE },
                { "global", no_argument, NULL, ARG_GLOBAL },   { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "no-wait", no_argument, NULL, ARG_NOWAIT },  { "sticky", no_argument, NULL, ARG_STICKY },
                { "persist", no_argument, NULL, ARG_STICKY }, /* the old spelling */
                { "return-trap", no_argument, NULL, ARG_TRAP }, { "pid", required_argument, NULL, 'p' },
                { "callback-timeout", required_argument, NULL, ARG_CB_TIMEOUT },
                { "prometheus", no_argument, NULL, ARG_PROMETHEUS },
                { "missing", required_argument, NULL, ARG_MISSING },
                { "help", no_argument, NULL, 'h' },          { NULL, 0, NULL, 0 }
        };
        const char *verb = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "+p:h", opts, NULL)) != -1 || optind < argc) {
                if (c == -1) {
                        /* a positional argument: the verb, then the target */
                        if (!verb)
                                verb = argv[optind++];
                        else if (!a->target)
                                a->target = argv[optind++];
                        else {
                                fprintf(stderr, "ulpctl: unexpected argument %s\n", argv[optind]);
                                return -EINVAL;
                        }
                        continue;
                }
                switch (c) {
                case ARG_DIRECT: a->direct = true; break;
                case ARG_ALL: a->all = true; break;
                case ARG_JSON: a->json = true; break;
                case ARG_FORCE: a->force = true; break;
                case ARG_GLOBAL: a->global = true; break;
                case ARG_NOWAIT: a->no_wait = true; break;
                case ARG_STICKY: a->sticky = true; break;
                case ARG_TRAP: a->return_trap = true; break;
                case ARG_PROMETHEUS: a->prometheus = true; break;
                case ARG_MISSING:
                        if (a->n_missing >= ELEMENTSOF(a->missing)) {
                                fprintf(stderr, "ulpctl: at most %zu --missing in one command\n", ELEMENTSOF(a->missing));
                                return -EINVAL;
                        }
                        a->missing[a->n_missing++] = optarg;
                        break;
                case ARG_TIMEOUT: {
                        char *end;
                        double s = strtod(optarg, &end);
                        if (*end || s <= 0 || s > 86400) {
                                fprintf(stderr, "ulpctl: bad --timeout %s (seconds)\n", optarg);
                                return -EINVAL;
                        }
                        a->timeout_ms = (unsigned)(s * 1000);
                        break;
                }
                case ARG_CB_TIMEOUT: {
                        char *end;
                        unsigned long ms = strtoul(optarg, &end, 10);
                        if (*end || ms < 1 || ms > 600000) {
                                fprintf(stderr, "ulpctl: bad --callback-timeout %s (1..600000 ms)\n", optarg);
                                return -EINVAL;
                        }
                        a->callback_timeout_ms = (unsigned)ms;
                        break;
                }
                case 'p':
                        if (a->n_pids >= ELEMENTSOF(a->pids)) {
                                fprintf(stderr, "ulpctl: too many -p: at most %zu processes in one command\n",
                                        ELEMENTSOF(a->pids));
                                return -EINVAL;
                        }
                        if (parse_pid(optarg, &a->pids[a->n_pids]) < 0) {
                                fprintf(stderr, "ulpctl: bad pid %s\n", optarg);
                                return -EINVAL;
                        }
                        a->n_pids++;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        return -EINVAL;
                }
        }
        if (!verb) {
                usage(stderr);
                return -EINVAL;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(verbs[i].name, verb) == 0)
                        *ret_verb = &verbs[i];
        if (!*ret_verb) {
                fprintf(stderr, "ulpctl: unknown verb %s\n", verb);
                return -EINVAL;
        }
        if ((*ret_verb)->needs_target && !a->target) {
                fprintf(stderr, "ulpctl: %s needs %s\n", verb, strcmp(verb, "revert") == 0 ? "NAME or PATCH.so" : "PATCH.so");
                return -EINVAL;
        }
        if ((*ret_verb)->needs_pids && !a->n_pids == !a->all) {
                fprintf(stderr, "ulpctl: %s needs -p PID (one or more) or --all\n", verb);
                return -EINVAL;
        }
        if (a->prometheus && strcmp(verb, "status") != 0) {
                fprintf(stderr, "ulpctl: --prometheus goes with status\n");
                return -EINVAL;
        }
        if (a->prometheus && a->json) {
                fprintf(stderr, "ulpctl: --prometheus and --json are two formats: choose one\n");
                return -EINVAL;
        }
        if (a->n_missing && strcmp(verb, "status") != 0) {
                fprintf(stderr, "ulpctl: --missing goes with status\n");
                return -EINVAL;
        }
        if (a->n_missing && (a->n_pids || a->all)) {
                fprintf(stderr, "ulpctl: status --missing looks at every process; it takes no -p or --all\n");
                return -EINVAL;
        }
        if (strcmp(verb, "status") == 0 && a->all && a->n_pids) {
                fprintf(stderr, "ulpctl: status takes -p PID or --all, not both\n");
                return -EINVAL;
        }
        if (a->sticky && !a->all) {
                fprintf(stderr, "ulpctl: --sticky goes with --all\n");
                return -EINVAL;
        }
        if (a->sticky && a->direct) {
                fprintf(stderr, "ulpctl: --sticky needs ulpd (it applies to future processes)\n");
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char **argv) {
        Args a = {};
        const Verb *v = NULL;

        if (parse_args(argc, argv, &a, &v) < 0)
                return EXIT_USAGE;
        return v->run(&a);
}
