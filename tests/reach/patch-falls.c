#include <ulp/patch.h>
ULP_PATCH_INFO("falls-fix", "a tiny function whose last instruction falls through");
int falls_v2(void) { return 1; }
ULP_FUNC(ULP_MAIN, "nopad_next", falls_v2);
