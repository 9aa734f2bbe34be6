/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A client's connection: reading its requests off the socket (protocol.h) and handing
 * each whole one to dispatch(), queueing its replies, and the one timer that closes it
 * when idle or when a request does not arrive whole in time (docs/limits.md).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/ulpd.h"

int connection_update_events(Connection *c) {
        uint32_t ev = 0;

        if (!c->read_eof && !c->closing && !c->throttled)
                ev |= EPOLLIN;
        /* a status sent in parts: its next part once the last one left (status_stream_next) */
        if (c->out_len > 0 || (c->stream && !c->throttled && !c->closing))
                ev |= EPOLLOUT;
        return sd_event_source_set_io_events(c->io, ev);
}

/* Writes what the socket takes. Returns 0, or -errno when the connection is dead. */
static int connection_flush(Connection *c) {
        int r;

        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return negative_errno();
                }
                memmove(c->out, c->out + n, c->out_len - (size_t) n);
                c->out_len -= (size_t) n;
        }
        r = connection_update_events(c);
        /* the loop ended (ulpd stops, answering what its drivers told last): the socket
         * took what it could, and the connection is not dropped for it */
        return r == -ESTALE ? 0 : r;
}

/* Queues message o (reference not taken) for the client. A client that does not read
 * its replies is dropped once OUTPUT_MAX bytes are queued. */
int connection_send(Connection *c, struct json_object *o) {
        _cleanup_free_ char *s = NULL;
        size_t len;
        char *b;

        if (!o)
                return -ENOMEM;
        if (connection_closed(c))
                return -ENOTCONN;
        s = protocol_format(o, &len);
        if (!s)
                return -ENOMEM;
        if (c->out_len + len > OUTPUT_MAX)
                return -ENOBUFS;
        b = realloc(c->out, c->out_len + len);
        if (!b)
                return -ENOMEM;
        memcpy(b + c->out_len, s, len);
        c->out = b;
        c->out_len += len;
        return connection_flush(c);
}

/* Sends and then frees o; closes the connection when it cannot take it. Returns false
 * when c was closed. */
bool connection_reply(Connection *c, struct json_object *o) {
        int r = connection_send(c, o);

        json_object_put(o);
        if (r < 0) {
                log_debug("dropping client (pid %d): %s", (int) c->cred.pid, strerror(-r));
                connection_close(c);
                return false;
        }
        return true;
}

/* Answers with an error and closes after flushing (for protocol violations). */
void connection_fail(Connection *c, int error, const char *message) {
        log_debug("client pid %d: %s", (int) c->cred.pid, message);
        c->closing = true;
        if (!connection_reply(c, protocol_new_error(error, message)))
                return;
        if (c->out_len == 0)
                connection_close(c);
}

/* Keeps the connection's one timer on the deadline that applies now (on: unless a
 * request is in flight): none while a request runs (its jobs have their timeouts);
 * REQUEST_DEADLINE_USEC from the first byte of a request, never pushed back by later
 * bytes (a client trickling a byte every few seconds would hold its slot forever);
 * CONNECTION_IDLE_USEC from when the connection went idle. */
void idle_arm(Connection *c, bool on) {
        int timer;

        if (!c->idle)
                return;
        timer = !on || c->req || c->throttled ? TIMER_OFF : c->rd.len > 0 ? TIMER_REQUEST : TIMER_IDLE;
        if (timer == (int) c->timer)
                return;
        c->timer = timer;
        if (timer != TIMER_OFF)
                (void) sd_event_source_set_time_relative(c->idle, timer == TIMER_REQUEST ?
                                                         REQUEST_DEADLINE_USEC : CONNECTION_IDLE_USEC);
        (void) sd_event_source_set_enabled(c->idle, timer != TIMER_OFF ? SD_EVENT_ONESHOT : SD_EVENT_OFF);
}

/*
 * A connection has a reference from the manager's list while it is open, and one from
 * each callback that runs for it, for the callback's duration: what the callback does
 * may close it (a reply that cannot be queued, a protocol violation, an idle deadline),
 * and the callback still looks at it afterwards. Closing releases the socket, the
 * timers, the descriptors in flight and the queued replies at once; the memory goes
 * with the last reference.
 */
