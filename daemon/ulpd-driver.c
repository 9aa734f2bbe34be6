/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The driver threads (docs/daemon.md, "Drivers"). An operation's start waits for the
 * target's threads to be scheduled several times (seize, stop, the load, resume): run
 * one after another in the loop, a thousand targets wait a thousand times in a row. A
 * bounded pool of drivers overlaps those waits.
 *
 * Jobs wait in one queue; a driver with room (fewer than DRIVER_JOBS_MAX operations)
 * takes the next, and keeps it from its start to its end: ptrace requests must come from
 * the thread that seized the target, and a tracer thread that exits lets its tracees
 * go, so drivers live as long as ulpd. A driver interleaves the steps of its jobs by
 * their due times, so a job waiting for a straggler holds up none of them, and the
 * queue goes to the other drivers meanwhile. Bounding the operations under way bounds
 * their memory (each holds a copy of its target's control block).
 *
 * Everything else stays the loop's: clients, replies, logs, limits, the lists of jobs.
 * A driver tells the loop what happened (started, progress, ended, the time it took)
 * through each job's news under m->post_lock and an eventfd; it never holds a lock
 * across a ptrace request and never touches a client.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/report-json.h"
#include "daemon/ulpd.h"

struct Driver {
        Manager *m;
        pthread_t thread;
        pthread_cond_t wake;     /* a job queued for it, or stop */
        Driver *idle_next;       /* in m->idle: waiting, with room for a job */
        bool in_idle;
        unsigned active;         /* jobs it took and did not end (under m->drv_lock) */
        /* the uids but root it holds jobs of, and how many (under m->drv_lock): a uid
         * occupies a bounded number of drivers (driver_may_take()) */
        struct DriverUid {
                uid_t uid;
                unsigned n;
        } uids[DRIVER_JOBS_MAX];
        /* pids of which it still traces threads left late when their operation ended
         * (under m->drv_lock; written by it only): their next jobs are its, to take the
         * threads over; another driver would find them traced by another (EBUSY) */
        pid_t late_pids[16];
        size_t n_late_pids;
};

/* The driver this thread is. */
static _Thread_local Driver *self_driver;

/* The signal of the drivers' wait timers (ulp_wait_timer_start()): sent to one driver
 * only, unblocked in the drivers alone; its handler does nothing and is installed
 * without SA_RESTART, so that it ends the driver's wait for its tracee. Each wait then
 * sleeps until its own tracee reports, where a wait on SIGCHLD woke for whichever
 * tracee of ulpd stopped (docs/performance.md). Without a timer the waits nap as before. */
#define DRIVER_WAIT_SIGNAL (SIGRTMIN + 1)

static void driver_wait_signal(int sig) {
        (void) sig;
}

/* Threads a finished operation asked to stop that had not stopped are this thread's
 * to let go (see ulpd.c): looked at so often while any is left. */
#define DRIVER_LATE_POLL_USEC (5ULL * 1000ULL)

/* A held job's next step waits for the hold's end; a held start is due at once, to be
 * refused (job_run_start()). */
static uint64_t job_due(Job *j) {
        return j->op ? MAX(j->due, atomic_load(&j->hold_until)) : j->due;
}

void job_hold(Job *j, uint64_t t) {
        uint64_t old = atomic_load(&j->hold_until);

        while (old < t && !atomic_compare_exchange_weak(&j->hold_until, &old, t))
                ;
}

/* Tells the loop: merges into j's news, and wakes the loop when no news was waiting. */
static void news_post(Job *j, const JobNews *n, bool progress) {
        Manager *m = j->m;
        bool wake;
        JobNews *o = &j->news;

        pthread_mutex_lock(&m->post_lock);
        o->started |= n->started;
        o->finished |= n->finished;
        o->result = n->result;
        o->charge_usec += n->charge_usec;
        o->no_late = n->no_late;
        if (progress) {
                o->switched = n->switched;
                o->total = n->total;
                o->has_worst = n->has_worst;
                o->worst = n->worst;
        }
        if (n->started)
                memcpy(o->patch_name, n->patch_name, sizeof(o->patch_name));
        if (n->started_result)
                o->started_result = n->started_result;
        wake = !m->posted;
        if (!j->posted) {
                j->posted = true;
                j->post_next = m->posted;
                m->posted = j;
        }
        pthread_mutex_unlock(&m->post_lock);
        if (wake)
                (void) eventfd_write(m->post_fd, 1);
}

static void news_progress(Job *j, JobNews *n) {
        ulp_op_progress(j->op, &n->switched, &n->total);
        n->has_worst = n->switched < n->total && ulp_op_worst_straggler(j->op, &n->worst);
}

static void job_close_fds(Job *j) {
        if (j->patch_fd >= 0)
                close(j->patch_fd);
        if (j->auth_fd >= 0)
                close(j->auth_fd);
        j->patch_fd = j->auth_fd = -1;
        j->opts.auth_mem_fd = -1;
}

static int job_run_start(Job *j) {
        if (!j->sync_start && j->uid != 0 && atomic_load(&j->hold_until) > clock_usec()) {
                /* its uid used its share meanwhile: refused as the loop refuses it */
                j->refused = true;
                snprintf(j->report.message, sizeof(j->report.message),
                         "not started: uid %u used its share of ulpd's time; try again in a few seconds",
                         (unsigned) j->uid);
                return -EAGAIN;
        }
        if (j->kind == JOB_APPLY)
                return ulp_op_apply(j->pid, j->patch_fd, j->start_name, &j->opts, &j->op, &j->report);
        if (j->kind == JOB_REVERT)
                return ulp_op_revert(j->pid, j->start_name, &j->opts, &j->op, &j->report);
        return ulp_op_resume(j->pid, &j->opts, &j->op, &j->report);
}

/* An operation of a uid's job took the uid's whole share alone: its other jobs here wait
 * for the next window without waiting for the loop to learn it (the loop holds them on
 * every driver once the time reaches it). */
static void driver_hold_uid(const Manager *m, Job *list, uid_t uid, uint64_t took, uint64_t now) {
        if (uid == 0 || took < m->uid_share_usec)
                return;
        for (Job *k = list; k; k = k->drv_next)
                if (k->uid == uid)
                        job_hold(k, now + UID_WINDOW_USEC);
}

/* Frees j's operation: the tracer lets its tracees go, but those late ones that stay its
 * own until they stop (docs/stops.md); the next job on j's pid is then this driver's,
 * pinned before the end is told (a new request may follow it at once). */
static void driver_free_op(Job *j) {
        Driver *d = self_driver;
        Manager *m = j->m;

        ulp_op_free(j->op);
        j->op = NULL;
        if (!ulp_late_holds(j->pid) || d->n_late_pids >= ELEMENTSOF(d->late_pids))
                return;
        for (size_t i = 0; i < d->n_late_pids; i++)
                if (d->late_pids[i] == j->pid)
                        return;
        pthread_mutex_lock(&m->drv_lock);
        d->late_pids[d->n_late_pids++] = j->pid;
        m->late_pins++;
        pthread_mutex_unlock(&m->drv_lock);
}

/* After ulp_release_late(): pids whose late threads are all let go are pinned no more. */
static void driver_unpin_released(Driver *d) {
        Manager *m = d->m;

        for (size_t i = 0; i < d->n_late_pids;) {
                if (ulp_late_holds(d->late_pids[i])) {
                        i++;
                        continue;
                }
                pthread_mutex_lock(&m->drv_lock);
                d->late_pids[i] = d->late_pids[--d->n_late_pids];
                m->late_pins--;
                pthread_mutex_unlock(&m->drv_lock);
        }
}

/* Takes j (at *p) out of the driver's list, then posts its end: from then on j is the
 * loop's, which may free it at once. */
static void driver_end(Job **p, JobNews *n, int r) {
        Job *j = *p;

        *p = j->drv_next;
        j->drv_next = NULL;
        n->no_late = !ulp_op_has_late(j->op);
        driver_free_op(j);    /* here: the tracer lets its tracees go */
        n->finished = true;
        n->result = r;
        news_post(j, n, false);
}

/* The start of j (at *p). Returns true when j left the list. */
static bool driver_start(Manager *m, Job **p, Job *list) {
        Job *j = *p;
        JobNews n = {};
        uint64_t t = clock_usec(), now;
        int r;

        r = job_run_start(j);
        job_close_fds(j);
        now = clock_usec();
        n.charge_usec = now - t;
        driver_hold_uid(m, list, j->uid, now - t, now);
        if (j->sync_start) {
                if (r < 0) {
                        *p = j->drv_next;
                        j->drv_next = NULL;
                        driver_free_op(j);
                }
                /* the waiting loop takes a failed start back, unlinked, with its report */
                pthread_mutex_lock(&m->drv_lock);
                j->start_result = r;
                j->start_done = true;
                pthread_cond_broadcast(&m->drv_started);
                pthread_mutex_unlock(&m->drv_lock);
                if (r < 0)
                        return true;
        }
        if (r < 0) {
                driver_end(p, &n, r);
                return true;
        }
        n.started = true;
        memcpy(n.patch_name, j->report.patch_name, sizeof(n.patch_name));
        if (j->answer_at_start) {
                n.started_result = report_to_json(&j->report, 0);
                if (n.started_result) {
                        json_object_object_add(n.started_result, "pid", json_object_new_int(j->pid));
                        json_object_object_add(n.started_result, "started", json_object_new_boolean(true));
                }
        }
        news_progress(j, &n);
        j->news_sent = now;
        j->news_switched = n.switched;
        j->due = now;      /* the first step at once, as a step due now */
        news_post(j, &n, true);
        return false;
}

/* Runs the start or the next step of j (at *p). Returns true when j left the list. */
static bool driver_run(Manager *m, Job **p, Job *list) {
        Job *j = *p;
        JobNews n = {};
        uint64_t t, now;
        unsigned next_ms = 0;
        bool progress;
        int r;

        if (!j->op)
                return driver_start(m, p, list);
        t = clock_usec();
        r = ulp_op_step(j->op, &next_ms);
        now = clock_usec();
        n.charge_usec = now - t;
        driver_hold_uid(m, list, j->uid, now - t, now);
        if (r != 0) {
                driver_end(p, &n, r < 0 ? r : 0);
                return true;
        }
        next_ms = MAX(1u, MIN(next_ms, 5000u));
        j->due = now + (uint64_t) next_ms * 1000;
        news_progress(j, &n);
        /* progress as the loop sends it: on change, else every interval */
        progress = n.switched != j->news_switched || now >= j->news_sent + PROGRESS_INTERVAL_USEC;
        if (progress) {
                j->news_switched = n.switched;
                j->news_sent = now;
        }
        if (progress || j->uid != 0)
                news_post(j, &n, progress);
        return false;
}

/* ---- the drivers a uid occupies (docs/limits.md), all under m->drv_lock ---- */

static bool driver_holds_uid(const Driver *d, uid_t uid) {
        for (size_t i = 0; i < ELEMENTSOF(d->uids); i++)
                if (d->uids[i].n > 0 && d->uids[i].uid == uid)
                        return true;
        return false;
}

/* One job of uid more (add) or less on d. A uid but root has at most DRIVER_JOBS_MAX
 * jobs on a driver (taken only with room), so the table cannot overflow. */
static void driver_count_uid(Driver *d, uid_t uid, bool add) {
        struct DriverUid *free_entry = NULL;

        if (uid == 0)
                return;
        for (size_t i = 0; i < ELEMENTSOF(d->uids); i++) {
                struct DriverUid *e = &d->uids[i];

                if (e->n > 0 && e->uid == uid) {
                        if (add)
                                e->n++;
                        else
                                e->n--;
                        return;
                }
                if (e->n == 0 && !free_entry)
                        free_entry = e;
        }
        if (add && free_entry)
                *free_entry = (struct DriverUid) { .uid = uid, .n = 1 };
}

/* May uid's jobs go to a driver that holds none of them yet? */
static bool uid_may_occupy_more(Manager *m, uid_t uid) {
        unsigned n = 0;

        if (uid == 0)
                return true;
        for (unsigned i = 0; i < m->n_drivers; i++)
                n += driver_holds_uid(&m->drivers[i], uid);
        return n < MAX(1u, m->max_drivers / UID_DRIVERS_SHARE);
}

static bool driver_has_pin(const Driver *d, pid_t pid) {
        for (size_t k = 0; k < d->n_late_pids; k++)
                if (d->late_pids[k] == pid)
                        return true;
        return false;
}

/* The driver that still traces late threads of pid, or NULL. */
static Driver *driver_pinned(Manager *m, pid_t pid) {
        if (m->late_pins == 0)
                return NULL;
        for (unsigned i = 0; i < m->n_drivers; i++)
                if (driver_has_pin(&m->drivers[i], pid))
                        return &m->drivers[i];
        return NULL;
}

/* May d take j now? A job on a pid whose late threads a driver traces is that driver's,
 * even when full (they are few, and let go within ms of stopping). With room, root's job
 * always; another uid's only where its jobs are already, or while they occupy fewer
 * drivers than its share: a uid's callbacks spinning in later steps, or its transitions
 * waiting for stragglers, hold at most that many drivers, the others' jobs go to the
 * rest. A start the loop waits for goes anywhere. */
static bool driver_may_take(Manager *m, const Driver *d, const Job *j) {
        Driver *pin = driver_pinned(m, j->pid);

        if (pin)
                return pin == d;
        if (j->sync_start)
                return true;
        if (d->active >= DRIVER_JOBS_MAX)
                return false;
        return j->uid == 0 || driver_holds_uid(d, j->uid) || uid_may_occupy_more(m, j->uid);
}

static void driver_idle_remove(Manager *m, Driver *d) {
        for (Driver **p = &m->idle; *p; p = &(*p)->idle_next)
                if (*p == d) {
                        *p = d->idle_next;
                        d->in_idle = false;
                        return;
                }
}

/* Wakes an idle driver that may take j, the one that went idle last first (its caches
 * are the warmest). Returns false when none may. */
static bool driver_wake_idle_for(Manager *m, const Job *j) {
        for (Driver *d = m->idle; d; d = d->idle_next)
                if (driver_may_take(m, d, j)) {
                        driver_idle_remove(m, d);
                        pthread_cond_signal(&d->wake);
                        return true;
                }
        return false;
}

/* Under m->drv_lock: takes the queued jobs d may take while it has room, appending them
 * to *list, in queue order; jobs of a uid at its share of drivers stay queued. Then wakes
 * idle drivers for what it left that they may take. */
static void driver_take_queued(Driver *d, Job **list) {
        Manager *m = d->m;
        Job **last = list, *prev = NULL, *next;

        while (*last)
                last = &(*last)->drv_next;
        /* a start the loop waits for is first in the queue, and taken even when full */
        for (Job *j = m->queue; j; j = next) {
                next = j->drv_next;
                /* full: only a start the loop waits for, or a job on a pid pinned here */
                if (d->active >= DRIVER_JOBS_MAX && !j->sync_start && d->n_late_pids == 0)
                        break;
                if ((d->active >= DRIVER_JOBS_MAX && !j->sync_start && !driver_has_pin(d, j->pid)) ||
                    !driver_may_take(m, d, j)) {
                        prev = j;
                        continue;
                }
                if (prev)
                        prev->drv_next = next;
                else
                        m->queue = next;
                if (m->queue_last == j)
                        m->queue_last = prev;
                j->drv_next = NULL;
                *last = j;
                last = &j->drv_next;
                d->active++;
                driver_count_uid(d, j->uid, true);
        }
        for (Job *j = m->queue; j && m->idle; j = j->drv_next)
                (void) driver_wake_idle_for(m, j);
}

/* Under m->drv_lock: sleeps until next (UINT64_MAX: no deadline), a job queued for d, or stop. */
static void driver_sleep(Driver *d, uint64_t next) {
        Manager *m = d->m;
        struct timespec ts;

        if (d->active < DRIVER_JOBS_MAX && !d->in_idle) {
                d->idle_next = m->idle;
                m->idle = d;
                d->in_idle = true;
        }
        if (next == UINT64_MAX)
                pthread_cond_wait(&d->wake, &m->drv_lock);
        else {
                ts.tv_sec = (time_t) (next / 1000000ULL);
                ts.tv_nsec = (long) (next % 1000000ULL) * 1000;
                (void) pthread_cond_timedwait(&d->wake, &m->drv_lock, &ts);
        }
        if (d->in_idle)
                driver_idle_remove(m, d);
}

static void *driver_main(void *userdata) {
        Driver *d = userdata;
        Manager *m = d->m;
        Job *list = NULL;
        uint64_t late_at = UINT64_MAX;  /* when to look again at threads still late */

        self_driver = d;
        (void) ulp_wait_timer_start(DRIVER_WAIT_SIGNAL);
        pthread_mutex_lock(&m->drv_lock);
        for (;;) {
                uint64_t next = UINT64_MAX, now;
                unsigned ended = 0;
                uid_t ended_uids[DRIVER_JOBS_MAX];
                size_t n_ended_uids = 0;

                if (m->drivers_stop)
                        break;
                driver_take_queued(d, &list);
                for (Job *j = list; j; j = j->drv_next)
                        next = MIN(next, job_due(j));
                next = MIN(next, late_at);
                if (next > clock_usec()) {
                        driver_sleep(d, next);
                        continue;
                }
                pthread_mutex_unlock(&m->drv_lock);

                now = clock_usec();
                for (Job **p = &list; *p;) {
                        Job *j = *p;
                        uid_t uid = j->uid;   /* once it ended, j is the loop's to free */

                        if (job_due(j) > now)
                                p = &j->drv_next;
                        else if (driver_run(m, p, list)) {
                                ended++;
                                if (uid != 0 && n_ended_uids < ELEMENTSOF(ended_uids))
                                        ended_uids[n_ended_uids++] = uid;
                        } else
                                p = &j->drv_next;
                }
                /* a deadline kept, not recomputed at each wake: computed afresh it
                 * would always lie ahead, and a thread late in a vfork, stopped once
                 * its child exits, would wait for the driver's next job for good */
                late_at = ulp_release_late() > 0 ? clock_usec() + DRIVER_LATE_POLL_USEC : UINT64_MAX;
                driver_unpin_released(d);
                pthread_mutex_lock(&m->drv_lock);
                d->active -= ended;
                for (size_t i = 0; i < n_ended_uids; i++)
                        driver_count_uid(d, ended_uids[i], false);
        }
        pthread_mutex_unlock(&m->drv_lock);
        /* ulpd stops: each operation stays in its target, consistent, for the next ulpd */
        for (Job *j = list; j; j = j->drv_next) {
                ulp_op_free(j->op);
                j->op = NULL;
                job_close_fds(j);
        }
        (void) ulp_release_late();
        ulp_wait_timer_stop();
        return NULL;
}

/* The loop's side: takes every job's news and acts on it. */
static int drivers_on_post(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        eventfd_t v;
        Job *j;

        (void) eventfd_read(fd, &v);
        pthread_mutex_lock(&m->post_lock);
        j = m->posted;
        m->posted = NULL;
        pthread_mutex_unlock(&m->post_lock);
        while (j) {
                JobNews n;
                Job *next;

                pthread_mutex_lock(&m->post_lock);
                n = j->news;
                j->news = (JobNews) {};
                j->posted = false;
                next = j->post_next;
                j->post_next = NULL;
                pthread_mutex_unlock(&m->post_lock);
                job_on_news(j, &n);    /* may free j */
                j = next;
        }
        return 0;
}

int drivers_setup(Manager *m) {
        struct sigaction sa = { .sa_handler = driver_wait_signal };
        pthread_condattr_t ca;
        int r;

        /* no SA_RESTART: the signal is there to end a wait */
        sigemptyset(&sa.sa_mask);
        if (sigaction(DRIVER_WAIT_SIGNAL, &sa, NULL) < 0)
                return -errno;

        if (m->max_drivers == 0)
                m->max_drivers = DRIVERS_DEFAULT;
        m->drivers = calloc(m->max_drivers, sizeof(Driver));
        if (!m->drivers)
                return -ENOMEM;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->drv_started, &ca);
        pthread_condattr_destroy(&ca);
        m->drivers_ready = true;
        m->post_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (m->post_fd < 0)
                return -errno;
        r = sd_event_add_io(m->event, &m->post_source, m->post_fd, EPOLLIN, drivers_on_post, m);
        if (r < 0)
                return r;
        /* before the loop's own work: a job's end answers its client */
        (void) sd_event_source_set_priority(m->post_source, SD_EVENT_PRIORITY_NORMAL - 1);
        return 0;
}

