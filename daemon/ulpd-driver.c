/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The driver threads (docs/daemon.md, "Drivers"). An operation's start waits for the
 * target's threads to be scheduled several times (seize, stop, the load, resume): run
 * one after another in the loop, a thousand targets wait a thousand times in a row. A
 * bounded pool of drivers overlaps those waits.
 *
 * Each job is bound to one driver from its start to its end: ptrace requests must come
 * from the thread that seized the target, and a tracer thread that exits lets its
 * tracees go, so drivers live as long as ulpd. A driver interleaves the steps of all its
 * jobs by their due times, so a job waiting for a straggler holds up none of them.
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
        bool running;
        pthread_mutex_t lock;
        pthread_cond_t wake;     /* jobs handed over, or stop */
        pthread_cond_t started;  /* a start the loop waits for is done */
        Job *inbox, *inbox_last;
        bool stop;
        unsigned n_bound;        /* the loop's: jobs bound to it, not yet ended */
};

/* Threads a finished operation asked to stop that had not stopped are this thread's
 * to let go (see ulpd.c): looked at so often while any is left. */
#define DRIVER_LATE_POLL_USEC (5ULL * 1000ULL)

static uint64_t job_due(Job *j) {
        return MAX(j->due, atomic_load(&j->hold_until));
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
static void driver_hold_uid(Job *list, uid_t uid, uint64_t took, uint64_t now) {
        if (uid == 0 || took < UID_LOOP_BUDGET_USEC)
                return;
        for (Job *k = list; k; k = k->drv_next)
                if (k->uid == uid)
                        job_hold(k, now + UID_WINDOW_USEC);
}

/* Takes j (at *p) out of the driver's list, then posts its end: from then on j is the
 * loop's, which may free it at once. */
static void driver_end(Job **p, JobNews *n, int r) {
        Job *j = *p;

        *p = j->drv_next;
        j->drv_next = NULL;
        ulp_op_free(j->op);   /* here: the tracer lets its tracees go */
        j->op = NULL;
        n->finished = true;
        n->result = r;
        news_post(j, n, false);
}

/* The start of j (at *p). Returns true when j left the list. */
static bool driver_start(Driver *d, Job **p, Job *list) {
        Job *j = *p;
        JobNews n = {};
        uint64_t t = clock_usec(), now;
        int r;

        r = job_run_start(j);
        job_close_fds(j);
        now = clock_usec();
        n.charge_usec = now - t;
        driver_hold_uid(list, j->uid, now - t, now);
        if (j->sync_start) {
                if (r < 0) {
                        *p = j->drv_next;
                        j->drv_next = NULL;
                        ulp_op_free(j->op);
                        j->op = NULL;
                }
                /* the waiting loop takes a failed start back, unlinked, with its report */
                pthread_mutex_lock(&d->lock);
                j->start_result = r;
                j->start_done = true;
                pthread_cond_broadcast(&d->started);
                pthread_mutex_unlock(&d->lock);
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
static bool driver_run(Driver *d, Job **p, Job *list) {
        Job *j = *p;
        JobNews n = {};
        uint64_t t, now;
        unsigned next_ms = 0;
        bool progress;
        int r;

        if (!j->op)
                return driver_start(d, p, list);
        t = clock_usec();
        r = ulp_op_step(j->op, &next_ms);
        now = clock_usec();
        n.charge_usec = now - t;
        driver_hold_uid(list, j->uid, now - t, now);
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

static void *driver_main(void *userdata) {
        Driver *d = userdata;
        Job *list = NULL;
        bool late = false;

        for (;;) {
                uint64_t next = UINT64_MAX, now;
                Job *in, **last = &list;
                bool stop;

                for (Job *j = list; j; j = j->drv_next)
                        next = MIN(next, job_due(j));
                if (late)
                        next = MIN(next, clock_usec() + DRIVER_LATE_POLL_USEC);
                pthread_mutex_lock(&d->lock);
                while (!d->inbox && !d->stop && next > clock_usec()) {
                        struct timespec ts;

                        if (next == UINT64_MAX) {
                                pthread_cond_wait(&d->wake, &d->lock);
                                continue;
                        }
                        ts.tv_sec = (time_t) (next / 1000000ULL);
                        ts.tv_nsec = (long) (next % 1000000ULL) * 1000;
                        if (pthread_cond_timedwait(&d->wake, &d->lock, &ts) == ETIMEDOUT)
                                break;
                }
                in = d->inbox;
                d->inbox = d->inbox_last = NULL;
                stop = d->stop;
                pthread_mutex_unlock(&d->lock);
                if (stop)
                        break;
                /* new jobs go last, each due at once: starts in the order handed over */
                while (*last)
                        last = &(*last)->drv_next;
                *last = in;

                now = clock_usec();
                for (Job **p = &list; *p;) {
                        Job *j = *p;

                        if (job_due(j) > now) {
                                p = &j->drv_next;
                                continue;
                        }
                        if (!driver_run(d, p, list))
                                p = &j->drv_next;
                }
                late = ulp_release_late() > 0;
        }
        /* ulpd stops: each operation stays in its target, consistent, for the next ulpd */
        for (Job *j = list; j; j = j->drv_next) {
                ulp_op_free(j->op);
                j->op = NULL;
                job_close_fds(j);
        }
        (void) ulp_release_late();
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
        int r;

        if (m->max_drivers == 0)
                m->max_drivers = DRIVERS_DEFAULT;
        m->drivers = calloc(m->max_drivers, sizeof(Driver));
        if (!m->drivers)
                return -ENOMEM;
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

static int driver_spawn(Manager *m, Driver *d) {
        pthread_condattr_t ca;
        sigset_t all, old;
        int r;

        *d = (Driver) { .m = m };
        pthread_mutex_init(&d->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&d->wake, &ca);
        pthread_cond_init(&d->started, &ca);
        pthread_condattr_destroy(&ca);
        /* Every signal blocked: SIGCHLD is waited for (the library's sigtimedwait), and
         * SIGTERM/SIGINT are the loop's signalfd's. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&d->thread, NULL, driver_main, d);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
                pthread_cond_destroy(&d->wake);
                pthread_cond_destroy(&d->started);
                pthread_mutex_destroy(&d->lock);
                return r;
        }
        d->running = true;
        return 0;
}

/* The least busy driver; a new one while every running one has work and the bound
 * allows it. */
static Driver *driver_choose(Manager *m) {
        Driver *best = NULL;

        for (unsigned i = 0; i < m->n_drivers; i++)
                if (!best || m->drivers[i].n_bound < best->n_bound)
                        best = &m->drivers[i];
        if ((!best || best->n_bound > 0) && m->drivers && m->n_drivers < m->max_drivers &&
            driver_spawn(m, &m->drivers[m->n_drivers]) >= 0)
                return &m->drivers[m->n_drivers++];
        return best;
}

int driver_take(Manager *m, Job *j) {
        Driver *d = driver_choose(m);

        if (!d)
                return -ENOMEM;
        j->driver = d;
        d->n_bound++;
        pthread_mutex_lock(&d->lock);
        if (d->inbox_last)
                d->inbox_last->drv_next = j;
        else
                d->inbox = j;
        d->inbox_last = j;
        pthread_cond_signal(&d->wake);
        pthread_mutex_unlock(&d->lock);
        return 0;
}

/* The loop's count of jobs on j's driver: j ended. */
void driver_release(Job *j) {
        if (j->driver)
                j->driver->n_bound--;
        j->driver = NULL;
}

int driver_wait_start(Job *j) {
        Driver *d = j->driver;
        int r;

        pthread_mutex_lock(&d->lock);
        while (!j->start_done)
                pthread_cond_wait(&d->started, &d->lock);
        r = j->start_result;
        pthread_mutex_unlock(&d->lock);
        return r;
}

void drivers_done(Manager *m) {
        for (unsigned i = 0; i < m->n_drivers; i++) {
                Driver *d = &m->drivers[i];

                pthread_mutex_lock(&d->lock);
                d->stop = true;
                pthread_cond_signal(&d->wake);
                pthread_mutex_unlock(&d->lock);
        }
        for (unsigned i = 0; i < m->n_drivers; i++) {
                Driver *d = &m->drivers[i];

                (void) pthread_join(d->thread, NULL);
                pthread_cond_destroy(&d->wake);
                pthread_cond_destroy(&d->started);
                pthread_mutex_destroy(&d->lock);
        }
        m->n_drivers = 0;
        free(m->drivers);
        m->drivers = NULL;
        sd_event_source_disable_unref(m->post_source);
        m->post_source = NULL;
        if (m->post_fd >= 0)
                close(m->post_fd);
        m->post_fd = -1;
}
