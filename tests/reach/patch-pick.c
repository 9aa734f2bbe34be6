#include <ulp/patch.h>
/* Calls an IFUNC of libreach.so whose choice no GOT slot holds, and refers to it: its
 * resolver runs in the target. mid_fn(10) becomes 11 + 100 * 11. */
ULP_PATCH_INFO("pick-fix", "mid_fn through an IFUNC resolved in the target");
int reach_pick(int x);
static int (*pick_p)(int);
int mid_v4(int x) { return reach_pick(x) + 100 * pick_p(x); }
ULP_FUNC(ULP_MAIN, "mid_fn", mid_v4);
ULP_REF("libreach.so", "reach_pick", pick_p);