Connection *connection_ref(Connection *c) {
        c->n_ref++;
        return c;
}

Connection *connection_unref(Connection *c) {
        if (!c || --c->n_ref > 0)
                return NULL;
        msgreader_done(&c->rd);
        free(c->out);
        free(c);
        return NULL;
}

static void connection_unrefp(Connection **c) {
        connection_unref(*c);
}

bool connection_closed(const Connection *c) {
        return c->fd < 0;
}

void connection_close(Connection *c) {
        Manager *m = c->m;

        if (connection_closed(c))
                return;
        if (c->req) {
                c->req->c = NULL;  /* the jobs go on; the request is freed with the last one */
                c->req = NULL;
        }
        LIST_REMOVE(m->connections, c);
        m->n_connections--;
        if (c->stream)
                status_stream_free(c);
        c->io = sd_event_source_disable_unref(c->io);
        c->idle = sd_event_source_disable_unref(c->idle);
        close(c->fd);
        c->fd = -1;
        msgreader_done(&c->rd);
        free(c->out);
        c->out = NULL;
        c->out_len = 0;
        manager_update_status(m);
        connection_unref(c);   /* the list's */
}

/* Stops reading c until the window ends (uid_window_on_timer); its deadlines wait too,
 * for the pause is ulpd's doing. */
static void connection_throttle(Connection *c) {
        log_debug("client pid %d: uid %u used its share of ulpd's time, next request after the others",
                  (int) c->cred.pid, (unsigned) c->cred.uid);
        c->throttled = true;
        idle_arm(c, false);
        (void) connection_update_events(c);
}

static void connection_process(Connection *c) {
        Manager *m = c->m;
        uid_t uid = c->cred.uid;

        for (;;) {
                struct json_object *q = NULL;
                uint64_t t;
                int fd, r;

                if (connection_closed(c) || c->closing)
                        return;
                if (!c->req && uid_over_budget(m, uid)) {
                        connection_throttle(c);
                        return;
                }
                r = msgreader_next(&c->rd, &q);
                if (r == 0)
                        return;
                if (r == -EMSGSIZE) {
                        connection_fail(c, r, "message too large");
                        return;
                }
                if (r < 0) {
                        connection_fail(c, r, "malformed message: one JSON object per line with \"version\":1 expected");
                        return;
                }
                t = c->dispatch_start = clock_usec();
                dispatch(c, q);
                uid_charge(m, uid, clock_usec() - t);
                json_object_put(q);
                if (connection_closed(c))
                        return;
                /* fds the request brought and did not take are not kept for another */
                while ((fd = msgreader_take_fd(&c->rd)) >= 0)
                        close(fd);
                /* the next request's deadline runs from its own first byte */
                idle_arm(c, false);
                idle_arm(c, true);
        }
}

/* The client read the last part of its status: the next one, charged to its uid as a
 * request is. One part per wake-up, so that the other clients come in between; none
 * while the client does not read, so that ulpd holds one part for it at most. */
