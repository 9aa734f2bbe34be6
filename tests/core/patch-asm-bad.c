#include <ulp/patch.h>
#if !defined(DATA_LABEL) && !defined(OVERLAP) && !defined(OUTER) && !defined(INNER)
/* a_backjump loops back into its first bytes: the relocator must refuse it. */
ULP_PATCH_INFO("asm-bad", "a function that cannot be redirected");
long n_backjump(long x) { return x; }
ULP_FUNC(ULP_MAIN, "a_backjump", n_backjump);
#elif defined(OVERLAP) || defined(OUTER)
/* a_inner_entry starts 3 bytes into a_outer2, inside the bytes its entry jump replaces:
 * both in one patch (OVERLAP) refused; a_outer2 alone (OUTER) applies, and a patch of
 * a_inner_entry over it is refused. */
ULP_PATCH_INFO("asm-outer", "two entry points 3 bytes apart");
long n_outer2(long x) { return x + 1; }
ULP_FUNC(ULP_MAIN, "a_outer2", n_outer2);
#ifdef OVERLAP
long n_inner(long x) { return x + 2; }
ULP_FUNC(ULP_MAIN, "a_inner_entry", n_inner);
#endif
#elif defined(INNER)
ULP_PATCH_INFO("asm-inner", "the inner entry point alone");
long n_inner(long x) { return x + 2; }
ULP_FUNC(ULP_MAIN, "a_inner_entry", n_inner);
#else
/* a_data_label is a sized symbol in .data with no type: not code, refused. */
ULP_PATCH_INFO("asm-data", "a data label named as a function");
long n_data(long x) { return x; }
ULP_FUNC(ULP_MAIN, "a_data_label", n_data);
#endif
