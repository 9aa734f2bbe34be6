/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpd: the live patching service. One sd-event loop serves the clients on the
 * Unix socket (protocol.h) and drives every running transition with timers
 * (ulpd-job.c). This file holds the arguments, the loop's setup and teardown, the
 * status line for systemd and the timer for threads left to stop; docs/daemon.md
 * says which file does what, ulpd.h how its objects own each other.
 */

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/ulpd.h"

/* ---- status for systemd ------------------------------------------------------------ */

void manager_update_status(Manager *m) {
        char s[256];

        if (m->n_jobs == 0)
                snprintf(s, sizeof(s), "Idle; %u client(s), %zu sticky patch(es)%s",
                         m->n_connections, sticky_count(m),
                         m->sticky_patches && !m->exec_events ? ", no exec events" : "");
        else if (m->n_jobs == 1)
                snprintf(s, sizeof(s), "Transition running: %s of %s in pid %d",
                         job_kind_verb(m->jobs->kind), m->jobs->name[0] ? m->jobs->name : "?",
                         (int) m->jobs->pid);
        else
                snprintf(s, sizeof(s), "%u transitions running", m->n_jobs);
        if (strcmp(s, m->last_status) == 0)
                return;
        snprintf(m->last_status, sizeof(m->last_status), "%s", s);
        (void) sd_notifyf(false, "STATUS=%s", s);
}

/* systemd's default LimitNOFILE is 1024 soft, 512K hard: the soft limit is for programs
 * that still use select(), which ulpd does not. With 1024, clients passing fds ran ulpd
 * out of them. */
static void raise_nofile_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warning("cannot raise the limit of open files to %llu: %m",
                                    (unsigned long long) rl.rlim_max);
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < NOFILE_WANTED)
                log_warning("the limit of open files is %llu, below the %u that ulpd's limits assume: "
                            "raise LimitNOFILE=", (unsigned long long) rl.rlim_cur, (unsigned) NOFILE_WANTED);
}

static int manager_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        log_info("stopping on %s%s", strsignal((int) si->ssi_signo),
                 m->n_jobs ? "; running transitions stay in their targets for the next ulpd" : "");
        sd_event_exit(m->event, 0);
        return 0;
}

/*
 * Threads an operation asked to stop that had not stopped when it ended (a vfork parent
 * in D state) stay traced by this thread until they stop: each must be detached as soon
 * as it does, or it sits in its stop with nobody to resume it. Looked at every few ms
 * while any is left; after every dispatch, in case an operation just left one.
 */
#define LATE_POLL_USEC (5ULL * 1000ULL)

static int manager_on_late_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        if (ulp_release_late() > 0) {
                (void) sd_event_source_set_time_relative(s, LATE_POLL_USEC);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        return 0;
}

static int manager_on_post(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        int on = SD_EVENT_OFF;

        if (!m->late_timer || ulp_release_late() == 0)
                return 0;
        (void) sd_event_source_get_enabled(m->late_timer, &on);
        if (on == SD_EVENT_OFF) {
                (void) sd_event_source_set_time_relative(m->late_timer, LATE_POLL_USEC);
                (void) sd_event_source_set_enabled(m->late_timer, SD_EVENT_ONESHOT);
        }
        return 0;
}

static void manager_free(Manager *m) {
        /* first the drivers: each frees the operations it runs, which stay in their
         * targets, consistent, for the next ulpd */
        drivers_done(m);
        while (m->jobs) {
                Job *j = m->jobs;
                Request *q = j->req;

                /* The transition stays consistent in the target; the next ulpd resumes it. */
                if (q && q->c) {
                        struct json_object *e = protocol_new_error(-ESHUTDOWN,
                                "ulpd is stopping; the transition stays in the target and the next ulpd finishes it");
                        Connection *c = q->c;
                        c->req = NULL;
                        q->c = NULL;
                        (void) connection_send(c, e);
                        json_object_put(e);
                }
                j->req = NULL;
                job_free(j);
                if (q && --q->running == 0)
                        request_free(q);
        }
        while (m->connections)
                connection_close(m->connections);
        patch_dir_done(m);
        sticky_done(m);
        pending_done(m);
        sd_event_source_disable_unref(m->listen_source);
        sd_event_source_disable_unref(m->accept_retry);
        sd_event_source_disable_unref(m->uid_window_timer);
        free(m->uid_use);
        sd_event_source_disable_unref(m->late_timer);
        if (m->listen_fd >= 0) {
                close(m->listen_fd);
                if (!m->listen_fd_from_systemd)
                        (void) unlink(m->socket_path);
        }
        sd_event_unref(m->event);
        pthread_mutex_destroy(&m->post_lock);
        free(m->socket_path);
        free(m->state_dir);
}