/* Under m->drv_lock. */
static int driver_spawn(Manager *m, Driver *d) {
        pthread_condattr_t ca;
        sigset_t all, old;
        int r;

        *d = (Driver) { .m = m };
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&d->wake, &ca);
        pthread_condattr_destroy(&ca);
        /* Every signal blocked: SIGCHLD is waited for (the library's sigtimedwait), and
         * SIGTERM/SIGINT are the loop's signalfd's. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&d->thread, NULL, driver_main, d);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                pthread_cond_destroy(&d->wake);
                return r;
        }
        return 0;
}

/* Under m->drv_lock: a start the loop waits for is queued first and taken even by a full
 * driver (driver_take_queued()); queued behind jobs waiting for a slot, the loop would
 * wait as long as the transitions holding the slots, up to their timeout (24 h). With
 * none idle nor to start, the driver with the fewest jobs is woken for it. */
static void driver_wake_for_sync(Manager *m, const Job *j) {
        Driver *pin = driver_pinned(m, j->pid), *least = NULL;

        for (unsigned i = 0; !pin && i < m->n_drivers; i++)
                if (!least || m->drivers[i].active < least->active)
                        least = &m->drivers[i];
        least = pin ?: least;
        /* asleep, it wakes; running, it looks at the queue before it sleeps again */
        if (least)
                pthread_cond_signal(&least->wake);
}

