/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Objects loaded after a patch was applied: the kernel patches a module when it comes
 * (klp_module_coming from the module notifier); a process has no such event for
 * dlopen(). So ulpd keeps a short list of the processes it knows to carry pending
 * objects (learned when one of its own operations finished, and at startup from the
 * processes carrying ulp state; an operation whose block names no late object, the
 * usual end, is not read again: ulp_op_has_late()) and, only while that list is not
 * empty, looks at them once a second: their /proc/PID/maps is read and searched for
 * the late objects' names; only when one shows up (or the set of mapped files
 * changed, for an object known by a DT_SONAME unlike its file name) ulp_apply_late()
 * patches it. Never a scan of all of /proc. A process stays on the list while an
 * object that came late is loaded: when the set of mapped files changes and one of
 * them is no longer there (dlclose; the kernel's klp_module_going), ulp_apply_late()
 * runs its unpatch callbacks and the object is waited for again.
 *
 * ulp_apply_late() stops the target for a moment, like the code write of an apply;
 * it runs in the loop, which is single-threaded, so it cannot overlap a transition of
 * ulpd in the same target, and a target with a Job running is skipped until it is done.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>

#include "common/errno-clause.h"
#include "common/list.h"
#include "common/macro.h"
#include "daemon/ulpd.h"

#define PENDING_WATCH_USEC (1000ULL * 1000ULL)
#define PENDING_OBJECTS_MAX 16
#define PENDING_BUSY_WARN 10   /* consecutive -EBUSY before it is worth a warning */

struct LateProc {
        LateProc *next;
        pid_t pid;
        char objects[PENDING_OBJECTS_MAX][64];   /* what status lists as pending */
        char patches[PENDING_OBJECTS_MAX][128];  /* the patch each one belongs to */
        size_t n_objects;
        char loaded[PENDING_OBJECTS_MAX][64];    /* came late and patched: watched for unloading */
        char loaded_patches[PENDING_OBJECTS_MAX][128];
        size_t n_loaded;
        uint64_t maps_hash;      /* of the mapped file names at the last look */
        bool hashed;
        unsigned busy;           /* consecutive tries that found threads in the way */
};

static LateProc *pending_find(Manager *m, pid_t pid) {
        LIST_FOREACH(p, m->late)
                if (p->pid == pid)
                        return p;
        return NULL;
}

static void pending_drop(Manager *m, pid_t pid) {
        for (LateProc **pp = &m->late; *pp; pp = &(*pp)->next)
                if ((*pp)->pid == pid) {
                        LateProc *p = *pp;
                        *pp = p->next;
                        free(p);
                        m->n_late--;
                        return;
                }
}

/* Arms the watch timer when some process has late objects and it is not armed. */
static void pending_arm(Manager *m) {
        int enabled = SD_EVENT_OFF;

        if (!m->late || !m->late_objects_timer)
                return;
        (void) sd_event_source_get_enabled(m->late_objects_timer, &enabled);
        if (enabled != SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_time_relative(m->late_objects_timer, PENDING_WATCH_USEC);
        (void) sd_event_source_set_enabled(m->late_objects_timer, SD_EVENT_ONESHOT);
}

/* Reads pid's late objects from its control block into p, those waiting and those loaded.
 * Returns how many in all, or -errno (-ENOENT: pid carries no ulp state, -ESRCH: gone). */
static int pending_read(pid_t pid, LateProc *p) {
        UlpProcessStatus s = {};
        UlpReport rep = {};
        int r;

        r = ulp_status(pid, &s, &rep);
        ulp_report_done(&rep);
        if (r < 0)
                return r;
        p->n_objects = 0;
        p->n_loaded = 0;
        for (size_t i = 0; i < s.n_patches; i++) {
                const UlpPatchStatus *ps = &s.patches[i];
                if (ps->state == ULP_PATCH_UNPATCHED)
                        continue;
                for (size_t k = 0; k < ps->n_late_objects && p->n_objects < PENDING_OBJECTS_MAX; k++) {
                        snprintf(p->objects[p->n_objects], sizeof(p->objects[0]), "%s", ps->late_objects[k]);
                        snprintf(p->patches[p->n_objects], sizeof(p->patches[0]), "%s", ps->name);
                        p->n_objects++;
                }
                for (size_t k = 0; k < ps->n_loaded_late && p->n_loaded < PENDING_OBJECTS_MAX; k++) {
                        snprintf(p->loaded[p->n_loaded], sizeof(p->loaded[0]), "%s", ps->loaded_late[k]);
                        snprintf(p->loaded_patches[p->n_loaded], sizeof(p->loaded_patches[0]), "%s", ps->name);
                        p->n_loaded++;
                }
        }
        ulp_status_done(&s);
        return (int) (p->n_objects + p->n_loaded);
}

static void pending_copy(LateProc *p, const LateProc *from) {
        memcpy(p->objects, from->objects, sizeof(p->objects));
        memcpy(p->patches, from->patches, sizeof(p->patches));
        p->n_objects = from->n_objects;
        memcpy(p->loaded, from->loaded, sizeof(p->loaded));
        memcpy(p->loaded_patches, from->loaded_patches, sizeof(p->loaded_patches));
        p->n_loaded = from->n_loaded;
}

bool pending_watched(Manager *m, pid_t pid) {
        return pending_find(m, pid) != NULL;
}

void pending_learn(Manager *m, pid_t pid) {
        LateProc *p = pending_find(m, pid), tmp = {};
        int r;

        if (pid == m->self)
                return;
        r = pending_read(pid, &tmp);
        if (r <= 0) {
                if (p)
                        pending_drop(m, pid);
                return;
        }
        if (!p) {
                p = calloc(1, sizeof(*p));
                if (!p)
                        return;
                p->pid = pid;
                p->next = m->late;
                m->late = p;
                m->n_late++;
                for (size_t i = 0; i < tmp.n_objects; i++)
                        log_full(LOG_INFO, pid, tmp.patches[i], NULL,
                                 "pid %d: %s of patch %s is not loaded yet; it is patched when the process loads it",
                                 (int) pid, tmp.objects[i], tmp.patches[i]);
        }
        pending_copy(p, &tmp);
        pending_arm(m);
}

/* Does the file name base designate object? The name itself, or a versioned file of
 * it ("libfoo.so.1" for "libfoo.so", "libfoo.so.1.2.3" for "libfoo.so.1"). */
static bool basename_matches(const char *base, const char *object) {
        size_t l = strlen(object);

        return strncmp(base, object, l) == 0 && (base[l] == 0 || base[l] == '.');
}

/* The cheap look: 1 when a late object of p is mapped in p->pid by file name, or
 * the set of mapped files changed since the last look and one of them turns out to be
 * a late object by its DT_SONAME, or an object that came late is no longer there; 0
 * when none is; -errno (-ESRCH: gone). */
typedef struct PendingLook {
        const LateProc *p;
        uint64_t hash;           /* FNV-1a over the mapped file names */
        bool found;
} PendingLook;

static int pending_look_mapping(const char *path, uint64_t start, void *userdata) {
        PendingLook *lk = userdata;
        const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;

        for (const char *s = path; *s; s++)
                lk->hash = (lk->hash ^ (unsigned char) *s) * 1099511628211ULL;
        lk->hash = (lk->hash ^ start) * 1099511628211ULL;
        for (size_t k = 0; k < lk->p->n_objects && !lk->found; k++)
                lk->found = lk->p->objects[k][0] && basename_matches(base, lk->p->objects[k]);
        return 0;
}

static int pending_look(LateProc *p) {
        _cleanup_(ulp_objects_freep) UlpObjects *objs = NULL;
        PendingLook lk = { .p = p, .hash = 1469598103934665603ULL };
        bool first;
        int r;

        r = ulp_exec_mappings(p->pid, pending_look_mapping, &lk);
        if (r < 0)
                return r;
        first = !p->hashed;
        if (lk.found || (!first && lk.hash == p->maps_hash))
                return lk.found;
        p->maps_hash = lk.hash;
        p->hashed = true;
        /* First look, or something was loaded or unloaded: an object may be known by its
         * DT_SONAME only. */
        r = ulp_objects_read(p->pid, &objs);
        if (r < 0)
                return r == -ENOMEM ? 0 : r;
        for (size_t k = 0; k < p->n_objects; k++)
                if (p->objects[k][0] && ulp_objects_find(objs, p->objects[k], NULL) > 0)
                        return 1;
        for (size_t k = 0; k < p->n_loaded; k++)
                if (p->loaded[k][0] && ulp_objects_find(objs, p->loaded[k], NULL) <= 0)
                        return 1;
        return 0;
}

/* Patches what p's process has loaded of its late objects, and logs it. Returns
 * false when the process is to be forgotten (gone, nothing pending any more, or an
 * error that trying again will not cure). */
static bool pending_try(Manager *m, LateProc *p) {
        LateProc after = {};
        UlpReport rep = {};
        const char *patch;
        int r, left;

        r = pending_look(p);
        if (r == 0)
                return true;
        if (r < 0) {
                if (r != -ESRCH && r != -ENOENT)
                        log_full(LOG_DEBUG, p->pid, NULL, NULL, "pid %d: cannot read its mappings: %s",
                                 (int) p->pid, process_errno_clause(r));
                return false;   /* gone, or no longer ours to read */
        }

        r = ulp_apply_late(p->pid, &rep);
        patch = rep.patch_name[0] ? rep.patch_name : p->patches[0];
        if (r == -EBUSY) {
                /* threads in the old code, or a transition another tool drives: later. The
                 * next look reads the objects again: an unloaded object is seen only
                 * there (the names mapped stay the same). */
                p->busy++;
                p->hashed = false;
                log_full(p->busy == PENDING_BUSY_WARN ? LOG_WARNING : LOG_DEBUG, p->pid, patch, NULL,
                         "pid %d: cannot patch the objects it loaded yet: %s", (int) p->pid,
                         rep.message[0] ? rep.message : process_errno_clause(r));
                ulp_report_done(&rep);
                return true;
        }
        p->busy = 0;
        if (r < 0) {
                if (r != -ENOENT && r != -ESRCH)
                        log_full(LOG_WARNING, p->pid, patch, NULL,
                                 "pid %d: patching the objects it loaded after patch %s failed: %s",
                                 (int) p->pid, patch, rep.message[0] ? rep.message : process_errno_clause(r));
                ulp_report_done(&rep);
                return false;
        }
        ulp_report_done(&rep);
        if (r == 0)
                return true;    /* a name matched, but not the object the patch means */

        left = pending_read(p->pid, &after);
        for (size_t k = 0; k < p->n_objects; k++) {
                bool still = false;
                for (size_t i = 0; left > 0 && i < after.n_objects; i++)
                        still = still || (strcmp(after.objects[i], p->objects[k]) == 0 &&
                                          strcmp(after.patches[i], p->patches[k]) == 0);
                if (!still)
                        log_full(LOG_INFO, p->pid, p->patches[k], NULL,
                                 "pid %d loaded %s: patch %s now covers it too", (int) p->pid,
                                 p->objects[k], p->patches[k]);
        }
        for (size_t k = 0; k < p->n_loaded; k++) {
                bool again = false;
                for (size_t i = 0; left > 0 && i < after.n_objects; i++)
                        again = again || (strcmp(after.objects[i], p->loaded[k]) == 0 &&
                                          strcmp(after.patches[i], p->loaded_patches[k]) == 0);
                if (again)
                        log_full(LOG_INFO, p->pid, p->loaded_patches[k], NULL,
                                 "pid %d unloaded %s: its unpatch callbacks of patch %s ran; it is patched "
                                 "again if the process loads it again", (int) p->pid, p->loaded[k],
                                 p->loaded_patches[k]);
        }
        if (left <= 0)
                return false;
        pending_copy(p, &after);
        return true;
}

/* Once a second while some process has late objects: one cheap look at each. */
static int pending_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        LateProc *next;

        for (LateProc *p = m->late; p; p = next) {
                next = p->next;
                if (manager_pid_busy(m, p->pid))
                        continue;    /* one operation per target at a time: after its Job */
                if (!pending_try(m, p))
                        pending_drop(m, p->pid);
        }
        pending_arm(m);
        return 0;
}

int pending_setup(Manager *m) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r;

        r = sd_event_add_time_relative(m->event, &m->late_objects_timer, CLOCK_MONOTONIC,
                                       PENDING_WATCH_USEC, 100 * 1000, pending_on_timer, m);
        if (r < 0)
                return log_error_errno(r, "cannot set up the watch for libraries loaded later: %s", strerror(-r));
        (void) sd_event_source_set_enabled(m->late_objects_timer, SD_EVENT_OFF);
        if (m->no_recover)
                return 0;   /* tests on a shared machine: only what this ulpd applied */
        r = ulp_list_processes(&pids, &n);
        if (r < 0) {
                log_warning("cannot look for patches waiting for libraries: %s", strerror(-r));
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                bool wanted = m->n_recover_only == 0;

                for (size_t k = 0; k < m->n_recover_only; k++)
                        wanted = wanted || m->recover_only[k] == pids[i];
                if (wanted)
                        pending_learn(m, pids[i]);
        }
        return 0;
}

void pending_done(Manager *m) {
        while (m->late)
                pending_drop(m, m->late->pid);
        m->late_objects_timer = sd_event_source_disable_unref(m->late_objects_timer);
}
