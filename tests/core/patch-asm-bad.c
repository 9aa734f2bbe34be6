#include <ulp/patch.h>
#ifndef DATA_LABEL
/* a_backjump loops back into its first bytes: the relocator must refuse it. */
ULP_PATCH_INFO("asm-bad", "a function that cannot be redirected");
long n_backjump(long x) { return x; }
ULP_FUNC(ULP_MAIN, "a_backjump", n_backjump);
#else
/* a_data_label is a sized symbol in .data with no type: not code, refused. */
ULP_PATCH_INFO("asm-data", "a data label named as a function");
long n_data(long x) { return x; }
ULP_FUNC(ULP_MAIN, "a_data_label", n_data);
#endif
