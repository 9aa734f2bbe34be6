/*
 * Test victim for the temporary signal mask of ppoll (docs/fault-tolerance.md): the main
 * thread blocks SIGUSR2 (its real mask) and waits in ppoll() on a FIFO with a temporary
 * mask that blocks SIGUSR1 instead. Each byte written to the FIFO wakes it; it then prints
 * the mask it holds outside ppoll, which must be the real one whatever a patcher did:
 *     ready compute=C
 *     wake N mask=M compute=C      (M: the blocked set's first word, hex)
 * Usage: stops-victim-mask FIFO
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

volatile int bias; /* 0: keeps compute from folding into a few bytes */

int compute(int x);

__attribute__((noipa)) int compute(int x) {
        int r = x + bias;
        for (int i = 0; i < 3; i++)
                r += i;
        return r * 2 - 6;
}

static unsigned long mask_word(const sigset_t *s) {
        unsigned long w = 0;
        for (int sig = 1; sig <= 64; sig++)
                if (sigismember(s, sig) == 1)
                        w |= 1UL << (sig - 1);
        return w;
}

int main(int argc, char **argv) {
        sigset_t real, temp, now;

        if (argc < 2)
                return 2;
        int fd = open(argv[1], O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return 1;
        setvbuf(stdout, NULL, _IOLBF, 0);
        sigemptyset(&real);
        sigaddset(&real, SIGUSR2);
        sigprocmask(SIG_SETMASK, &real, NULL);
        sigemptyset(&temp);
        sigaddset(&temp, SIGUSR1);
        printf("ready compute=%d\n", compute(10));
        for (unsigned long n = 1;; n++) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                char c;

                if (ppoll(&p, 1, NULL, &temp) < 0)
                        continue;
                if (read(fd, &c, 1) != 1)
                        continue;
                sigprocmask(SIG_BLOCK, NULL, &now);
                printf("wake %lu mask=%lx compute=%d\n", n, mask_word(&now), compute(10));
        }
}