static void help(void) {
        printf("ulpd [OPTIONS...]\n\n"
               "Live patching service for running processes.\n\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --socket PATH      Listen on PATH (default %s)\n"
               "     --state-dir DIR    Sticky patches live in DIR (default /var/lib/ulp)\n"
               "     --patch-dir DIR    Apply every patch file put in DIR as a sticky patch, revert\n"
               "                        it when the file goes (default %s; \"\" none)\n"
               "     --no-recover       Do not take over transitions left unfinished in targets\n"
               "                        (another tool drives them; tests on a shared machine)\n"
               "     --recover-only PID Take over only the transition in PID (repeatable; tests)\n"
               "     --callback-timeout MS  Give up on a patch callback after MS ms (default %u);\n"
               "                        the other operations of its driver wait while one runs\n"
               "     --drivers N        Run at most N operations' waits at once (default %u)\n"
               "     --uid-share-ms MS  Let each uid but root use MS ms of the service's time\n"
               "                        per 10 s window (default %u)\n"
               "     --debug            Log debug messages\n",
               PROTOCOL_SOCKET_DEFAULT, PATCH_DIR_DEFAULT, CALLBACK_TIMEOUT_MS_DEFAULT, DRIVERS_DEFAULT,
               UID_SHARE_MS_DEFAULT);
}

static int parse_argv(int argc, char **argv, Manager *m) {
        enum { ARG_VERSION = 0x100, ARG_SOCKET, ARG_STATE_DIR, ARG_DEBUG, ARG_NO_RECOVER, ARG_RECOVER_ONLY,
               ARG_CALLBACK_TIMEOUT, ARG_PATCH_DIR, ARG_DRIVERS, ARG_UID_SHARE };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h' },
                { "version",   no_argument,       NULL, ARG_VERSION },
                { "socket",    required_argument, NULL, ARG_SOCKET },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "debug",     no_argument,       NULL, ARG_DEBUG },
                { "no-recover", no_argument,      NULL, ARG_NO_RECOVER },
                { "recover-only", required_argument, NULL, ARG_RECOVER_ONLY },
                { "callback-timeout", required_argument, NULL, ARG_CALLBACK_TIMEOUT },
                { "patch-dir", required_argument, NULL, ARG_PATCH_DIR },
                { "drivers",   required_argument, NULL, ARG_DRIVERS },
                { "uid-share-ms", required_argument, NULL, ARG_UID_SHARE },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("ulpd %s\n", ULP_VERSION);
                        return 0;
                case ARG_SOCKET:
                        free(m->socket_path);
                        m->socket_path = strdup(optarg);
                        break;
                case ARG_STATE_DIR:
                        free(m->state_dir);
                        m->state_dir = strdup(optarg);
                        break;
                case ARG_PATCH_DIR:
                        free(m->patch_dir);
                        m->patch_dir = optarg[0] ? strdup(optarg) : NULL;
                        if (optarg[0] && optarg[0] != '/') {
                                fprintf(stderr, "ulpd: --patch-dir needs an absolute path: %s\n", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_DEBUG:
                        log_max_priority = LOG_DEBUG;
                        break;
                case ARG_NO_RECOVER:
                        m->no_recover = true;
                        break;
                case ARG_RECOVER_ONLY: {
                        char *end;
                        long p = strtol(optarg, &end, 10);
                        if (*end || p <= 0 || p > INT32_MAX || m->n_recover_only >= ELEMENTSOF(m->recover_only)) {
                                fprintf(stderr, "ulpd: invalid --recover-only %s\n", optarg);
                                return -EINVAL;
                        }
                        m->recover_only[m->n_recover_only++] = (pid_t) p;
                        break;
                }
                case ARG_CALLBACK_TIMEOUT: {
                        char *end;
                        long ms = strtol(optarg, &end, 10);
                        if (*end || ms <= 0 || ms > 600 * 1000) {
                                fprintf(stderr, "ulpd: invalid --callback-timeout %s (1..600000 ms)\n", optarg);
                                return -EINVAL;
                        }
                        m->callback_timeout_ms = (unsigned) ms;
                        break;
                }
                case ARG_DRIVERS: {
                        char *end;
                        long n = strtol(optarg, &end, 10);
                        if (*end || n <= 0 || n > DRIVERS_MAX) {
                                fprintf(stderr, "ulpd: invalid --drivers %s (1..%u)\n", optarg, DRIVERS_MAX);
                                return -EINVAL;
                        }
                        m->max_drivers = (unsigned) n;
                        break;
                }
                case ARG_UID_SHARE: {
                        char *end;
                        long ms = strtol(optarg, &end, 10);
                        if (*end || ms <= 0 || (unsigned long long) ms > UID_WINDOW_USEC / 1000) {
                                fprintf(stderr, "ulpd: invalid --uid-share-ms %s (1..%llu ms)\n", optarg,
                                        UID_WINDOW_USEC / 1000);
                                return -EINVAL;
                        }
                        m->uid_share_usec = (uint64_t) ms * 1000;
                        break;
                }
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                fprintf(stderr, "ulpd: unexpected argument %s\n", argv[optind]);
                return -EINVAL;
        }
        if (!m->socket_path || !m->state_dir)
                return -ENOMEM;
        return 1;
}

