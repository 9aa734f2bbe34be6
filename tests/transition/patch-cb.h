/* Callbacks that append to the victim's cblog (what the victim prints as cb=). */
#include <stdatomic.h>
#include <ulp/patch.h>

static char *cblog_p;
static atomic_ulong *cb_calls_v2_p;
ULP_REF(ULP_MAIN, "cblog", cblog_p);
ULP_REF(ULP_MAIN, "calls_v2", cb_calls_v2_p);

/* No libc: the callback runs on a thread borrowed at an arbitrary point. */
static void cb_append(const char *s, unsigned long num, int with_num) {
        char *p = cblog_p;
        char digits[24];
        int n = 0;
        while (*p)
                p++;
        if (p != cblog_p)
                *p++ = ',';
        while (*s)
                *p++ = *s++;
        if (with_num) {
                *p++ = ':';
                do
                        digits[n++] = (char)('0' + num % 10);
                while ((num /= 10) > 0);
                while (n > 0)
                        *p++ = digits[--n];
        }
        *p = 0;
}
