#include <ulp/patch.h>
/* Calls an IFUNC of libreach.so whose choice no GOT slot holds: refused. */
ULP_PATCH_INFO("pick-fix", "mid_fn through an unresolved IFUNC");
int reach_pick(int x);
int mid_v4(int x) { return reach_pick(x); }
ULP_FUNC(ULP_MAIN, "mid_fn", mid_v4);
