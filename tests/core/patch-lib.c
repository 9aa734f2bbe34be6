#include <ulp/patch.h>
ULP_PATCH_INFO("lib-fix", "lib_value returns x+2000");
int lib_value_v2(int x) { return x + 2000; }
ULP_FUNC("libvictim.so", "lib_value", lib_value_v2);
