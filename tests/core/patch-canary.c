#include <ulp/patch.h>
/* The patch the mutation test breaks: a function, a reference into the victim's data
 * and a table of pointers, so that records and relocations of each kind are there to
 * be mutated. compute(10) is 30 with it. */
ULP_PATCH_INFO("canary-fix", "compute returns x*3");
static int *data_p;
ULP_REF(ULP_MAIN, "canary_data", data_p);
static const char *const words[] = { "one", "two", "three" };
int compute_v2(int x) { return x * 3 + (data_p[0] - 1) + (words[1][0] - 't'); }
ULP_FUNC(ULP_MAIN, "compute", compute_v2);
