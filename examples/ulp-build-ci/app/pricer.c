/* A small service: for each number N written to the request FIFO, it answers
 * "price N = P served S" on the reply FIFO. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#include "price.h"

static long served;             /* orders served since the start */

int main(int argc, char **argv) {
        char line[64];

        if (argc != 3) {
                fprintf(stderr, "usage: pricer REQUEST-FIFO REPLY-FIFO\n");
                return 2;
        }
        /* Both ends open read-write: no wait for a peer, no end of file between clients. */
        FILE *req = fdopen(open(argv[1], O_RDWR), "r"), *rep = fdopen(open(argv[2], O_RDWR), "w");
        if (!req || !rep)
                return 1;
        while (fgets(line, sizeof(line), req)) {
                long n = strtol(line, NULL, 10);
                served++;
                fprintf(rep, "price %ld = %ld served %ld\n", n, price(n), served);
                fflush(rep);
        }
        return 0;
}
