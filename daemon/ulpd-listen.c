/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpd's socket: taking the one systemd passed or binding our own, accepting clients
 * (with a pause when out of descriptors), and turning away those over the connection
 * limits with one line that says why.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/errno-clause.h"
#include "common/macro.h"
#include "daemon/protocol.h"
#include "daemon/ulpd.h"

static int accept_resume(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_ON);
        return 0;
}

/* Out of fds or kernel memory: the connection stays in the backlog, so epoll reports the
 * socket ready again at once and accepting again would spin. Listening pauses for a
 * moment instead; connections that end meanwhile make room. */
static void accept_pause(Manager *m, int error) {
        int r;

        log_warning_ratelimited(m, &m->accept_log, "cannot accept a client: %s; not accepting for %llu ms",
                                strerror(error), ACCEPT_BACKOFF_USEC / 1000);
        if (!m->accept_retry)
                r = sd_event_add_time_relative(m->event, &m->accept_retry, CLOCK_MONOTONIC,
                                               ACCEPT_BACKOFF_USEC, 10 * 1000, accept_resume, m);
        else {
                r = sd_event_source_set_time_relative(m->accept_retry, ACCEPT_BACKOFF_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->accept_retry, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                return;   /* no timer to resume: better to keep trying than to go deaf */
        (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_OFF);
}

/* Tells a client that was not admitted why, as the reply to whatever it sends, and
 * closes. Never waits: the line fits in an empty socket buffer, or is lost. */
static void connection_refuse(int fd, int error, const char *reason) {
        _cleanup_free_ char *s = NULL;
        struct json_object *o = protocol_new_error(error, reason);
        size_t len = 0;

        if (o) {
                s = protocol_format(o, &len);
                json_object_put(o);
        }
        if (s)
                (void) send(fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
}

int manager_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        struct ucred cred = {};
        char reason[256];
        socklen_t len;
        int cfd, r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                        accept_pause(m, errno);
                else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning_ratelimited(m, &m->accept_log, "accept: %m");
                return 0;
        }
        len = sizeof(cred);
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_ratelimited(m, &m->accept_log, "SO_PEERCRED: %m");
                close(cfd);
                return 0;
        }
        r = connection_admit(m, &cred, reason, sizeof(reason));
        if (r < 0) {
                log_warning_ratelimited(m, &m->accept_log, "refused a client (pid %d uid %u): %s",
                                        (int) cred.pid, (unsigned) cred.uid, reason);
                connection_refuse(cfd, r, reason);
                return 0;
        }
        (void) connection_new(m, cfd, &cred);
        return 0;
}

static int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return negative_errno();
                *s = '/';
        }
        return 0;
}

/* Takes the socket systemd passed, or binds our own. */
int manager_listen(Manager *m) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int n, r;

        n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "sd_listen_fds: %s", strerror(-n));
        if (n > 1)
                return log_error_errno(-EINVAL, "systemd passed %d sockets, expected one", n);
        if (n == 1) {
                if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0)
                        return log_error_errno(-EINVAL, "the socket systemd passed is not a listening Unix stream socket");
                m->listen_fd = SD_LISTEN_FDS_START;
                m->listen_fd_from_systemd = true;
                (void) fcntl(m->listen_fd, F_SETFL, fcntl(m->listen_fd, F_GETFL) | O_NONBLOCK);
                log_info("listening on the socket passed by systemd");
                return 0;
        }

        if (strlen(m->socket_path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "socket path too long: %s", m->socket_path);
        strcpy(sa.sun_path, m->socket_path);
        r = mkdir_parents(m->socket_path, 0755);
        if (r < 0)
                return log_error_errno(r, "cannot create the directory of %s: %s", m->socket_path, errno_clause(r));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(negative_errno(), "socket: %m");
        /* A socket file left by a dead ulpd: replace it, but never one that answers. */
        {
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct stat st;

                if (probe >= 0 && lstat(m->socket_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
                        if (connect(probe, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                                close(probe);
                                return log_error_errno(-EADDRINUSE, "another ulpd answers on %s", m->socket_path);
                        }
                        (void) unlink(m->socket_path);
                }
                if (probe >= 0)
                        close(probe);
        }
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(negative_errno(), "cannot bind %s: %m", m->socket_path);
        /* Anyone may connect: who may do what is decided per request from SO_PEERCRED. */
        if (chmod(m->socket_path, 0666) < 0)
                return log_error_errno(negative_errno(), "chmod %s: %m", m->socket_path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(negative_errno(), "listen: %m");
        m->listen_fd = TAKE_FD(fd);
        log_info("listening on %s", m->socket_path);
        return 0;
}
