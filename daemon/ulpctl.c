/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpctl: the operator's tool. Talks to ulpd by default; --direct does the work in
 * this process with libulp (for CI and machines without the daemon).
 *
 * Exit status: 0 done; 1 failed, target unchanged; 2 usage; 3 the transition did
 * not finish in time and was reversed.
 */

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
#include "ulp/libulp.h"

#define EXIT_USAGE 2
#define EXIT_TIMEDOUT 3

typedef struct Args {
        bool direct, all, json, force, global, no_wait, sticky, return_trap;
        unsigned timeout_ms;
        pid_t pids[64];
        size_t n_pids;
        const char *target;      /* PATCH.so, or NAME for revert */
} Args;

static int exit_code_for(int error) {
        if (error == 0)
                return 0;
        return error == -ETIMEDOUT ? EXIT_TIMEDOUT : 1;
}

static const char *base_name(const char *path) {
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

static void print_report(pid_t pid, const char *verb, const UlpReport *r, int error) {
        for (size_t i = 0; i < r->n_warnings; i++)
                fprintf(stderr, "warning: %s\n", r->warnings[i]);
        if (error == 0 || (error == -ETIMEDOUT && r->message[0] == 0)) {
                printf("%s %s %s process %d: %u thread(s), %u retr%s, longest thread stop %llu us, "
                       "longest stop-the-world %llu us, %llu ms%s\n",
                       verb, r->patch_name, strcmp(verb, "applied") == 0 ? "to" : "in", pid, r->threads,
                       r->retries, r->retries == 1 ? "y" : "ies", (unsigned long long)r->max_thread_stop_us,
                       (unsigned long long)r->max_stw_us, (unsigned long long)r->total_ms,
                       r->forced ? " (forced)" : "");
                return;
        }
        fprintf(stderr, "ulpctl: %s\n", r->message[0] ? r->message : strerror(-error));
        for (size_t i = 0; i < r->n_stragglers; i++)
                fprintf(stderr, "  thread %d (%s) in %s\n", r->stragglers[i].tid, r->stragglers[i].comm,
                        r->stragglers[i].function);
}

static void print_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

static int open_patch(const char *path, int *ret_fd) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "ulpctl: cannot open %s: %s\n", path, strerror(errno));
                return -errno;
        }
        *ret_fd = fd;
        return 0;
}

static bool looks_like_file(const char *s) {
        return strchr(s, '/') || (strlen(s) > 3 && strcmp(s + strlen(s) - 3, ".so") == 0);
}

static void progress(pid_t pid, unsigned switched, unsigned total, void *userdata) {
        if (isatty(STDERR_FILENO))
                fprintf(stderr, "\r  process %d: %u/%u threads switched", pid, switched, total);
}

static void progress_done(void) {
        if (isatty(STDERR_FILENO))
                fputs("\r\033[K", stderr);
}

/* --direct: drives the operation here, step by step, showing progress. */
static int direct_run(UlpOp *op, int r) {
        unsigned next = 0, sw, total;
        while (r == 0) {
                r = ulp_op_step(op, &next);
                if (r == 0) {
                        struct timespec ts = { next / 1000, (long)(next % 1000) * 1000000L };
                        ulp_op_progress(op, &sw, &total);
                        progress(ulp_op_pid(op), sw, total, NULL);
                        nanosleep(&ts, NULL);
                }
        }
        progress_done();
        return r < 0 ? r : 0;
}

static UlpOptions options_of(const Args *a) {
        /* An unprivileged caller acts on any valid block in the processes the kernel lets it
         * trace (its own); root only on blocks ulp provably made (docs/control-block.md). */
        return (UlpOptions) { .timeout_ms = a->timeout_ms, .force = a->force, .global = a->global,
                              .return_trap = a->return_trap, .trust_unsigned = geteuid() != 0 };
}

/* The processes --all designates for a direct revert: those carrying the patch. */
static int direct_carriers(const char *name, pid_t **ret, size_t *ret_n) {
        pid_t *v = NULL;
        size_t n = 0, k = 0;
        int r = ulp_list_processes(&v, &n);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                UlpProcessStatus s;
                UlpReport rep = {};
                bool has = false;
                /* root: only blocks ulp provably made (docs/control-block.md) */
                if (ulp_status(v[i], &s, &rep) >= 0 && (s.trusted || geteuid() != 0)) {
                        has = ulp_process_carries(&s, name);
                        ulp_status_done(&s);
                }
                ulp_report_done(&rep);
                if (has)
                        v[k++] = v[i];
        }
        *ret = v;
        *ret_n = k;
        return 0;
}

