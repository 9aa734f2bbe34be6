#include <ulp/patch.h>
ULP_PATCH_INFO("nosym", "a function the target does not have");
int nope_v2(int x) { return x; }
ULP_FUNC(ULP_MAIN, "no_such_function", nope_v2);
