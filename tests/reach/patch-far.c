#include <ulp/patch.h>
/* One fix, two objects: the executable and a shared library, far apart. */
ULP_PATCH_INFO("far-fix", "mid_fn and lib_fn in one transition");
int mid_v2(int x) { return x * 200; }
int lib_v2(int x) { return x + 5000; }
ULP_FUNC(ULP_MAIN, "mid_fn", mid_v2);
ULP_FUNC("libreach.so", "lib_fn", lib_v2);
