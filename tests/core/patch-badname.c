#include <ulp/patch.h>
/* A name with a newline would forge a line in ulpd's log: refused everywhere. */
ULP_PATCH_INFO("compute\nfix", "a name with a newline");
int compute_v2(int x) { return x * 3; }
ULP_FUNC(ULP_MAIN, "compute", compute_v2);
