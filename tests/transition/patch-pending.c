#include <ulp/patch.h>
ULP_PATCH_INFO("pending", "base_value returns 2, plugin_value 200 (libplugin.so is loaded later)");
int base_value_v2(void) { return 2; }
int plugin_value_v2(void) { return 200; }
ULP_FUNC("libtrbase.so", "base_value", base_value_v2);
ULP_FUNC("libplugin.so", "plugin_value", plugin_value_v2);
