/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpctl: the operator's tool. Talks to ulpd by default; --direct does the work in
 * this process with libulp (for CI and machines without the daemon), loaded then from
 * ulpctl-direct.so (ulpctl.h).
 *
 * Exit status: 0 done; 1 failed, target unchanged; 2 usage; 3 the transition did
 * not finish in time and was reversed.
 */

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
                        fprintf(stderr, "ulpctl: cannot list processes: %s\n", strerror(-r));
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
                fprintf(stderr, "ulpctl: no ulpd answers on %s (%s); start ulpd, or use --direct\n",
                        client_socket_path(), strerror(-r));
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
        if (results) {
                size_t all = json_object_array_length(results);
                json_object *o = all == 1 ? json_object_get(json_object_array_get_idx(results, 0)) : json_object_new_object();
                if (all == 1)
                        json_object_put(results);
                else
                        json_object_object_add(o, "results", results);
                print_json(o);
        }
        client_results_free(res, n);
        return exit_code_for(worst);
}

static int verb_status(const Args *a) {
        _cleanup_close_ int fd = -1;
        ClientProof *proofs = NULL;
        UlpProcessStatus *s = NULL;
        size_t n = 0, n_proofs = 0;
        char err[256] = "";
        int r;

        if (a->direct)
                return run_direct(a, "status");
        r = client_connect(client_socket_path(), &fd);
        if (r < 0) {
                fprintf(stderr, "ulpctl: no ulpd answers on %s (%s); start ulpd, or use --direct\n",
                        client_socket_path(), strerror(-r));
                return 1;
        }
        if (geteuid() != 0) {
                /* ulpd shows us what we prove we may trace (client.h) */
                _cleanup_free_ pid_t *cand = NULL;
                size_t n_cand = 0;
                if (a->n_pids) {
                        cand = malloc(sizeof(pid_t));
                        if (cand)
                                cand[n_cand++] = a->pids[0];
                } else
                        (void) ulp_list_processes(&cand, &n_cand);
                proofs = calloc(n_cand ?: 1, sizeof(*proofs));
                for (size_t i = 0; proofs && i < n_cand && n_proofs < PROTOCOL_TARGETS_MAX; i++) {
                        r = client_proof_open(cand[i], &proofs[n_proofs], err, sizeof(err));
                        if (r >= 0)
                                n_proofs++;
                        else if (a->n_pids) {
                                fprintf(stderr, "ulpctl: %s\n", err);
                                free(proofs);
                                return 1;
                        }
                }
        }
        r = client_status(fd, a->n_pids ? a->pids[0] : 0, proofs, n_proofs, &s, &n, err, sizeof(err));
        client_proofs_free(proofs, n_proofs);
        if (r < 0) {
                fprintf(stderr, "ulpctl: %s\n", err[0] ? err : strerror(-r));
                return 1;
        }
        if (a->json)
                print_json(status_to_json(s, n));
        else
                print_status_human(s, n);
        status_json_free(s, n);
        return 0;
}

static int verb_check(const Args *a) {
        _cleanup_close_ int patch_fd = -1;
        UlpReport rep = {};
        int r, error = 0;

        if (a->n_pids != 1) {
                fprintf(stderr, "ulpctl: check needs exactly one -p PID\n");
                return EXIT_USAGE;
        }
        if (a->direct)
                return run_direct(a, "check");
        if (open_patch(a->target, &patch_fd) < 0)
                return 1;
        {
                _cleanup_close_ int fd = -1;
                r = client_connect(client_socket_path(), &fd);
                if (r < 0) {
                        fprintf(stderr, "ulpctl: no ulpd answers on %s (%s); start ulpd, or use --direct\n",
                                client_socket_path(), strerror(-r));
                        return 1;
                }
                ClientProof proof;
                char err[256] = "";
                r = client_proof_open(a->pids[0], &proof, err, sizeof(err));
                if (r < 0 && geteuid() != 0) {
                        fprintf(stderr, "ulpctl: %s\n", err);
                        return 1;
                }
                bool have = r >= 0;
                r = client_check(fd, a->pids[0], patch_fd, base_name(a->target), have ? &proof : NULL, &rep, &error);
                if (have) {
                        close(proof.mem_fd);
                        close(proof.pidfd);
                }
                if (r < 0) {
                        fprintf(stderr, "ulpctl: %s\n", rep.message[0] ? rep.message : strerror(-r));
                        return 1;
                }
        }
        print_check(a, &rep, error);
        report_json_done(&rep);
        return error == 0 ? 0 : 1;
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
              "       ulpctl [--direct] status [-p PID] [--json]\n"
              "       ulpctl [--direct] check  -p PID PATCH.so [--json]\n"
              "       ulpctl info PATCH.so [--json]\n"
              "--sticky (with --all): also every matching process started later (--persist is the old spelling)\n", f);
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
               ARG_CB_TIMEOUT };
        static const struct option opts[] = {
                { "direct", no_argument, NULL, ARG_DIRECT },   { "all", no_argument, NULL, ARG_ALL },
                { "json", no_argument, NULL, ARG_JSON },       { "force", no_argument, NULL, ARG_FORCE },
                { "global", no_argument, NULL, ARG_GLOBAL },   { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "no-wait", no_argument, NULL, ARG_NOWAIT },  { "sticky", no_argument, NULL, ARG_STICKY },
                { "persist", no_argument, NULL, ARG_STICKY }, /* the old spelling */
                { "return-trap", no_argument, NULL, ARG_TRAP }, { "pid", required_argument, NULL, 'p' },
                { "callback-timeout", required_argument, NULL, ARG_CB_TIMEOUT },
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
