#include <ulp/patch.h>
/* a_backjump loops back into its first bytes: the relocator must refuse it. */
ULP_PATCH_INFO("asm-bad", "a function that cannot be redirected");
long n_backjump(long x) { return x; }
ULP_FUNC(ULP_MAIN, "a_backjump", n_backjump);
