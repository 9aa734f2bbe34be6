/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpctl status --prometheus: the state in the Prometheus text exposition format
 * (version 0.0.4), for node_exporter's textfile collector (docs/monitoring.md). Every
 * label value comes from a process (its name) or a patch file (its name): escaped, never
 * trusted to be tame.
 */

#include <stdio.h>
#include <string.h>

#include "daemon/ulpctl.h"

/* A label value as the format wants it: backslash, double quote and newline escaped. */
static void put_label(const char *key, const char *v, bool last) {
        printf("%s=\"", key);
        for (const char *c = v; *c; c++) {
                if (*c == '\\' || *c == '"')
                        printf("\\%c", *c);
                else if (*c == '\n')
                        fputs("\\n", stdout);
                else
                        putchar(*c);
        }
        fputs(last ? "\"}" : "\",", stdout);
}

/* A string field of an object from ulpd, "" when it is anything else. */
static const char *str_of(json_object *o, const char *k) {
        json_object *v;
        return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) ?
               json_object_get_string(v) : "";
}

static void header(const char *name, const char *type, const char *help) {
        printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void process_labels(const UlpProcessStatus *p) {
        char pid[16];

        snprintf(pid, sizeof(pid), "%d", (int) p->pid);
        putchar('{');
        put_label("pid", pid, false);
        put_label("comm", p->comm, false);
}

void print_prometheus(const UlpProcessStatus *s, size_t n, const StatusExtra *x) {
        unsigned transitions = 0, refused = 0;

        header("ulp_patch", "gauge",
               "A patch in a process: 1 for each process, patch and state (patched, transition, "
               "unpatched); forced=\"true\" when some thread was switched without the check.");
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < s[i].n_patches; j++) {
                        const UlpPatchStatus *p = &s[i].patches[j];
                        fputs("ulp_patch", stdout);
                        process_labels(&s[i]);
                        put_label("patch", p->name, false);
                        put_label("state", ulp_patch_state_to_string(p->state), false);
                        put_label("forced", p->forced ? "true" : "false", true);
                        puts(" 1");
                        transitions += p->state == ULP_PATCH_TRANSITION;
                }
        header("ulp_patch_applied_timestamp_seconds", "gauge",
               "When a patch was applied to a process (seconds since the epoch), with the uid it was applied for.");
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < s[i].n_patches; j++) {
                        const UlpPatchStatus *p = &s[i].patches[j];
                        char uid[16];
                        if (!p->applied_ns || p->state == ULP_PATCH_UNPATCHED)
                                continue;
                        snprintf(uid, sizeof(uid), "%u", (unsigned) p->applied_uid);
                        fputs("ulp_patch_applied_timestamp_seconds", stdout);
                        process_labels(&s[i]);
                        put_label("patch", p->name, false);
                        put_label("uid", uid, true);
                        printf(" %llu\n", (unsigned long long) (p->applied_ns / 1000000000ULL));
                }
        header("ulp_stragglers", "gauge",
               "Threads that held a transition up at its last pass, for each process and patch in transition.");
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < s[i].n_patches; j++) {
                        const UlpPatchStatus *p = &s[i].patches[j];
                        if (p->state != ULP_PATCH_TRANSITION)
                                continue;
                        fputs("ulp_stragglers", stdout);
                        process_labels(&s[i]);
                        put_label("patch", p->name, true);
                        printf(" %zu\n", p->n_stragglers);
                }
        header("ulp_transitions_in_progress", "gauge", "Transitions in progress in the processes listed.");
        printf("ulp_transitions_in_progress %u\n", transitions);
        for (size_t i = 0; i < n; i++)
                refused += s[i].problem[0] != 0;
        header("ulp_control_blocks_refused", "gauge",
               "Processes whose ulp control block could not be used (malformed, of another version, kept busy).");
        printf("ulp_control_blocks_refused %u\n", refused);
        if (x && x->n_missing) {
                header("ulp_patch_missing", "gauge",
                       "Processes that load an object the patch targets (by build-id) but do not carry it, "
                       "or carry it forced or in transition.");
                for (size_t i = 0; i < x->n_missing; i++) {
                        fputs("ulp_patch_missing{", stdout);
                        put_label("patch", x->missing_patch[i], true);
                        printf(" %zu\n", x->missing[i]);
                }
        }
        if (x && x->patch_dir) {
                json_object *files;
                header("ulpd_patch_dir_file", "gauge",
                       "A file of ulpd's patch directory: 1 for each file, with its state (applied, failed).");
                if (json_object_object_get_ex(x->patch_dir, "files", &files) &&
                    json_object_is_type(files, json_type_array))
                        for (size_t i = 0; i < json_object_array_length(files); i++) {
                                json_object *f = json_object_array_get_idx(files, i);
                                fputs("ulpd_patch_dir_file{", stdout);
                                put_label("file", str_of(f, "file"), false);
                                put_label("state", str_of(f, "state"), true);
                                puts(" 1");
                        }
                header("ulpd_patch_dir_refused", "gauge",
                       "1 when ulpd refuses its patch directory itself (not root's, or writable by others).");
                printf("ulpd_patch_dir_refused %d\n", json_object_object_get_ex(x->patch_dir, "error", NULL));
        }
        if (x && x->have_daemon) {
                header("ulpd_transitions_failed_total", "counter",
                       "Transitions ulpd ran that failed (refused, reversed at their timeout, or cancelled), "
                       "since it started.");
                printf("ulpd_transitions_failed_total %llu\n", (unsigned long long) x->transitions_failed);
                header("ulpd_transitions_total", "counter", "Transitions ulpd ran to their end, since it started.");
                printf("ulpd_transitions_total %llu\n", (unsigned long long) x->transitions_total);
                header("ulpd_invariant_failures_total", "counter",
                       "Broken invariants of the core ulpd saw (each one a bug of ulp), since it started.");
                printf("ulpd_invariant_failures_total %llu\n", (unsigned long long) x->invariant_failures);
        }
}
