/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpctl-direct.so: the work of ulpctl done in its own process with libulp (--direct,
 * for CI and machines without the daemon), and info, which reads a patch file. Loaded
 * by ulpctl only for these (ulpctl.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/report-json.h"
#include "daemon/ulpctl.h"
#include "ulp/libulp.h"

/* --direct: drives the operation here, step by step, showing progress. */
static int direct_run(UlpOp *op, int r, bool show_progress) {
        unsigned next = 0, sw, total;
        UlpStraggler worst;
        while (r == 0) {
                r = ulp_op_step(op, &next);
                if (r == 0) {
                        struct timespec ts = { next / 1000, (long)(next % 1000) * 1000000L };
                        ulp_op_progress(op, &sw, &total);
                        if (show_progress)
                                progress(ulp_op_pid(op), sw, total,
                                         sw < total && ulp_op_worst_straggler(op, &worst) ? &worst : NULL, NULL);
                        nanosleep(&ts, NULL);
                }
        }
        if (show_progress)
                progress_done();
        return r < 0 ? r : 0;
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

/*
 * Many processes at once: a bounded pool of threads, each driving one process's
 * operation from start to end (the thread that seized a process's threads is their
 * tracer, so an operation never changes hands), then taking the next. A process whose
 * transition waits for stragglers holds one worker, not the others. The library keeps
 * its per-driver state per thread (target.c), and every worker waits for its own
 * tracees with SIGCHLD blocked, as the main thread has it blocked before they start;
 * each worker's waits sleep until its own tracee reports, bounded by a timer of its own
 * (ulp_wait_timer_start(), as ulpd's drivers wait: docs/daemon.md), rather than napping
 * on a SIGCHLD that any worker may take.
 */
#define POOL_WORKERS_MAX 16
/* The workers' wait timers' signal: its handler does nothing, without SA_RESTART. */
#define POOL_WAIT_SIGNAL (SIGRTMIN + 1)

static void pool_wait_signal(int sig) {
        (void) sig;
}

typedef struct Slot {
        pid_t pid;
        int r;
        UlpReport rep;
        bool done;
} Slot;

typedef struct Pool {
        bool apply, show_progress;
        int patch_fd;
        const char *hint, *name;
        UlpOptions o;
        Slot *v;
        size_t n, next;
        pthread_t workers[POOL_WORKERS_MAX];
        size_t n_workers;
        pthread_mutex_t lock;
        pthread_cond_t cond;
} Pool;

/* Each operation reads the patch from its own open file: they would share one offset. */
static int reopen_patch(int fd) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        return open(path, O_RDONLY | O_CLOEXEC);
}

static void pool_run_one(Pool *p, Slot *sl) {
        _cleanup_close_ int fd = p->apply ? reopen_patch(p->patch_fd) : -1;
        UlpOp *op = NULL;
        int r;

        if (p->apply && fd < 0)
                r = -errno;
        else
                r = p->apply ? ulp_op_apply(sl->pid, fd, p->hint, &p->o, &op, &sl->rep)
                             : ulp_op_revert(sl->pid, p->name, &p->o, &op, &sl->rep);
        if (op)
                r = direct_run(op, r, p->show_progress);
        ulp_op_free(op);
        sl->r = r;
}

static void *pool_worker(void *userdata) {
        Pool *p = userdata;

        for (;;) {
                Slot *sl;
                pthread_mutex_lock(&p->lock);
                sl = p->next < p->n ? &p->v[p->next++] : NULL;
                pthread_mutex_unlock(&p->lock);
                if (!sl)
                        break;
                pool_run_one(p, sl);
                pthread_mutex_lock(&p->lock);
                sl->done = true;
                pthread_cond_broadcast(&p->cond);
                pthread_mutex_unlock(&p->lock);
        }
        /* Late threads of this worker's targets are its own to let go. */
        (void) ulp_release_late();
        return NULL;
}

/* A worker thread: pool_worker() with its waits on a timer of its own. */
static void *pool_thread(void *userdata) {
        bool timer = ulp_wait_timer_start(POOL_WAIT_SIGNAL) >= 0;

        (void) pool_worker(userdata);
        if (timer)
                ulp_wait_timer_stop();
        return NULL;
}

static void pool_start(Pool *p) {
        size_t want = MIN(p->n, (size_t) POOL_WORKERS_MAX);
        struct sigaction sa = { .sa_handler = pool_wait_signal };
        sigset_t chld;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &chld, NULL);
        /* One process: no thread at all. */
        if (want <= 1)
                return;
        sigemptyset(&sa.sa_mask);
        (void) sigaction(POOL_WAIT_SIGNAL, &sa, NULL);
        for (size_t i = 0; i < want; i++)
                if (pthread_create(&p->workers[p->n_workers], NULL, pool_thread, p) == 0)
                        p->n_workers++;
}