int driver_take(Manager *m, Job *j) {
        bool woken = false;
        int r = 0;

        pthread_mutex_lock(&m->drv_lock);
        j->drv_next = NULL;
        if (j->sync_start) {
                j->drv_next = m->queue;
                m->queue = j;
                if (!m->queue_last)
                        m->queue_last = j;
        } else {
                if (m->queue_last)
                        m->queue_last->drv_next = j;
                else
                        m->queue = j;
                m->queue_last = j;
        }
        if (driver_wake_idle_for(m, j))
                woken = true;
        else if (m->n_drivers < m->max_drivers && !driver_pinned(m, j->pid) &&
                 (j->sync_start || uid_may_occupy_more(m, j->uid))) {
                r = driver_spawn(m, &m->drivers[m->n_drivers]);
                if (r >= 0) {
                        m->n_drivers++;
                        woken = true;
                } else if (m->n_drivers > 0)
                        r = 0;    /* the running drivers take it */
                else {
                        m->queue = m->queue_last = NULL;
                }
        }
        if (!woken && r >= 0 && j->sync_start)
                driver_wake_for_sync(m, j);
        pthread_mutex_unlock(&m->drv_lock);
        return r;
}

int driver_wait_start(Job *j) {
        Manager *m = j->m;
        int r;

        pthread_mutex_lock(&m->drv_lock);
        while (!j->start_done)
                pthread_cond_wait(&m->drv_started, &m->drv_lock);
        r = j->start_result;
        pthread_mutex_unlock(&m->drv_lock);
        return r;
}

void drivers_done(Manager *m) {
        pthread_mutex_lock(&m->drv_lock);
        m->drivers_stop = true;
        for (unsigned i = 0; i < m->n_drivers; i++)
                pthread_cond_signal(&m->drivers[i].wake);
        pthread_mutex_unlock(&m->drv_lock);
        for (unsigned i = 0; i < m->n_drivers; i++) {
                (void) pthread_join(m->drivers[i].thread, NULL);
                pthread_cond_destroy(&m->drivers[i].wake);
        }
        /* What they told before they stopped: a job that ended meanwhile (its last step
         * was under way) is answered with its result, not as left to the next ulpd. */
        if (m->post_fd >= 0)
                (void) drivers_on_post(NULL, m->post_fd, 0, m);
        m->n_drivers = 0;
        free(m->drivers);
        m->drivers = NULL;
        if (m->drivers_ready)
                pthread_cond_destroy(&m->drv_started);
        m->drivers_ready = false;
        sd_event_source_disable_unref(m->post_source);
        m->post_source = NULL;
        if (m->post_fd >= 0)
                close(m->post_fd);
        m->post_fd = -1;
}
