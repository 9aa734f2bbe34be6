/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Version 2 of the consistency victim's outer, inner and blocker. */
#include <ulp/patch.h>

ULP_PATCH_INFO("consistency", "outer/inner version 2");
#include "patch-v2.h"
