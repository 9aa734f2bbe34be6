/* The C++ victim's class, shared with its patch. */
#pragma once

namespace shop {
class Cart {
public:
        explicit Cart(int items) : items_(items) {}
        int items() const { return items_; }
        int total(int tax) const;
private:
        int items_;
};
}
