#include <ulp/patch.h>
ULP_PATCH_INFO("nosuch", "names a function the victim does not have");
static int nosuch_v2(int x) { return x; }
ULP_FUNC(ULP_MAIN, "no_such_function", nosuch_v2);
