#include <ulp/patch.h>
ULP_PATCH_INFO("compute-fix", "compute returns x*3");
int compute_v2(int x) { return x * 3; }
ULP_FUNC(ULP_MAIN, "compute", compute_v2);