static void status_stream_next(Connection *c) {
        uint64_t t;

        if (uid_over_budget(c->m, c->cred.uid)) {
                connection_throttle(c);
                return;
        }
        t = clock_usec();
        status_stream_continue(c);
        uid_charge(c->m, c->cred.uid, clock_usec() - t);
        /* a part went: the client is reading, its idle deadline starts again */
        if (!connection_closed(c) && c->timer == TIMER_IDLE) {
                (void) sd_event_source_set_time_relative(c->idle, CONNECTION_IDLE_USEC);
                (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
        }
}

static int connection_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        _cleanup_(connection_unrefp) Connection *c = connection_ref(userdata);

        if (revents & EPOLLOUT) {
                if (connection_flush(c) < 0)
                        connection_close(c);
                else if (c->out_len == 0 && c->stream && !c->throttled && !c->closing)
                        status_stream_next(c);
                else if (c->out_len == 0 && (c->closing || (c->read_eof && !c->req)))
                        connection_close(c);
        }
        /* Gone entirely while we were not reading: epoll would report it forever. */
        if (!connection_closed(c) && (revents & (EPOLLHUP | EPOLLERR)) &&
            (c->read_eof || c->closing || c->throttled))
                connection_close(c);
        if (!connection_closed(c) && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->read_eof &&
            !c->closing && !c->throttled) {
                char msg_fds[192];

                /* a bounded number of reads, so one chatty client cannot starve the rest */
                for (int i = 0; i < 8 && !connection_closed(c) && !c->closing && !c->throttled; i++) {
                        int r = msgreader_fill(&c->rd, c->fd);

                        if (r == -EAGAIN)
                                break;
                        if (r == -EMSGSIZE) {
                                connection_fail(c, r, "message too large");
                                break;
                        }
                        if (r == -ETOOMANYREFS) {
                                char msg[128];

                                snprintf(msg, sizeof(msg), "too many file descriptors: a request carries at most %u",
                                         (unsigned) PROTOCOL_FDS_MAX);
                                connection_fail(c, r, msg);
                                break;
                        }
                        if (r < 0) {
                                connection_close(c);
                                break;
                        }
                        if (c->rd.n_fds > 0 && connection_fds_over(c, msg_fds, sizeof(msg_fds))) {
                                connection_fail(c, -ETOOMANYREFS, msg_fds);
                                break;
                        }
                        idle_arm(c, true);
                        connection_process(c);
                        if (r == 0) {
                                /* half-closed: answer what is in flight, then close */
                                if (!connection_closed(c))
                                        c->read_eof = true;
                                break;
                        }
                }
                if (!connection_closed(c)) {
                        if (c->read_eof && !c->req && !c->stream && c->out_len == 0)
                                connection_close(c);
                        else
                                (void) connection_update_events(c);
                }
        }
        return 0;
}

static int connection_on_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        Connection *c = userdata;

        if (c->timer == TIMER_RESUME) {
                /* held until the end of this block: connection_process() may close c */
                _cleanup_(connection_unrefp) _unused_ Connection *ref = connection_ref(c);

                c->timer = TIMER_OFF;
                connection_process(c);
                if (!connection_closed(c))
                        idle_arm(c, true);
                return 0;
        }
        if (c->req)
                return 0;
        if (c->timer == TIMER_REQUEST && !c->closing) {
                char msg[128];

                /* Told why, then closed; closed anyway after another idle period if the
                 * client does not even read that. */
                c->timer = TIMER_IDLE;
                (void) sd_event_source_set_time_relative(c->idle, CONNECTION_IDLE_USEC);
                (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
                snprintf(msg, sizeof(msg), "request not received whole within %u s of its first byte",
                         (unsigned) REQUEST_DEADLINE_SEC);
                connection_fail(c, -ETIMEDOUT, msg);
                return 0;
        }
        log_debug("client pid %d idle, closing", (int) c->cred.pid);
        connection_close(c);
        return 0;
}

int connection_new(Manager *m, int cfd, const struct ucred *cred) {
        Connection *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                close(cfd);
                return -ENOMEM;
        }
        c->n_ref = 1;   /* the list's, until connection_close() */
        c->m = m;
        c->fd = cfd;
        c->cred = *cred;
        c->timer = TIMER_IDLE;
        msgreader_init(&c->rd);
        r = sd_event_add_io(m->event, &c->io, cfd, EPOLLIN, connection_on_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(m->event, &c->idle, CLOCK_MONOTONIC,
                                               CONNECTION_IDLE_USEC, 0, connection_on_idle, c);
        if (r < 0) {
                sd_event_source_disable_unref(c->io);
                close(cfd);
                free(c);
                return r;
        }
        LIST_PREPEND(m->connections, c);
        m->n_connections++;
        log_debug("client connected: pid %d uid %u", (int) c->cred.pid, (unsigned) c->cred.uid);
        return 0;
}
