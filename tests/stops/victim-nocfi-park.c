/*
 * Test victim for a transition that meets a frame it can never judge: the thread
 * "parked" calls compute(99), the function the tests patch, which calls nocfi_park()
 * (tests/unwind/victim-nocfi.c, built without any CFI) and waits there for good. No
 * unwinder can pass that frame for certain, so the thread is never switched. The main
 * thread prints every 10 ms what the process observes:
 *     tick N compute=C ptid=T
 * Usage: stops-victim-nocfi
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile int bias; /* 0: keeps compute from folding into a few bytes */
static volatile pid_t ptid;

void nocfi_park(void);
void nocfi_lost(void);
int compute(int x);

/* No CFI, and no frame pointer to guess with: rbp cleared, the stack moved. */
__asm__(".text\n"
        ".globl nocfi_lost\n"
        ".type nocfi_lost, @function\n"
        "nocfi_lost:\n"
        "        xor %ebp, %ebp\n"
        "        sub $72, %rsp\n"
        "1:      mov $34, %eax\n"      /* pause */
        "        syscall\n"
        "        jmp 1b\n"
        ".size nocfi_lost, . - nocfi_lost\n");

__attribute__((noipa)) int compute(int x) {
        int r = x + bias;
        if (x == 99)
                nocfi_park();
        if (x == 98)
                nocfi_lost();
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 2 - 6;
}

static void *parked(void *arg) {
        ptid = (pid_t)syscall(SYS_gettid);
        return (void *)(long)compute(arg ? 98 : 99);
}

int main(int argc, char **argv) {
        pthread_t t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        /* "lost": parked where not even a frame pointer leads on */
        pthread_create(&t, NULL, parked, argc > 1 && argv[1][0] == 'l' ? "lost" : NULL);
        pthread_setname_np(t, "parked");
        for (unsigned long tick = 0;; tick++) {
                printf("tick %lu compute=%d ptid=%d\n", tick, compute(10), (int)ptid);
                usleep(10000);
        }
}