/* Whatever the workers did not take (none started, or fewer), done here; then waits. */
static void pool_join(Pool *p) {
        if (p->n_workers == 0)
                (void) pool_worker(p);
        for (size_t i = 0; i < p->n_workers; i++)
                pthread_join(p->workers[i], NULL);
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
        Pool pool = { .apply = apply, .patch_fd = patch_fd, .hint = base_name(a->target), .name = name,
                      .o = o, .n = n_pids, .show_progress = n_pids == 1,
                      .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
        pool.v = calloc(n_pids ?: 1, sizeof(Slot));
        if (!pool.v) {
                fprintf(stderr, "ulpctl: out of memory\n");
                return 1;
        }
        for (size_t i = 0; i < n_pids; i++)
                pool.v[i].pid = pids[i];
        pool_start(&pool);
        if (pool.n_workers == 0)
                pool_join(&pool);
        /* Reported in the order given, each as soon as it and those before it are done. */
        for (size_t i = 0; i < n_pids; i++) {
                Slot *sl = &pool.v[i];
                pthread_mutex_lock(&pool.lock);
                while (!sl->done)
                        pthread_cond_wait(&pool.cond, &pool.lock);
                pthread_mutex_unlock(&pool.lock);
                r = sl->r;
                if (results) {
                        json_object *j = report_to_json(&sl->rep, r);
                        json_object_object_add(j, "pid", json_object_new_int(sl->pid));
                        json_object_array_add(results, j);
                } else {
                        print_report(sl->pid, apply ? "applied" : "reverted", &sl->rep, r);
                        fflush(stdout);
                }
                if (r < 0 && (worst == 0 || r == -ETIMEDOUT))
                        worst = r;
                ulp_report_done(&sl->rep);
        }
        if (pool.n_workers)
                pool_join(&pool);
        free(pool.v);
        print_json_results(results);
        if (a->all && n_pids == 0) {
                /* a name nobody carries: most likely a typo (as through ulpd) */
                fprintf(stderr, "ulpctl: no process carries %s\n", name);
                return 1;
        }
        return exit_code_for(worst);
}

static int direct_status(const Args *a) {
        UlpProcessStatus *s = NULL;
        size_t n = 0, np = 0;
        _cleanup_free_ pid_t *pids = NULL;
        int r;

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
        print_status(a, s, n, NULL);
        for (size_t i = 0; i < n; i++)
                ulp_status_done(&s[i]);
        free(s);
        return 0;
}

static int direct_check(const Args *a) {
        _cleanup_close_ int patch_fd = -1;
        json_object *results = a->json ? json_object_new_array() : NULL;
        int worst = 0;

        if (open_patch(a->target, &patch_fd) < 0)
                return 1;
        for (size_t i = 0; i < a->n_pids; i++) {
                UlpReport rep = {};
                int error = ulp_check(a->pids[i], patch_fd, base_name(a->target), &rep);

                print_check(a, a->pids[i], &rep, error, results);
                ulp_report_done(&rep);
                if (error < 0 && worst == 0)
                        worst = error;
        }
        print_json_results(results);
        return worst == 0 ? 0 : 1;
}


/* Whether ulp_rels record i is the first naming its object and symbol; then also how
 * many fields name them. */
static bool rel_first(const UlpPatchInfo *m, size_t i, const char **object, const char **symbol, size_t *fields) {
        ulp_patch_info_rel(m, i, object, symbol);
        *fields = 0;
        for (size_t j = 0; j < ulp_patch_info_n_rels(m); j++) {
                const char *o2, *s2;
                ulp_patch_info_rel(m, j, &o2, &s2);
                if (strcmp(o2, *object) != 0 || strcmp(s2, *symbol) != 0)
                        continue;
                if (j < i)
                        return false;
                (*fields)++;
        }
        return true;
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
        json_object *uses = json_object_new_array();
        for (size_t i = 0; i < ulp_patch_info_n_rels(m); i++) {
                const char *object, *symbol;
                size_t fields;
                if (!rel_first(m, i, &object, &symbol, &fields))
                        continue;
                json_object *f = json_object_new_object();
                json_object_object_add(f, "object", json_object_new_string(object));
                json_object_object_add(f, "symbol", json_object_new_string(symbol));
                json_object_object_add(f, "fields", json_object_new_int64((int64_t)fields));
                json_object_array_add(uses, f);
        }
        json_object_object_add(o, "functions", fs);
        json_object_object_add(o, "refs", rs);
        json_object_object_add(o, "uses", uses);
        json_object_object_add(o, "callbacks", json_object_new_int((int)ulp_patch_info_n_callbacks(m)));
        json_object_object_add(o, "relr", json_object_new_int64((int64_t)ulp_patch_info_n_relr(m)));
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
        for (size_t i = 0; i < ulp_patch_info_n_rels(m); i++) {
                const char *object, *symbol;
                size_t fields;
                if (rel_first(m, i, &object, &symbol, &fields))
                        printf("uses:        %s:%s (%zu field%s)\n", object_or_main(object), symbol, fields,
                               fields == 1 ? "" : "s");
        }
        for (size_t i = 0; i < ulp_patch_info_n_pins(m); i++) {
                const char *object, *pin;
                ulp_patch_info_pin(m, i, &object, &pin);
                printf("pinned:      %s build-id %s\n", object_or_main(object), pin);
        }
        for (size_t i = 0; i < ulp_patch_info_n_callbacks(m); i++)
                printf("callbacks:   %s\n", object_or_main(ulp_patch_info_callbacks_object(m, i)));
        if (ulp_patch_info_n_relr(m))
                printf("relr:        %zu packed relative relocations (DT_RELR)\n", ulp_patch_info_n_relr(m));
}

static int direct_info(const Args *a) {
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

__attribute__((visibility("default"))) int ulpctl_direct_main(unsigned abi, const Args *a, const char *verb) {
        if (abi != ULPCTL_DIRECT_ABI) {
                fprintf(stderr, "ulpctl: %s does not match this ulpctl (interface %u, expected %u)\n",
                        ULPCTL_DIRECT_MODULE, abi, ULPCTL_DIRECT_ABI);
                return 1;
        }
        if (strcmp(verb, "info") == 0)
                return direct_info(a);
        if (strcmp(verb, "status") == 0)
                return direct_status(a);
        if (strcmp(verb, "check") == 0)
                return direct_check(a);
        return do_apply_or_revert(a, strcmp(verb, "apply") == 0);
}
