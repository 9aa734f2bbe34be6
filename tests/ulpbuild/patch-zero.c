/* zero_fn() replaced by hand: refused, as its size in the symbol table is 0. */
#include <ulp/patch.h>
ULP_PATCH_INFO("zero-by-hand", "zero_fn(), which has no size");
int zero_v2(void) { return 2; }
ULP_FUNC(ULP_MAIN, "zero_fn", zero_v2);
