#include <ulp/patch.h>
/* New versions of the assembly functions: x + 1 + 10 * i. */
ULP_PATCH_INFO("asm-fix", "new versions of the relocator's functions");
long n_rip_load(long x) { return x + 1; }
long n_rip_store(long x) { return x + 11; }
long n_lea(long x) { return x + 21; }
long n_jcc(long x) { return x + 31; }
long n_jrcxz(long x) { return x + 41; }
long n_call(long x) { return x + 51; }
long n_endbr(long x) { return x + 61; }
long n_held(void) { return 0; }
ULP_FUNC(ULP_MAIN, "a_rip_load", n_rip_load);
ULP_FUNC(ULP_MAIN, "a_rip_store", n_rip_store);
ULP_FUNC(ULP_MAIN, "a_lea", n_lea);
ULP_FUNC(ULP_MAIN, "a_jcc", n_jcc);
ULP_FUNC(ULP_MAIN, "a_jrcxz", n_jrcxz);
ULP_FUNC(ULP_MAIN, "a_call", n_call);
ULP_FUNC(ULP_MAIN, "a_endbr", n_endbr);
ULP_FUNC(ULP_MAIN, "held", n_held);
