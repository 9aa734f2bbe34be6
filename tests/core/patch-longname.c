#include <ulp/patch.h>
/* The longest name allowed, 64 bytes (LONG_NAME_LEN=64 selects it), or one byte more:
 * a name is kept whole everywhere or refused, never cut. */
#if LONG_NAME_LEN == 64
#define NAME "compute-fix-with-a-name-of-exactly-sixty-four-bytes-0123456789ab"
#else
#define NAME "compute-fix-with-a-name-of-exactly-sixty-five-bytes-0123456789abc"
#endif
_Static_assert(sizeof(NAME) - 1 == LONG_NAME_LEN, "name length");
ULP_PATCH_INFO(NAME, "a long name");
int compute_v2(int x) { return x * 3; }
ULP_FUNC(ULP_MAIN, "compute", compute_v2);
