#include <ulp/patch.h>
ULP_PATCH_INFO("tiny", "a function too small for the jump");
int tiny_v2(void) { return 1; }
ULP_FUNC(ULP_MAIN, "tiny", tiny_v2);
