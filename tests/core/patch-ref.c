#include <ulp/patch.h>
/* Calls an exported function of the target and reads its static variable. */
ULP_PATCH_INFO("ref-fix", "ref_value uses target_helper and secret");
int target_helper(int x);
static int *secret_p;
ULP_REF(ULP_MAIN, "secret", secret_p);
int ref_value_v2(int x) { return target_helper(x) + *secret_p * 1000; }
ULP_FUNC(ULP_MAIN, "ref_value", ref_value_v2);