static int do_apply_or_revert(const Args *a, bool apply) {
        _cleanup_close_ int patch_fd = -1;
        UlpPatchInfo *meta = NULL;
        char err[256] = "", name[256];
        pid_t *pids = (pid_t *)a->pids;
        size_t n_pids = a->n_pids;
        _cleanup_free_ pid_t *all = NULL;
        UlpOptions o = options_of(a);
        json_object *results = a->json ? json_object_new_array() : NULL;
        int worst = 0, r;

        snprintf(name, sizeof(name), "%s", a->target);
        if (apply || looks_like_file(a->target)) {
                r = open_patch(a->target, &patch_fd);
                if (r < 0)
                        return 1;
                if (!apply) {
                        /* revert by file: the patch's name from its metadata */
                        r = ulp_patch_info_read(patch_fd, base_name(a->target), &meta, err, sizeof(err));
                        if (r < 0) {
                                fprintf(stderr, r == -ENOTSUP ? "ulpctl: patch %s %s\n" : "ulpctl: %s: %s\n",
                                        a->target, err[0] ? err : strerror(-r));
                                return 1;
                        }
                        snprintf(name, sizeof(name), "%s", ulp_patch_info_name(meta));
                        ulp_patch_info_free(meta);
                        meta = NULL;
                }
        }
        if (a->all) {
                if (apply) {
                        fprintf(stderr, "ulpctl: apply --all needs ulpd (it matches build-ids on every "
                                        "process); use -p with --direct\n");
                        return 1;
                }
                if (direct_carriers(name, &all, &n_pids) < 0) {
                        fprintf(stderr, "ulpctl: cannot list processes\n");
                        return 1;
                }
                pids = all;
        }
        for (size_t i = 0; i < n_pids; i++) {
                UlpReport rep = {};
                UlpOp *op = NULL;
                r = apply ? ulp_op_apply(pids[i], patch_fd, base_name(a->target), &o, &op, &rep)
                          : ulp_op_revert(pids[i], name, &o, &op, &rep);
                if (op)
                        r = direct_run(op, r);
                ulp_op_free(op);
                if (results) {
                        json_object *j = report_to_json(&rep, r);
                        json_object_object_add(j, "pid", json_object_new_int(pids[i]));
                        json_object_array_add(results, j);
                } else
                        print_report(pids[i], apply ? "applied" : "reverted", &rep, r);
                if (r < 0 && (worst == 0 || r == -ETIMEDOUT))
                        worst = r;
                ulp_report_done(&rep);
        }
        if (results) {
                if (json_object_array_length(results) == 1) {
                        json_object *one = json_object_get(json_object_array_get_idx(results, 0));
                        json_object_put(results);
                        print_json(one);
                } else {
                        json_object *o2 = json_object_new_object();
                        json_object_object_add(o2, "results", results);
                        print_json(o2);
                }
        }
        if (a->all && n_pids == 0 && !a->json)
                printf("no process %s %s\n", apply ? "fits" : "carries", name);
        return exit_code_for(worst);
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
        v = calloc(a->n_pids ?: 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < a->n_pids; i++) {
                char err[256] = "";
                int r = client_proof_open(a->pids[i], &v[n], err, sizeof(err));

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

static void print_status_human(const UlpProcessStatus *s, size_t n) {
        if (n == 0)
                printf("no process carries ulp patches\n");
        for (size_t i = 0; i < n; i++) {
                if (s[i].problem[0]) {
                        printf("process %d (%s): ulp control block refused: %s\n", s[i].pid, s[i].comm,
                               s[i].problem);
                        continue;
                }
                printf("process %d (%s)%s\n", s[i].pid, s[i].comm,
                       s[i].trusted ? "" : " [control block not signed by this machine's ulp]");
                for (size_t j = 0; j < s[i].n_patches; j++) {
                        const UlpPatchStatus *p = &s[i].patches[j];
                        printf("  %s: %s%s%s\n", p->name, ulp_patch_state_to_string(p->state), p->forced ? ", forced" : "",
                               p->replace ? ", replace" : "");
                        for (size_t k = 0; k < p->n_funcs; k++)
                                printf("    %s%s%s\n", p->funcs[k].object[0] ? p->funcs[k].object : "",
                                       p->funcs[k].object[0] ? ":" : "", p->funcs[k].symbol);
                        for (size_t k = 0; k < p->n_late_objects; k++)
                                printf("%s%s%s", k == 0 ? "    pending objects: " : ", ", p->late_objects[k],
                                       k + 1 == p->n_late_objects ? "\n" : "");
                        for (size_t k = 0; k < p->n_stragglers; k++)
                                printf("    straggler: thread %d (%s) in %s\n", p->stragglers[k].tid,
                                       p->stragglers[k].comm, p->stragglers[k].function);
                }
        }
}

static int verb_status(const Args *a) {
        UlpProcessStatus *s = NULL;
        size_t n = 0;
        _cleanup_free_ pid_t *pids = NULL;
        int r;

        if (!a->direct) {
                _cleanup_close_ int fd = -1;
                char err[256] = "";
                r = client_connect(client_socket_path(), &fd);
                if (r < 0) {
                        fprintf(stderr, "ulpctl: no ulpd answers on %s (%s); start ulpd, or use --direct\n",
                                client_socket_path(), strerror(-r));
                        return 1;
                }
                ClientProof *proofs = NULL;
                size_t n_proofs = 0;
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
        } else {
                size_t np = 0;
                if (a->n_pids) {
                        pids = malloc(sizeof(pid_t));
                        if (!pids)
                                return 1;
                        pids[0] = a->pids[0];
                        np = 1;
                } else if (ulp_list_processes(&pids, &np) < 0) {
                        fprintf(stderr, "ulpctl: cannot list processes\n");
                        return 1;
                }
                s = calloc(np ? np : 1, sizeof(*s));
                for (size_t i = 0; s && i < np; i++) {
                        UlpReport rep = {};
                        r = ulp_status(pids[i], &s[n], &rep);
                        /* A block that cannot be used is listed as such, with why. */
                        if (r >= 0 || (!a->n_pids && s[n].problem[0]))
                                n++;
                        else if (a->n_pids && r != -ENOENT) {
                                fprintf(stderr, "ulpctl: %s\n", rep.message[0] ? rep.message : strerror(-r));
                                ulp_report_done(&rep);
                                free(s);
                                return 1;
                        }
                        ulp_report_done(&rep);
                }
        }
        if (a->json)
                print_json(status_to_json(s, n));
        else
                print_status_human(s, n);
        if (a->direct) {
                for (size_t i = 0; i < n; i++)
                        ulp_status_done(&s[i]);
                free(s);
        } else
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
        if (open_patch(a->target, &patch_fd) < 0)
                return 1;
        if (a->direct)
                error = ulp_check(a->pids[0], patch_fd, base_name(a->target), &rep);
        else {
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
        if (a->json)
                print_json(report_to_json(&rep, error));
        else if (error == 0) {
                for (size_t i = 0; i < rep.n_warnings; i++)
                        fprintf(stderr, "warning: %s\n", rep.warnings[i]);
                printf("%s would apply to process %d now (%u threads checked)\n", rep.patch_name, a->pids[0], rep.threads);
        } else
                print_report(a->pids[0], "check", &rep, error);
        ulp_report_done(&rep);
        return error == 0 ? 0 : 1;
}

static json_object *info_to_json(const UlpPatchInfo *m, const char *hex) {
        json_object *o = json_object_new_object(), *fs = json_object_new_array(), *rs = json_object_new_array();

        json_object_object_add(o, "name", json_object_new_string(ulp_patch_info_name(m)));
        json_object_object_add(o, "description", json_object_new_string(ulp_patch_info_description(m)));
        json_object_object_add(o, "replace", json_object_new_boolean(ulp_patch_info_replace(m)));
        json_object_object_add(o, "build_id", json_object_new_string(hex));
        for (size_t i = 0; i < ulp_patch_info_n_funcs(m); i++) {
                UlpPatchFuncInfo fi = ulp_patch_info_func(m, i);
                json_object *f = json_object_new_object();
                json_object_object_add(f, "object", json_object_new_string(fi.object));
                json_object_object_add(f, "symbol", json_object_new_string(fi.symbol));
                json_object_object_add(f, "pos", json_object_new_int((int)fi.pos));
                json_object_object_add(f, "new", json_object_new_string(fi.new_name));
                json_object_array_add(fs, f);
        }
        for (size_t i = 0; i < ulp_patch_info_n_refs(m); i++) {
                const char *object, *symbol;
                json_object *f = json_object_new_object();
                ulp_patch_info_ref(m, i, &object, &symbol);
                json_object_object_add(f, "object", json_object_new_string(object));
                json_object_object_add(f, "symbol", json_object_new_string(symbol));
                json_object_array_add(rs, f);
        }
        json_object_object_add(o, "functions", fs);
        json_object_object_add(o, "refs", rs);
        json_object_object_add(o, "callbacks", json_object_new_int((int)ulp_patch_info_n_callbacks(m)));
        return o;
}

static const char *object_or_main(const char *object) {
        return object[0] ? object : "(main)";
}

static void print_info(const UlpPatchInfo *m, const char *hex) {
        printf("name:        %s\ndescription: %s\nreplace:     %s\nbuild-id:    %s\n", ulp_patch_info_name(m),
               ulp_patch_info_description(m), ulp_patch_info_replace(m) ? "yes" : "no", hex[0] ? hex : "none");
        for (size_t i = 0; i < ulp_patch_info_n_funcs(m); i++) {
                UlpPatchFuncInfo f = ulp_patch_info_func(m, i);
                printf("function:    %s:%s", object_or_main(f.object), f.symbol);
                if (f.pos)
                        printf(" #%u", f.pos);
                printf(" -> %s\n", f.new_name);
        }
        for (size_t i = 0; i < ulp_patch_info_n_refs(m); i++) {
                const char *object, *symbol;
                ulp_patch_info_ref(m, i, &object, &symbol);
                printf("reference:   %s:%s\n", object_or_main(object), symbol);
        }
        for (size_t i = 0; i < ulp_patch_info_n_pins(m); i++) {
                const char *object, *pin;
                ulp_patch_info_pin(m, i, &object, &pin);
                printf("pinned:      %s build-id %s\n", object_or_main(object), pin);
        }
        for (size_t i = 0; i < ulp_patch_info_n_callbacks(m); i++)
                printf("callbacks:   %s\n", object_or_main(ulp_patch_info_callbacks_object(m, i)));
}

static int verb_info(const Args *a) {
        _cleanup_close_ int fd = -1;
        _cleanup_(ulp_patch_info_freep) UlpPatchInfo *m = NULL;
        char err[256] = "", hex[ULP_BUILD_ID_HEX_MAX];
        int r;

        if (open_patch(a->target, &fd) < 0)
                return 1;
        r = ulp_patch_info_read(fd, base_name(a->target), &m, err, sizeof(err));
        /* Worded as apply and check word it (op-apply.c read_meta). */
        if (r == -ENOTSUP) {
                fprintf(stderr, "ulpctl: patch %s %s\n", base_name(a->target), err);
                return 1;
        }
        if (r < 0 && r != -ENOEXEC && r != -ENOMSG) {
                fprintf(stderr, "ulpctl: bad patch %s: %s\n", base_name(a->target), err[0] ? err : strerror(-r));
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "ulpctl: %s: %s\n", a->target,
                        r == -ENOEXEC ? "not an ELF file" : "no ulp patch metadata");
                return 1;
        }
        ulp_patch_info_build_id(m, hex);
        if (a->json)
                print_json(info_to_json(m, hex));
        else
                print_info(m, hex);
        return 0;
}

static int verb_apply(const Args *a) {
        return a->direct ? do_apply_or_revert(a, true) : daemon_apply_or_revert(a, true);
}

static int verb_revert(const Args *a) {
        return a->direct ? do_apply_or_revert(a, false) : daemon_apply_or_revert(a, false);
}

static void usage(FILE *f) {
        fputs("usage: ulpctl [--direct] apply  (-p PID)... | --all  PATCH.so [--timeout S] [--force] [--global]\n"
              "                                  [--return-trap] [--no-wait] [--sticky] [--json]\n"
              "       ulpctl [--direct] revert (-p PID)... | --all  NAME|PATCH.so [--timeout S] [--force] [--sticky] [--json]\n"
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
        enum { ARG_DIRECT = 256, ARG_ALL, ARG_JSON, ARG_FORCE, ARG_GLOBAL, ARG_TIMEOUT, ARG_NOWAIT, ARG_STICKY, ARG_TRAP };
        static const struct option opts[] = {
                { "direct", no_argument, NULL, ARG_DIRECT },   { "all", no_argument, NULL, ARG_ALL },
                { "json", no_argument, NULL, ARG_JSON },       { "force", no_argument, NULL, ARG_FORCE },
                { "global", no_argument, NULL, ARG_GLOBAL },   { "timeout", required_argument, NULL, ARG_TIMEOUT },
                { "no-wait", no_argument, NULL, ARG_NOWAIT },  { "sticky", no_argument, NULL, ARG_STICKY },
                { "persist", no_argument, NULL, ARG_STICKY }, /* the old spelling */
                { "return-trap", no_argument, NULL, ARG_TRAP }, { "pid", required_argument, NULL, 'p' },
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
                case 'p':
                        if (a->n_pids >= ELEMENTSOF(a->pids) || parse_pid(optarg, &a->pids[a->n_pids]) < 0) {
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
