/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What both pieces of ulpctl print and share (ulpctl.h).
 */

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/report-json.h"
#include "daemon/ulpctl.h"

int exit_code_for(int error) {
        if (error == 0)
                return 0;
        return error == -ETIMEDOUT ? EXIT_TIMEDOUT : 1;
}

const char *base_name(const char *path) {
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

void print_report(pid_t pid, const char *verb, const UlpReport *r, int error) {
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

void print_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

int open_patch(const char *path, int *ret_fd) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                fprintf(stderr, "ulpctl: cannot open the patch file %s: %s\n", path,
                        e == ENOENT ? "there is no such file" :
                        e == EACCES || e == EPERM ? "this user may not read it" :
                        e == ENOTDIR ? "a directory on its path is not one" : strerror(e));
                return -e;
        }
        *ret_fd = fd;
        return 0;
}

bool looks_like_file(const char *s) {
        return strchr(s, '/') || (strlen(s) > 3 && strcmp(s + strlen(s) - 3, ".so") == 0);
}

void progress(pid_t pid, unsigned switched, unsigned total, const UlpStraggler *worst, void *userdata) {
        if (!isatty(STDERR_FILENO))
                return;
        /* \033[K: what a longer line before left to the right goes */
        fprintf(stderr, "\r  process %d: %u/%u threads switched", pid, switched, total);
        if (worst)
                fprintf(stderr, "; waiting for thread %d (%s) in %s", worst->tid, worst->comm, worst->function);
        fputs("\033[K", stderr);
}

void progress_done(void) {
        if (isatty(STDERR_FILENO))
                fputs("\r\033[K", stderr);
}

UlpOptions options_of(const Args *a) {
        /* An unprivileged caller acts on any valid block in the processes the kernel lets it
         * trace (its own); root only on blocks ulp provably made (docs/control-block.md). */
        return (UlpOptions) { .timeout_ms = a->timeout_ms, .callback_timeout_ms = a->callback_timeout_ms,
                              .force = a->force, .global = a->global,
                              .return_trap = a->return_trap, .trust_unsigned = geteuid() != 0 };
}


/* When and for whom it was applied, when the control block knows. */
static void print_applied(const UlpPatchStatus *p) {
        time_t t = (time_t)(p->applied_ns / 1000000000ULL);
        char when[32];
        struct tm tm;

        if (!p->applied_ns || !gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm))
                return;
        printf(", applied %s by uid %u", when, (unsigned) p->applied_uid);
}

static void print_shadow_human(const UlpProcessStatus *s) {
        if (s->shadow_refused)
                printf("  shadow variables: counters refused (not those of ulp's runtime)\n");
        else if (s->has_shadow)
                printf("  shadow variables: %" PRIu64 " (%" PRIu64 " bytes; the runtime holds %" PRIu64 " KiB)\n",
                       s->shadow_variables, s->shadow_bytes, s->shadow_mapped / 1024);
}

static void print_status_human(const Args *a, const UlpProcessStatus *s, size_t n) {
        if (n == 0 && a->n_pids)
                printf("process %d carries no ulp state\n", a->pids[0]);
        else if (n == 0)
                printf(a->all ? "no process carries ulp state\n" : "no process carries ulp patches\n");
        for (size_t i = 0; i < n; i++) {
                if (s[i].problem[0]) {
                        bool large = strncmp(s[i].problem, STATUS_TOO_LARGE, strlen(STATUS_TOO_LARGE)) == 0;

                        printf("process %d (%s): %s%s\n", s[i].pid, s[i].comm,
                               large ? "" : "ulp control block refused: ", s[i].problem);
                        continue;
                }
                printf("process %d (%s)%s\n", s[i].pid, s[i].comm,
                       s[i].trusted ? "" : " [control block not signed by this machine's ulp]");
                for (size_t j = 0; j < s[i].n_patches; j++) {
                        const UlpPatchStatus *p = &s[i].patches[j];
                        printf("  %s: %s%s%s%s", p->name, ulp_patch_state_to_string(p->state), p->forced ? ", forced" : "",
                               p->replace ? ", replace" : "", p->code_mapped ? ", its code still mapped" : "");
                        print_applied(p);
                        putchar('\n');
                        for (size_t k = 0; k < p->n_funcs; k++)
                                printf("    %s%s%s\n", p->funcs[k].object[0] ? p->funcs[k].object : "",
                                       p->funcs[k].object[0] ? ":" : "", p->funcs[k].symbol);
                        for (size_t k = 0; k < p->n_late_objects; k++)
                                printf("%s%s%s", k == 0 ? "    late objects: " : ", ", p->late_objects[k],
                                       k + 1 == p->n_late_objects ? "\n" : "");
                        for (size_t k = 0; k < p->n_stragglers; k++)
                                printf("    straggler: thread %d (%s) in %s\n", p->stragglers[k].tid,
                                       p->stragglers[k].comm, p->stragglers[k].function);
                }
                print_shadow_human(&s[i]);
        }
}

