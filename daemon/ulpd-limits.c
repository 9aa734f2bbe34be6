/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What one client may make ulpd hold: connection slots, file descriptors in flight, the
 * loop's time and running transitions, each bounded per uid so that no local user can
 * deny the service to another; and the rate of the log lines a client can provoke. The
 * values and why they are what they are: docs/limits.md.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <syslog.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/ulpd.h"

/* At most LOG_BURST lines per LOG_INTERVAL_USEC; counts what it holds back. */
bool ratelimit_pass(Manager *m, RateLimit *rl) {
        uint64_t now = now_usec(m);

        if (rl->begin == 0 || now >= rl->begin + LOG_INTERVAL_USEC) {
                rl->begin = now;
                rl->n = 0;
        }
        if (rl->n >= LOG_BURST) {
                rl->suppressed++;
                return false;
        }
        rl->n++;
        return true;
}

/* Refusals any client can ask for by the thousand (a request naming others' processes). */
bool log_refusal_pass(Manager *m) {
        if (!ratelimit_pass(m, &m->refusal_log))
                return false;
        if (m->refusal_log.suppressed > 0)
                log_warning("%u more refusals were not logged", m->refusal_log.suppressed);
        m->refusal_log.suppressed = 0;
        return true;
}

/* ---- the loop's time, shared between uids ---------------------------------------------
 *
 * A request's synchronous part (starting an operation: attaching, loading the patch,
 * its pre-patch callback) runs inside the loop and holds every other client meanwhile.
 * It cannot be cut short, but who pays for it can be counted: each uid but root may use
 * m->uid_share_usec of the loop per UID_WINDOW_USEC (ulpd --uid-share-ms); a uid over its share is not read
 * from until the window ends, so the others' requests go first. */

static struct UidUse *uid_use_find(Manager *m, uid_t uid) {
        for (size_t i = 0; i < m->n_uid_use; i++)
                if (m->uid_use[i].uid == uid)
                        return &m->uid_use[i];
        return NULL;
}

bool uid_over_budget(Manager *m, uid_t uid) {
        struct UidUse *u;

        if (uid == 0)
                return false;
        u = uid_use_find(m, uid);
        return u && u->usec >= m->uid_share_usec;
}

/* Inside a request: may c's uid start one more operation? Not once it used its share of
 * the loop, counting what this request took so far (a request naming many processes,
 * each start may take a callback timeout), nor with JOBS_PER_UID_MAX transitions running
 * (each steps in the loop until it ends). Returns 0, or -EAGAIN with the line for the
 * client. */
int connection_may_start(Connection *c, char *reason, size_t len) {
        struct UidUse *u;
        unsigned n = 0;

        if (c->cred.uid == 0)
                return 0;
        u = uid_use_find(c->m, c->cred.uid);
        if ((u ? u->usec : 0) + (clock_usec() - c->dispatch_start) >= c->m->uid_share_usec) {
                snprintf(reason, len, "not started: uid %u used its share of ulpd's time; "
                         "try again in a few seconds", (unsigned) c->cred.uid);
                return -EAGAIN;
        }
        for (Job *j = c->m->jobs; j; j = j->next)
                n += j->uid == c->cred.uid;
        if (n >= JOBS_PER_UID_MAX) {
                snprintf(reason, len, "not started: uid %u has %u transitions running, the most one user may have",
                         (unsigned) c->cred.uid, n);
                return -EAGAIN;
        }
        return 0;
}

/* The window ended: every uid starts afresh; the connections held back are read again.
 * What they sent meanwhile is processed from their own timers (connection_on_idle), one
 * loop iteration each, so that other clients' events come in between. */
static int uid_window_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->n_uid_use = 0;
        m->uid_window_end = 0;
        for (Connection *c = m->connections; c; c = c->next) {
                if (!c->throttled)
                        continue;
                c->throttled = false;
                (void) connection_update_events(c);
                if (c->rd.len == 0) {
                        idle_arm(c, true);
                        continue;
                }
                c->timer = TIMER_RESUME;
                (void) sd_event_source_set_time_relative(c->idle, 0);
                (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
        }
        return 0;
}

