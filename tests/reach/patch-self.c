#include <ulp/patch.h>
/* Defines an IFUNC of its own (static: an IRELATIVE relocation; SELF_GLOBAL: a PLT slot
 * bound to the patch's own IFUNC symbol): refused. */
ULP_PATCH_INFO("self-fix", "mid_fn through the patch's own IFUNC");
static int self_plain(int x) { return x + 4000; }
__attribute__((used)) static int (*self_resolver(void))(int) { return self_plain; }
#ifdef SELF_GLOBAL
int self_pick(int x) __attribute__((ifunc("self_resolver")));
#else
static int self_pick(int x) __attribute__((ifunc("self_resolver")));
#endif
int mid_v7(int x) { return self_pick(x); }
ULP_FUNC(ULP_MAIN, "mid_fn", mid_v7);
