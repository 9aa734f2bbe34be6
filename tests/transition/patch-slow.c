#include <stdatomic.h>
#include <time.h>
#include <ulp/patch.h>
ULP_PATCH_INFO("slow", "slow() version 2: same time, same result, counted in slow_v2_calls");
static unsigned *slow_usec_p;
static atomic_ulong *slow_v2_calls_p;
ULP_REF(ULP_MAIN, "slow_usec", slow_usec_p);
ULP_REF(ULP_MAIN, "slow_v2_calls", slow_v2_calls_p);

int slow_v2(void) {
        struct timespec ts = { *slow_usec_p / 1000000, (long)(*slow_usec_p % 1000000) * 1000 };
        nanosleep(&ts, NULL);
        atomic_fetch_add(slow_v2_calls_p, 1);
        return 7;
}
ULP_FUNC(ULP_MAIN, "slow", slow_v2);
