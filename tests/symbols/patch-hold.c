#include <unistd.h>
#include <ulp/patch.h>
ULP_PATCH_INFO("hold-forever", "hold blocks for good: its thread stays in this patch's code");
static int hold_v2(int x) {
        for (;;)
                pause();
        return x;
}
ULP_FUNC(ULP_MAIN, "hold", hold_v2);
