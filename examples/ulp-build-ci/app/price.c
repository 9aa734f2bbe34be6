/* Version 1 has a bug: the bulk discount (10 %) is given on every order, not from 10
 * items on. */
#include "price.h"

static int discount_percent = 10;

long price(long items) {
        long p = items * 100;
        return p - p * discount_percent / 100;
}
