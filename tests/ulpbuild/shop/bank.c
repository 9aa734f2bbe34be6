#include "bank.h"

static int deposits;            /* how many deposits the program has seen */
static int balance[4];
int rate = 10;                  /* the fee is 1/rate of the amount */

static inline int fee(int amount) {
        return amount / rate;
}

int deposit(int account, int amount) {
        deposits++;
        balance[account & 3] += amount - fee(amount);
        return balance[account & 3];
}

int withdraw(int account, int amount) {
        balance[account & 3] -= amount + fee(amount);
        return balance[account & 3];
}

int audit(void) {
        return deposits;
}

const char *status(void) {
        return "fees on";
}