int main(int argc, char **argv) {
        Manager m = { .listen_fd = -1, .netlink_fd = -1, .callback_timeout_ms = CALLBACK_TIMEOUT_MS_DEFAULT,
                      .uid_share_usec = UID_SHARE_MS_DEFAULT * 1000ULL,
                      .post_lock = PTHREAD_MUTEX_INITIALIZER, .drv_lock = PTHREAD_MUTEX_INITIALIZER,
                      .post_fd = -1 };
        sigset_t ss;
        int r;

        log_setup();
        m.socket_path = strdup(PROTOCOL_SOCKET_DEFAULT);
        m.state_dir = strdup("/var/lib/ulp");
        m.patch_dir = strdup(PATCH_DIR_DEFAULT);
        m.patch_dir_inotify_fd = -1;
        r = parse_argv(argc, argv, &m);
        if (r <= 0) {
                manager_free(&m);
                return r < 0 ? 2 : 0;
        }
        m.self = getpid();
        (void) signal(SIGPIPE, SIG_IGN);
        /* Each operation copies its target's control block (2.1 MiB): with the threshold
         * fixed, such blocks are always mapped on their own and go back to the kernel when
         * freed. The default threshold rises to the largest block freed, after which the
         * copies of a thousand operations stayed in the drivers' arenas (200 MiB). */
        (void) mallopt(M_MMAP_THRESHOLD, 256 * 1024);
        raise_nofile_limit();

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        /* SIGCHLD: the drivers wait for their tracees' stops with sigtimedwait(); a
         * SIGCHLD delivered to this thread would be lost to them */
        sigaddset(&ss, SIGCHLD);
        sigprocmask(SIG_BLOCK, &ss, NULL);

        r = sd_event_default(&m.event);
        if (r < 0) {
                log_error("sd_event_default: %s", strerror(-r));
                goto finish;
        }
        (void) sd_event_add_signal(m.event, NULL, SIGTERM, manager_on_signal, &m);
        (void) sd_event_add_signal(m.event, NULL, SIGINT, manager_on_signal, &m);
        /* WATCHDOG=1 from the loop itself: a stuck loop is what the watchdog is for */
        r = sd_event_set_watchdog(m.event, true);
        if (r < 0)
                log_warning("cannot enable the watchdog: %s", strerror(-r));

        r = manager_listen(&m);
        if (r < 0)
                goto finish;
        r = sd_event_add_io(m.event, &m.listen_source, m.listen_fd, EPOLLIN, manager_on_accept, &m);
        if (r < 0) {
                log_error("sd_event_add_io: %s", strerror(-r));
                goto finish;
        }

        r = drivers_setup(&m);
        if (r < 0) {
                log_error("cannot set up the driver threads: %s", strerror(-r));
                goto finish;
        }

        r = sd_event_add_time_relative(m.event, &m.late_timer, CLOCK_MONOTONIC, LATE_POLL_USEC,
                                       JOB_TIMER_ACCURACY_USEC, manager_on_late_timer, &m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m.late_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_post(m.event, NULL, manager_on_post, &m);
        if (r < 0) {
                log_error("cannot set up the timer for threads left to stop: %s", strerror(-r));
                goto finish;
        }

        if (!m.no_recover)
                manager_resume_transitions(&m);
        (void) pending_setup(&m);
        (void) sticky_setup(&m);
        (void) patch_dir_setup(&m);

        manager_update_status(&m);
        (void) sd_notify(false, "READY=1");
        log_info("ulpd %s ready", ULP_VERSION);

        r = sd_event_loop(m.event);
        if (r < 0)
                log_error("event loop: %s", strerror(-r));
finish:
        manager_free(&m);
        return r < 0 ? 1 : 0;
}
