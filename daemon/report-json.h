/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * UlpReport and UlpProcessStatus to and from JSON: the objects ulpctl --json prints
 * and the ones ulpd and ulpctl exchange on the socket. One shape for both, so what a
 * script reads from `ulpctl --json` is what travelled on the wire.
 *
 * Report:  {"ok":bool,"error":"one line","errno":N,"errno_name":"ETIMEDOUT",
 *           "patch":"name","threads":N,"switched":N,"retries":N,
 *           "max_thread_stop_us":N,"max_stw_us":N,"total_ms":N,"forced":bool,
 *           "warnings":["..."],"stragglers":[{"tid":N,"name":"comm","function":"f+0x1"}]}
 *          ("errno" is the positive errno of the failure, 0 on success.)
 * Status:  {"processes":[{"pid":N,"comm":"...","patches":[{"name":"...",
 *           "state":"patched"|"transition"|"unpatched","forced":bool,"replace":bool,
 *           "functions":[{"object":"","symbol":"...","addr":"0x..."}],"stragglers":[...]}]}]}
 *          ("addr", the function's address in the process, was a number before; a number
 *          is still read. The shapes, field by field: docs/json.md, docs/ulpctl.schema.json.)
 */

#include <json-c/json.h>
#include <stddef.h>

#include "ulp/libulp.h"

/* Builds the report object. error is 0 or the -errno the operation returned; when the
 * report has no message, the error's strerror() is used. Returns a new reference, or
 * NULL on allocation failure. */
struct json_object *report_to_json(const UlpReport *r, int error);

/* Fills *ret from a report object (unknown keys ignored, missing ones zero) and
 * *ret_error (optional) with 0 or -errno. The warnings and stragglers are allocated
 * with malloc() as ulp_report_done() expects; release with report_json_done() (or
 * ulp_report_done()). Returns 0, -EBADMSG when o is not a report, -ENOMEM. */
int report_from_json(struct json_object *o, UlpReport *ret, int *ret_error);

/* Frees what report_from_json() allocated and zeroes r. Same as ulp_report_done(), for
 * programs that do not link the core. */
void report_json_done(UlpReport *r);

/* Builds the status object for n processes. Returns a new reference, or NULL. */
struct json_object *status_to_json(const UlpProcessStatus *s, size_t n);

/* Parses a status object into a malloc()ed array of *ret_n processes. Each element's
 * arrays are malloc()ed; free them with status_json_free(). A state this build does not
 * know reads as unpatched. Returns 0, -EBADMSG, -ENOMEM. */
int status_from_json(struct json_object *o, UlpProcessStatus **ret, size_t *ret_n);

/* Frees an array from status_from_json() (each element, then the array). */
void status_json_free(UlpProcessStatus *s, size_t n);

/* How the "error" of a process whose status alone does not fit in a message of the
 * protocol begins (ulpd lists it so, docs/limits.md): its block was not refused, and
 * ulpctl says so. */
#define STATUS_TOO_LARGE "its status is too large to send"

/* A one-line reason for error (negative errno), e.g. "ETIMEDOUT". */
const char *errno_name(int error);
