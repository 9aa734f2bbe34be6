#include <ulp/patch.h>
ULP_PATCH_INFO("nopad-fix", "functions too small to patch");
int nopad_v2(void) { return 1; }
ULP_FUNC(ULP_MAIN, "nopad_fn", nopad_v2);
