/* twice() replaced by hand: `ulpctl check` must refuse it as ulp-build refuses tiny.diff. */
#include <ulp/patch.h>
ULP_PATCH_INFO("twice-by-hand", "twice() of tiny.c, written by hand");
int twice_v2(int x) { return x + x + 1; }
ULP_FUNC(ULP_MAIN, "twice", twice_v2);
