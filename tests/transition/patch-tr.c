#include <ulp/patch.h>
ULP_PATCH_INFO("tr", "outer/inner version 2");
#include "patch-tr.h"
