#include <ulp/patch.h>
ULP_PATCH_INFO("badbid", "pinned to another build");
ULP_BUILD_ID(ULP_MAIN, "00112233445566778899aabbccddeeff00112233");
int compute_v9(int x) { return x * 9; }
ULP_FUNC(ULP_MAIN, "compute", compute_v9);
