#include <ulp/patch.h>
ULP_PATCH_INFO("rep-b", "ga returns 20");
int ga_v2(void) { return 20; }
ULP_FUNC(ULP_MAIN, "ga", ga_v2);
