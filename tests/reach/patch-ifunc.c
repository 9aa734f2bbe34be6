#include <string.h>
#include <ulp/patch.h>
/* Calls strlen, memcpy and strcmp: IFUNCs of glibc (built with -fno-builtin, so that they
 * stay calls). */
ULP_PATCH_INFO("ifunc-fix", "word_fn through strlen, memcpy and strcmp");
int word_v2(const char *s) {
        char buf[32];
        size_t n = strlen(s);
        if (n >= sizeof(buf))
                n = sizeof(buf) - 1;
        memcpy(buf, s, n);
        buf[n] = 0;
        return strcmp(buf, "hello") == 0 ? 500 + (int)n : 900 + (int)n;
}
ULP_FUNC(ULP_MAIN, "word_fn", word_v2);
