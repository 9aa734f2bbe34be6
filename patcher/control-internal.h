/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What control.c, control-image.c and control-validate.c share, and no one else. */

#include "patcher/control.h"

/* The local copy (control-image.c): c->img mapped (or the thread's kept copy, cleared)
 * when it has none; all zeros again, touching nothing. */
int control__alloc(Control *c);
void control__clear(Control *c);

/* The header h of a block that says it lives at self, bounded (control-validate.c):
 * 0, or -EBADMSG with what is wrong in why. */
int control__validate_header(const ControlHeader *h, uint64_t self, char *why, size_t why_len);
