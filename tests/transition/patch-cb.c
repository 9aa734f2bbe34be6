#include <ulp/patch.h>
ULP_PATCH_INFO("cb", "outer/inner version 2, with callbacks");
#include "patch-v2.h"
#include "patch-cb.h"

/* Each callback logs its name and the victim's count of version-2 calls then. */
static int pre_patch(void) { cb_append("pre", atomic_load(cb_calls_v2_p), 1); return 0; }
static void post_patch(void) { cb_append("post", atomic_load(cb_calls_v2_p), 1); }
static int pre_unpatch(void) { cb_append("preun", 0, 0); return 0; }
static void post_unpatch(void) { cb_append("postun", 0, 0); }
ULP_CALLBACKS(ULP_MAIN, pre_patch, post_patch, pre_unpatch, post_unpatch);
