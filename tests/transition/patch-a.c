#include <ulp/patch.h>
ULP_PATCH_INFO("rep-a", "fa returns 10");
int fa_v2(void) { return 10; }
ULP_FUNC(ULP_MAIN, "fa", fa_v2);