static const char *json_str(json_object *o, const char *k) {
        json_object *v;
        return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) ?
               json_object_get_string(v) : NULL;
}

/* ulpd's patch directory: each file, applied as which patch or why not. */
static void print_patch_dir_human(json_object *pd) {
        json_object *files;
        const char *err = json_str(pd, "error");

        printf("patch directory %s%s%s\n", json_str(pd, "path") ?: "?", err ? " refused: " : ":", err ?: "");
        if (!json_object_object_get_ex(pd, "files", &files) || !json_object_is_type(files, json_type_array))
                return;
        for (size_t i = 0; i < json_object_array_length(files); i++) {
                json_object *f = json_object_array_get_idx(files, i);
                const char *patch = json_str(f, "patch");
                if (patch)
                        printf("  %s: applied as %s\n", json_str(f, "file") ?: "?", patch);
                else
                        printf("  %s: not applied: %s\n", json_str(f, "file") ?: "?", json_str(f, "error") ?: "?");
        }
}

/* Worth a line by default: a patch applied or on its way, or a block that could not be
 * read (it may hold either). Reverted records alone are history. */
static bool status_worth_showing(const UlpProcessStatus *s) {
        if (s->problem[0])
                return true;
        for (size_t j = 0; j < s->n_patches; j++)
                if (s->patches[j].state != ULP_PATCH_UNPATCHED)
                        return true;
        return false;
}

void print_status(const Args *a, const UlpProcessStatus *s, size_t n, const StatusExtra *x) {
        _cleanup_free_ UlpProcessStatus *v = calloc(n ?: 1, sizeof(*v));
        bool all = a->all || a->n_pids;
        size_t k = 0;

        if (!v) {
                fprintf(stderr, "ulpctl: out of memory\n");
                return;
        }
        /* shallow copies: the selection only reads what s points to */
        for (size_t i = 0; i < n; i++)
                if (all || status_worth_showing(&s[i]))
                        v[k++] = s[i];
        if (a->prometheus)
                print_prometheus(v, k, x);
        else if (a->json) {
                json_object *o = status_to_json(v, k);
                if (o && x && x->patch_dir && !a->n_pids)
                        json_object_object_add(o, "patch_dir", json_object_get(x->patch_dir));
                print_json(o);
        } else {
                print_status_human(a, v, k);
                if (x && x->patch_dir && !a->n_pids)
                        print_patch_dir_human(x->patch_dir);
        }
}

void print_check(const Args *a, pid_t pid, const UlpReport *rep, int error, json_object *results) {
        if (results) {
                json_object *j = report_to_json(rep, error);
                if (j)
                        json_object_object_add(j, "pid", json_object_new_int(pid));
                json_object_array_add(results, j);
        } else if (error == 0) {
                for (size_t i = 0; i < rep->n_warnings; i++)
                        fprintf(stderr, "warning: %s\n", rep->warnings[i]);
                printf("%s would apply to process %d now (%u threads checked)\n", rep->patch_name, pid,
                       rep->threads);
        } else
                print_report(pid, "check", rep, error);
}

void print_json_results(json_object *results) {
        json_object *o;

        if (!results)
                return;
        if (json_object_array_length(results) == 1) {
                o = json_object_get(json_object_array_get_idx(results, 0));
                json_object_put(results);
        } else {
                o = json_object_new_object();
                json_object_object_add(o, "results", results);
        }
        print_json(o);
}
