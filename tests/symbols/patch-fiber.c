#include <ulp/patch.h>
ULP_PATCH_INFO("fiber-fix", "fiber_value returns x+500");
static int fiber_value_v2(int x) { return x + 500; }
ULP_FUNC(ULP_MAIN, "fiber_value", fiber_value_v2);
