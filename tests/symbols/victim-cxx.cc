/*
 * C++ victim: threads call shop::Cart::total(int) const, a const member function in a
 * namespace; the main thread prints what it returns every 10 ms:
 *     tick N total=T
 */
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "cart.h"

volatile int sink;
volatile int bias; // 0: keeps total() a real function

__attribute__((noinline, noipa)) int shop::Cart::total(int tax) const {
        int r = items_ + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 10 + tax;
}

int main() {
        std::setvbuf(stdout, nullptr, _IOLBF, 0);
        std::vector<std::thread> workers;
        for (int i = 0; i < 3; i++)
                workers.emplace_back([] {
                        shop::Cart c(2);
                        for (int k = 0;; k++) {
                                sink = c.total(k & 7);
                                if ((k & 0xff) == 0)
                                        std::this_thread::sleep_for(std::chrono::microseconds(1));
                        }
                });
        shop::Cart cart(4);
        for (unsigned long tick = 0;; tick++) {
                std::printf("tick %lu total=%d\n", tick, cart.total(1));
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
}
