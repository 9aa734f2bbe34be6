/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared between the two translation units of the elf fixture. */

int other_entry(int x);
void *fixture_helper_main(void);
void *fixture_helper_other(void);
int fixture_compute(int x);
