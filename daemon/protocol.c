/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Newline-delimited JSON over a Unix stream socket, with fds passed alongside.
 * See protocol.h for the messages.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/macro.h"
#include "daemon/protocol.h"

void msgreader_init(MsgReader *r) {
        *r = (MsgReader) {};
        for (size_t i = 0; i < PROTOCOL_FDS_MAX; i++)
                r->fds[i] = -1;
}

void msgreader_done(MsgReader *r) {
        for (size_t i = 0; i < r->n_fds; i++)
                if (r->fds[i] >= 0)
                        close(r->fds[i]);
        free(r->buf);
        msgreader_init(r);
}

/* Keeps the fds that came, up to what one request may carry. Returns false when some
 * had to be closed: more than any request needs, which no honest client sends. */
static bool keep_fds(MsgReader *r, struct msghdr *mh) {
        bool all = true;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                size_t n;
                int *fds;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                fds = (int *) CMSG_DATA(c);
                for (size_t i = 0; i < n; i++) {
                        int fd;

                        memcpy(&fd, fds + i, sizeof(int));
                        if (r->n_fds < PROTOCOL_FDS_MAX)
                                r->fds[r->n_fds++] = fd;
                        else {
                                close(fd);   /* a client flooding us with fds */
                                all = false;
                        }
                }
        }
        return all;
}

int msgreader_fill(MsgReader *r, int sock) {
        union {
                struct cmsghdr h;
                /* one sendmsg()'s worth: the kernel passes at most SCM_MAX_FD (253) */
                char buf[CMSG_SPACE(sizeof(int) * 253)];
        } control;
        struct iovec iov;
        struct msghdr mh = {};
        ssize_t n;

        if (r->len >= PROTOCOL_MESSAGE_MAX)
                return -EMSGSIZE;
        if (r->size - r->len < 4096) {
                size_t size = MAX(r->size * 2, (size_t) 8192);
                char *b;

                size = MIN(size, (size_t) PROTOCOL_MESSAGE_MAX + 1);
                b = realloc(r->buf, size);
                if (!b)
                        return -ENOMEM;
                r->buf = b;
                r->size = size;
        }
        iov = (struct iovec) { r->buf + r->len, r->size - r->len };
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = &control;
        mh.msg_controllen = sizeof(control);

        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : negative_errno();
        /* More fds than a request may carry, or than the buffer holds (the kernel closed
         * the rest): no honest client sends them. */
        if (!keep_fds(r, &mh) || (mh.msg_flags & MSG_CTRUNC))
                return -ETOOMANYREFS;
        if (n == 0)
                r->eof = true;
        r->len += (size_t) n;
        return (int) n;
}

int msgreader_next(MsgReader *r, struct json_object **ret) {
        struct json_tokener *tok;
        struct json_object *o, *v;
        char *nl;
        size_t line;

        /* Only the bytes that came since the last look: a client sending a long line a
         * byte at a time must not make every read rescan all of it. */
        nl = r->len > r->scanned ? memchr(r->buf + r->scanned, '\n', r->len - r->scanned) : NULL;
        if (!nl) {
                r->scanned = r->len;
                return r->len >= PROTOCOL_MESSAGE_MAX ? -EMSGSIZE : 0;
        }
        line = (size_t) (nl - r->buf);
        r->scanned = 0;

        tok = json_tokener_new_ex(32);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, r->buf, (int) line);
        /* Anything but exactly one complete object on the line is garbage. */
        if (o && (json_tokener_get_error(tok) != json_tokener_success ||
                  (size_t) json_tokener_get_parse_end(tok) != line)) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);

        memmove(r->buf, nl + 1, r->len - line - 1);
        r->len -= line + 1;

        if (!o || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "version", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) != PROTOCOL_VERSION) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 1;
}

int msgreader_take_fd(MsgReader *r) {
        int fd;

        if (r->n_fds == 0)
                return -1;
        fd = r->fds[0];
        memmove(r->fds, r->fds + 1, (r->n_fds - 1) * sizeof(int));
        r->fds[--r->n_fds] = -1;
        return fd;
}

char *protocol_format(struct json_object *o, size_t *ret_len) {
        const char *s;
        size_t len;
        char *b;

        json_object_object_add(o, "version", json_object_new_int(PROTOCOL_VERSION));
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return NULL;
        len = strlen(s);
        b = malloc(len + 2);
        if (!b)
                return NULL;
        memcpy(b, s, len);
        b[len] = '\n';
        b[len + 1] = 0;
        *ret_len = len + 1;
        return b;
}

int protocol_send(int sock, struct json_object *o, int pass_fd) {
        return protocol_send_fds(sock, o, &pass_fd, pass_fd >= 0 ? 1 : 0);
}

int protocol_send_fds(int sock, struct json_object *o, const int *fds, size_t n_fds) {
        _cleanup_free_ char *b = NULL;
        size_t len, done = 0, sent_fds = 0;

        if (n_fds > PROTOCOL_FDS_MAX)
                return -E2BIG;
        b = protocol_format(o, &len);
        if (!b)
                return -ENOMEM;
        if (len > PROTOCOL_MESSAGE_MAX)
                return -EMSGSIZE;
        while (done < len) {
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int) * PROTOCOL_FDS_PER_SEND)];
                } control = {};
                size_t k = MIN(n_fds - sent_fds, (size_t) PROTOCOL_FDS_PER_SEND);
                /* descriptors travel with bytes: one byte each while more batches follow */
                struct iovec iov = { b + done, n_fds - sent_fds > k ? 1 : len - done };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t n;

                if (k > 0) {
                        struct cmsghdr *c;

                        mh.msg_control = &control;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * k);
                        c = CMSG_FIRSTHDR(&mh);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(sizeof(int) * k);
                        memcpy(CMSG_DATA(c), fds + sent_fds, sizeof(int) * k);
                }
                n = sendmsg(sock, &mh, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                sent_fds += k;
                done += (size_t) n;
        }
        return sent_fds == n_fds ? 0 : -EMSGSIZE;
}

struct json_object *protocol_new_message(const char *type) {
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        json_object_object_add(o, "version", json_object_new_int(PROTOCOL_VERSION));
        json_object_object_add(o, "type", json_object_new_string(type));
        return o;
}

struct json_object *protocol_new_error(int error, const char *message) {
        struct json_object *o = protocol_new_message("error");

        if (!o)
                return NULL;
        json_object_object_add(o, "error", json_object_new_string(message ?: strerror(-error)));
        json_object_object_add(o, "errno", json_object_new_int(error < 0 ? -error : EIO));
        return o;
}

const char *protocol_get_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

bool protocol_get_bool(struct json_object *o, const char *key, bool def) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
                return def;
        return json_object_get_boolean(v);
}

/* 0 and *ret when present and in range; -ENOENT when absent; -EINVAL otherwise. */
int protocol_get_int(struct json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret) {
        struct json_object *v;
        int64_t x;

        if (!json_object_object_get_ex(o, key, &v))
                return -ENOENT;
        if (!json_object_is_type(v, json_type_int))
                return -EINVAL;
        errno = 0;
        x = json_object_get_int64(v);
        if (errno != 0 || x < min || x > max)
                return -EINVAL;
        *ret = x;
        return 0;
}
