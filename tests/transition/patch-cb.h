/* Callbacks that append to the victim's cblog (what the victim prints as cb=). */
#include <stdatomic.h>
#include <ulp/patch.h>

static char *cblog_p;
static atomic_ulong *cb_calls_v2_p;
ULP_REF(ULP_MAIN, "cblog", cblog_p);
ULP_REF(ULP_MAIN, "calls_v2", cb_calls_v2_p);

/* The size of cblog in tests/victims/consistency.c. */
#define CBLOG_SIZE 256

/* Appends ",s[:num]" to cblog. When it would not fit, the oldest entries go first: a
 * victim lives through any number of cycles. No libc: the callback runs on a thread
 * borrowed at an arbitrary point. */
static void cb_append(const char *s, unsigned long num, int with_num) {
        char entry[64], digits[24];
        unsigned len = 0, used = 0, drop = 0;
        int n = 0;

        while (*s && len < sizeof(entry) - sizeof(digits) - 2)
                entry[len++] = *s++;
        if (with_num) {
                entry[len++] = ':';
                do
                        digits[n++] = (char)('0' + num % 10);
                while ((num /= 10) > 0);
                while (n > 0)
                        entry[len++] = digits[--n];
        }
        while (used < CBLOG_SIZE && cblog_p[used])
                used++;
        /* Whole entries off the front until the comma, the entry and the NUL fit. */
        while (used - drop + 1 + len + 1 > CBLOG_SIZE) {
                while (drop < used && cblog_p[drop] != ',')
                        drop++;
                if (drop < used)
                        drop++;
        }
        for (unsigned i = drop; i < used; i++)
                cblog_p[i - drop] = cblog_p[i];
        used -= drop;
        if (used)
                cblog_p[used++] = ',';
        for (unsigned i = 0; i < len; i++)
                cblog_p[used++] = entry[i];
        cblog_p[used] = 0;
}
