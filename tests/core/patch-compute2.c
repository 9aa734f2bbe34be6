#include <ulp/patch.h>
ULP_PATCH_INFO("compute-fix2", "compute returns x*4");
int compute_v3(int x) { return x * 4; }
ULP_FUNC(ULP_MAIN, "compute", compute_v3);
