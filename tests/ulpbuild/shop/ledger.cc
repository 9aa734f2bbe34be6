// The program's one C++ file: ulp-build refuses a fix that changes its object.
#include "bank.h"

int ledger_scale(int amount) {
        return amount * LEDGER_SCALE;
}
