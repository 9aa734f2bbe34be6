/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Fields of a client's request (protocol.h) that ulpd turns into its own values. Every
 * byte comes from an unprivileged client: each helper bounds what it accepts and
 * refuses the rest, so that ulpd's methods (ulpd-method-*.c) only see checked values.
 * Kept apart from them so that they can be fed arbitrary input without a running service.
 */

#include <json-c/json.h>
#include <sys/types.h>

#include "daemon/protocol.h"
#include "ulp/libulp.h"

#define PIDS_MAX PROTOCOL_PIDS_MAX   /* process ids in one request (docs/limits.md) */

/* "options": absent gives the defaults; anything but an object of known, in-range
 * fields is -EINVAL. */
int parse_options(struct json_object *q, UlpOptions *ret);

/* "pids": absent or empty gives *ret == NULL, *ret_n == 0; a list of at most PIDS_MAX
 * distinct positive 32-bit process ids gives a malloc()ed array; -E2BIG for more,
 * -EINVAL for anything else. */
int parse_pids(struct json_object *q, pid_t **ret, size_t *ret_n);

/* The patch file name a client sent: a plain file name of sane length, or NULL. */
const char *sane_name(const char *s);
