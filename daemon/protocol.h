/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The ulpd wire protocol, shared by ulpd and ulpctl.
 *
 * A Unix stream socket carries newline-delimited JSON objects, one per line, each at
 * most PROTOCOL_MESSAGE_MAX bytes including the newline. Every message has
 * "version": PROTOCOL_VERSION. A patch travels as a file descriptor (SCM_RIGHTS)
 * attached to the bytes of the request that uses it ("apply", "check", optionally
 * "revert"); ulpd never opens a path a client names.
 *
 * Access proofs: "apply", "revert", "check" and "status" may carry "targets":[N...],
 * up to PROTOCOL_TARGETS_MAX distinct pids; for each, in order, two descriptors follow
 * the patch's: /proc/N/mem that the client opened O_RDWR with its own credentials (the
 * kernel's ptrace access check decides there), then a pidfd of N (pidfd_open). They
 * ride on the first bytes of the line, at most PROTOCOL_FDS_PER_SEND per sendmsg(). A
 * request whose descriptors do not number 2 per target (plus the patch) is refused. For
 * a client other than root, ulpd works only on pids it has a valid proof for (others are
 * refused with "not allowed to trace process N: ..."; --all means the proven ones) and
 * binds each operation to the program the proof's descriptor refers to (a target that
 * executed a new program since is refused before anything is written). Root's pids
 * without a proof use ulpd's own authority. Requests without "targets" are those of
 * earlier clients: valid for root, refused per pid for others. See docs/security.md.
 *
 * Requests (client -> ulpd), one at a time per connection; the next request may be
 * sent once the previous one got its final reply:
 *   {"version":1,"method":"apply","pids":[N...],"all":bool,"persist":bool,
 *    "name":"fix.so","wait":bool,"options":{"timeout_ms":N,"force":bool,
 *    "global":bool,"return_trap":bool},"targets":[N...]}      + patch fd + proofs
 *   {"version":1,"method":"revert","pids":[...],"all":bool,"persist":bool,
 *    "name":"NAME","wait":bool,"options":{...},"targets":[...]}
 *                                                  (+ patch fd: name from it) + proofs
 *   ("persist": a sticky patch, docs/glossary.md; "sticky" is accepted as well;
 *   "parts": true, the client takes the results in several messages, below)
 *   {"version":1,"method":"check","pid":N,"name":"fix.so","targets":[N]} + patch fd + proof
 *   {"version":1,"method":"status","pid":N,"parts":true,"targets":[...]}
 *                                                   (pid 0 or absent: all) + proofs
 *   ("parts": the client takes the reply in several messages, below; without it, the
 *   reply is one message, or an error when it would not fit in one)
 *   {"version":1,"method":"ping"}
 *
 * Replies (ulpd -> client):
 *   {"version":1,"type":"progress","pid":N,"switched":N,"total":N,       zero or more
 *    "straggler":{"tid":N,"name":"comm","function":"f+0x1"}}  (the worst one; while any)
 *   {"version":1,"type":"started","pid":N}                           with wait=false
 *   {"version":1,"type":"result_part","results":[...]}     zero or more, with "parts"
 *   {"version":1,"type":"result","results":[{"pid":N, <report>}...],"results_total":N}
 *                                                                    final: apply/revert
 *   (with "parts", at most 256 results and 64 KiB in each; results_total counts those of
 *   every part and the final's own, in the order of the request)
 *   {"version":1,"type":"result","report":{<report>}}                final: check
 *   {"version":1,"type":"status_part","processes":[...]}   zero or more, with "parts"
 *   {"version":1,"type":"status","processes":[...],"processes_total":N,
 *    "daemon":{...},"patch_dir":{...}}                                final: status
 *   (with "parts", each part holds at most 32 processes and 64 KiB, and the next one is
 *   made once the client read the last; the final message's processes_total counts
 *   those of every part and its own. The client puts them together in order: the
 *   document one message was. A process whose own entry does not fit in a message is
 *   listed with its pid, comm and an "error" saying so. docs/limits.md)
 *   {"version":1,"type":"pong","daemon_version":"0.1.0"}             final: ping
 *   {"version":1,"type":"error","error":"one line","errno":N}        final: refused request
 * <report> is report_to_json()'s object. After an error for a malformed, oversized or
 * out-of-order message ulpd closes the connection. A connection ulpd cannot take (too
 * many of that uid, or in all) and a request not received whole in time get one error
 * line and end of file: docs/limits.md.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PROTOCOL_VERSION 1
#define PROTOCOL_MESSAGE_MAX (256u * 1024u)
#define PROTOCOL_SOCKET_DEFAULT "/run/ulp/ulpd.sock"
#define PROTOCOL_PIDS_MAX 1024                          /* process ids per request (docs/limits.md) */
#define PROTOCOL_TARGETS_MAX 256                        /* access proofs per request */
#define PROTOCOL_FDS_MAX (1 + 2 * PROTOCOL_TARGETS_MAX)  /* the patch, then two per target */
#define PROTOCOL_FDS_PER_SEND 250                       /* the kernel takes at most 253 at once */

/* Input side of one connection: bytes not yet consumed and the fds that came with them. */
typedef struct MsgReader {
        char *buf;
        size_t len, size;
        size_t scanned;          /* buf[0..scanned) holds no newline: never searched again */
        int fds[PROTOCOL_FDS_MAX];
        size_t n_fds;
        bool eof;
} MsgReader;

void msgreader_init(MsgReader *r);
void msgreader_done(MsgReader *r);

/* One recvmsg() from sock into r (fds received are kept, extra ones closed). Returns the
 * number of bytes read (0 at end of file, r->eof set), -EAGAIN when nothing is there on
 * a non-blocking socket, -EMSGSIZE when the buffered bytes exceed the limit without a
 * newline, -ETOOMANYREFS when one message carried more than PROTOCOL_FDS_MAX fds (the
 * kernel closed those that did not fit), or -errno. */
int msgreader_fill(MsgReader *r, int sock);

/* Takes the next complete message out of r. Returns 1 and *ret (a new reference) when
 * one was there, 0 when more bytes are needed, -EMSGSIZE when a line is too long,
 * -EBADMSG when a line is not a JSON object or has the wrong "version". */
int msgreader_next(MsgReader *r, struct json_object **ret);

/* Takes ownership of the oldest fd received, or returns -1 when none came. */
int msgreader_take_fd(MsgReader *r);

/* Serialises o as one line (with "version" set). Returns a malloc()ed string and its
 * length in *ret_len, or NULL. */
char *protocol_format(struct json_object *o, size_t *ret_len);

/* Sends o as one line on a blocking socket, with pass_fd (if >= 0) attached. Returns
 * 0 or -errno. */
int protocol_send(int sock, struct json_object *o, int pass_fd);

/* The same with n_fds descriptors attached in order (at most PROTOCOL_FDS_MAX), spread
 * over the first bytes of the line PROTOCOL_FDS_PER_SEND at a time. */
int protocol_send_fds(int sock, struct json_object *o, const int *fds, size_t n_fds);

/* A new {"version":1,"type":type} object. */
struct json_object *protocol_new_message(const char *type);

/* A new {"version":1,"type":"error","error":message,"errno":-error}. */
struct json_object *protocol_new_error(int error, const char *message);

static inline bool protocol_streq(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

/* Helpers to read fields of a received message, returning a default when absent or of
 * the wrong type. */
const char *protocol_get_string(struct json_object *o, const char *key);
bool protocol_get_bool(struct json_object *o, const char *key, bool def);
int protocol_get_int(struct json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret);
