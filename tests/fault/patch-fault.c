#include <ulp/patch.h>
ULP_PATCH_INFO("fault", "outer/inner version 2, with callbacks, for the fault-injection test");
#include "patch-v2.h"

/* Each callback names itself in the victim's cblog (printed as cb=), overwriting it:
 * the test applies and reverts hundreds of times in one victim. No libc: the callback
 * runs on a thread borrowed at an arbitrary point. */
static char *cblog_p;
ULP_REF(ULP_MAIN, "cblog", cblog_p);

static void cb_set(const char *s) {
        char *p = cblog_p;
        while (*s)
                *p++ = *s++;
        *p = 0;
}

static int pre_patch(void) { cb_set("pre"); return 0; }
static void post_patch(void) { cb_set("post"); }
static int pre_unpatch(void) { cb_set("preun"); return 0; }
static void post_unpatch(void) { cb_set("postun"); }
ULP_CALLBACKS(ULP_MAIN, pre_patch, post_patch, pre_unpatch, post_unpatch);
