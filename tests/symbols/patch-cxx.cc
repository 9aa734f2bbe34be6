// A C++ patch using the standard library: total() becomes the sum of a vector built
// per call, plus a string's length. TARGET_NAME is the mangled or the demangled name.
#include <numeric>
#include <string>
#include <vector>

#include <ulp/patch.h>

#include "cart.h"

namespace {
int total_v2(const shop::Cart *self, int tax) {
        std::vector<int> parts(static_cast<size_t>(self->items()), 100);
        std::string label("cart");
        return std::accumulate(parts.begin(), parts.end(), 0) + static_cast<int>(label.size()) + tax;
}
}

ULP_PATCH_INFO(PATCH_NAME, "shop::Cart::total returns 100 per item + 4 + tax");
ULP_FUNC(ULP_MAIN, TARGET_NAME, total_v2);
