/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What both pieces of ulpctl print and share (ulpctl.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
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
                fprintf(stderr, "ulpctl: cannot open %s: %s\n", path, strerror(errno));
                return -errno;
        }
        *ret_fd = fd;
        return 0;
}

bool looks_like_file(const char *s) {
        return strchr(s, '/') || (strlen(s) > 3 && strcmp(s + strlen(s) - 3, ".so") == 0);
}

void progress(pid_t pid, unsigned switched, unsigned total, void *userdata) {
        if (isatty(STDERR_FILENO))
                fprintf(stderr, "\r  process %d: %u/%u threads switched", pid, switched, total);
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


void print_status_human(const UlpProcessStatus *s, size_t n) {
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
                        printf("  %s: %s%s%s%s\n", p->name, ulp_patch_state_to_string(p->state), p->forced ? ", forced" : "",
                               p->replace ? ", replace" : "",
                               p->code_mapped ? ", its code still mapped" : "");
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
        }
}


void print_check(const Args *a, const UlpReport *rep, int error) {
        if (a->json)
                print_json(report_to_json(rep, error));
        else if (error == 0) {
                for (size_t i = 0; i < rep->n_warnings; i++)
                        fprintf(stderr, "warning: %s\n", rep->warnings[i]);
                printf("%s would apply to process %d now (%u threads checked)\n", rep->patch_name, a->pids[0],
                       rep->threads);
        } else
                print_report(a->pids[0], "check", rep, error);
}
