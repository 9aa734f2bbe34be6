/* Version 2 of the consistency victim's outer/inner/blocker (consistency.c), shared by
 * its patches. Include once per patch, after ULP_PATCH_INFO. */
#include <stdatomic.h>
#include <unistd.h>
#include <ulp/patch.h>

static atomic_ulong *calls_v2_p, *mixed_p;
static volatile int *spin_p;
static void (*note_mix_p)(int, int, int);
ULP_REF(ULP_MAIN, "calls_v2", calls_v2_p);
ULP_REF(ULP_MAIN, "mixed", mixed_p);
ULP_REF(ULP_MAIN, "spin", spin_p);
ULP_REF(ULP_MAIN, "note_mix", note_mix_p);

int inner(void);

int inner_v2(void) {
        for (int i = 0; i < 8; i++)
                *spin_p += i;
        return 2;
}

int outer_v2(void) {
        int a = inner();
        usleep(200);
        int b = inner();
        if (a != 2 || b != 2) {
                atomic_fetch_add(mixed_p, 1);
                note_mix_p(2, a, b);
        }
        atomic_fetch_add(calls_v2_p, 1);
        return a + b;
}

int blocker_v2(void) {
        return inner();
}

ULP_FUNC(ULP_MAIN, "inner", inner_v2);
ULP_FUNC(ULP_MAIN, "outer", outer_v2);
ULP_FUNC(ULP_MAIN, "blocker", blocker_v2);
