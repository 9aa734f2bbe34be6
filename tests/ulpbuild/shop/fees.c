#include "bank.h"

int fee_percent = 2;            /* global: position-independent code reaches it through the GOT */
static int fees_taken;          /* how many fees the library has taken */

int fees_taken_total(void) {
        return fees_taken;
}

int fee_on(int amount) {
        fees_taken++;
        return amount * fee_percent / 100;
}
