/* A program that keeps serving: one deposit every 10 ms, and a line saying what it saw. */
#include <stdio.h>
#include <unistd.h>

#include "bank.h"

int main(void) {
        volatile int helpers;

        setvbuf(stdout, NULL, _IOLBF, 0);
        for (;;) {
                int balance = deposit(1, 10);
                int fee = fee_on(100);
                printf("balance %d deposits %d status %s fee %d taken %d\n", balance, audit(), status(), fee,
                       fees_taken_total());
                helpers = twice(1) + thrice(1) + sum_to(3) + ledger_scale(1);
                (void)helpers;
                usleep(10000);
        }
}
