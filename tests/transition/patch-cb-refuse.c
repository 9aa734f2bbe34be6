#include <ulp/patch.h>
ULP_PATCH_INFO("cb-refuse", "outer/inner version 2, but the pre-patch callback refuses");
#include "patch-v2.h"
#include "patch-cb.h"

static int pre_patch(void) { cb_append("refuse", 0, 0); return -1; }
static void post_patch(void) { cb_append("post", 0, 0); }
ULP_CALLBACKS(ULP_MAIN, pre_patch, post_patch, NULL, NULL);
