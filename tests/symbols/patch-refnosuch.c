#include <ulp/patch.h>
ULP_PATCH_INFO("refnosuch", "refers to a variable the victim does not have");
static int *nosuch_p;
static int price_v3(int x) { return x + (nosuch_p ? *nosuch_p : 0); }
ULP_FUNC(ULP_MAIN, "price", price_v3);
ULP_REF(ULP_MAIN, "no_such_variable", nosuch_p);
