#include <ulp/patch.h>
/* Linked with -z pack-relative-relocs: the pointers below are RELR relocations, read at
 * run time (volatile: never folded at compile time). */
ULP_PATCH_INFO("relr-fix", "mid_fn reads its factors through pointers");
static int k3 = 3, k7 = 7;
static int *volatile table[] = { &k3, &k7 };
static const char *volatile names[] = { "relr", "ok" };
int mid_v3(int x) { return x * *table[0] * 100 + *table[1] + (names[1][0] == 'o' ? 0 : 100000); }
ULP_FUNC(ULP_MAIN, "mid_fn", mid_v3);
