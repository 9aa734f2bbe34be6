/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A patch named as the shadow-variable runtime's mapping: refused before loading. */
#include "ulp/patch.h"
#include "count.h"

ULP_PATCH_INFO("ulp-shadow-runtime", "takes the runtime's name");
ULP_FUNC(ULP_MAIN, "audit", audit_counted);