void uid_charge(Manager *m, uid_t uid, uint64_t usec) {
        struct UidUse *u;

        if (uid == 0)
                return;
        u = uid_use_find(m, uid);
        if (!u) {
                struct UidUse *v = reallocarray(m->uid_use, m->n_uid_use + 1, sizeof(*v));

                if (!v)
                        return;
                m->uid_use = v;
                u = &v[m->n_uid_use++];
                *u = (struct UidUse) { .uid = uid };
        }
        u->usec += usec;
        if (m->uid_window_end)
                return;
        m->uid_window_end = clock_usec() + UID_WINDOW_USEC;
        if (!m->uid_window_timer) {
                if (sd_event_add_time_relative(m->event, &m->uid_window_timer, CLOCK_MONOTONIC,
                                               UID_WINDOW_USEC, 10 * 1000, uid_window_on_timer, m) < 0)
                        m->n_uid_use = m->uid_window_end = 0;   /* no window: no throttling */
                return;
        }
        (void) sd_event_source_set_time_relative(m->uid_window_timer, UID_WINDOW_USEC);
        (void) sd_event_source_set_enabled(m->uid_window_timer, SD_EVENT_ONESHOT);
}

/* Descriptors that requests in flight brought: a uid other than root may hold at most
 * UID_FDS_MAX of them (two requests' worth), and all such uids together at most what the
 * fd limit leaves after FDS_RESERVED for root and the work itself, so that no user can
 * exhaust ulpd's descriptors (docs/limits.md). True, with the line for the client, when c's
 * request goes over. */
bool connection_fds_over(Connection *c, char *reason, size_t len) {
        size_t uid_fds = 0, all_fds = 0;
        struct rlimit rl;

        if (c->cred.uid == 0)
                return false;
        for (Connection *o = c->m->connections; o; o = o->next) {
                if (o->cred.uid == 0)
                        continue;
                all_fds += o->rd.n_fds + o->held_fds;
                if (o->cred.uid == c->cred.uid)
                        uid_fds += o->rd.n_fds + o->held_fds;
        }
        if (uid_fds > UID_FDS_MAX) {
                snprintf(reason, len, "uid %u has %zu file descriptors in requests to ulpd, the most one user "
                         "may have is %u", (unsigned) c->cred.uid, uid_fds, (unsigned) UID_FDS_MAX);
                return true;
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur != RLIM_INFINITY &&
            all_fds + FDS_RESERVED > rl.rlim_cur) {
                snprintf(reason, len, "ulpd holds as many file descriptors of users' requests as it can (%zu); "
                         "try again later", all_fds);
                return true;
        }
        return false;
}

/* May a new connection from cred be served? Root has CONNECTIONS_ROOT_RESERVED slots no
 * other uid can take; every other uid has at most CONNECTIONS_PER_UID_MAX, so that one
 * user can take neither root's slots nor the others'. A connection holds at most
 * 1 + PROTOCOL_FDS_MAX of ulpd's fds (its socket and what its request brought; the
 * reader closes the rest), so this bounds a uid's fds as well. Returns 0, or -errno
 * with the line for the client. */
int connection_admit(Manager *m, const struct ucred *cred, char *reason, size_t len) {
        unsigned same = 0, unprivileged = 0, fds = 0;

        for (Connection *c = m->connections; c; c = c->next) {
                if (c->cred.uid != 0)
                        unprivileged++;
                if (c->cred.uid == cred->uid) {
                        same++;
                        fds += 1 + (unsigned) c->rd.n_fds + c->held_fds;
                }
        }
        if (m->n_connections >= CONNECTIONS_MAX ||
            (cred->uid != 0 && unprivileged >= CONNECTIONS_MAX - CONNECTIONS_ROOT_RESERVED)) {
                snprintf(reason, len, "ulpd serves as many clients as it can (%u); try again later",
                         cred->uid != 0 ? CONNECTIONS_MAX - CONNECTIONS_ROOT_RESERVED : CONNECTIONS_MAX);
                return -EAGAIN;
        }
        if (cred->uid != 0 && same >= CONNECTIONS_PER_UID_MAX) {
                snprintf(reason, len, "uid %u has %u connections to ulpd (holding %u file descriptors), "
                         "the most one user may have", (unsigned) cred->uid, same, fds);
                return -EUSERS;
        }
        return 0;
}
