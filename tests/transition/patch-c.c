#include <ulp/patch.h>
ULP_PATCH_INFO("rep-c", "fa returns 30; replaces every earlier patch");
int fa_v3(void) { return 30; }
ULP_FUNC(ULP_MAIN, "fa", fa_v3);
ULP_REPLACE();
