/*
 * Fault injection for the patcher: an LD_PRELOAD library that SIGKILLs its own process
 * right after the N-th ptrace() call of one request, as an operator's script or the OOM
 * killer would at the worst moment. The patcher's only way to ptrace is glibc's ptrace()
 * (patcher/target.c, target__ptrace), which this library interposes.
 *
 *   ULP_FAULT_REQUEST   the request: a name (SEIZE, INTERRUPT, CONT, SINGLESTEP, SYSCALL,
 *                       DETACH, GETREGS, SETREGS, GETREGSET, SETREGSET, GETSIGMASK,
 *                       SETSIGMASK, GETSIGINFO, SETSIGINFO, SETOPTIONS, SETFPREGS) or ANY,
 *                       or MEMWRITE: a write of the target's memory (pwrite on a
 *                       /proc/PID/mem fd, or process_vm_writev), not a ptrace call, so
 *                       that a kill lands between two writes of the control block
 *   ULP_FAULT_N         which call of it (1 = the first)
 *   ULP_FAULT_DELAY_US  instead: SIGKILL after this many microseconds of the process's
 *                       life, wherever it is then (a random moment when drawn at random)
 *   ULP_FAULT_MOVED_FROM  instead: LO-HI (hex addresses in the target): SIGKILL right
 *                       after a SETREGS that takes a thread whose PC is in [LO, HI) to
 *                       a PC outside it (a thread moved out of displaced bytes into the
 *                       relocated copy, transition-entry.c)
 *   ULP_FAULT_UNTRAP    instead: SIGKILL right after a SETREGS that puts a thread one byte
 *                       back onto an int3 (a thread stopped for the trap of an int3 of an
 *                       int3 window, put back on it before its stop's report is taken:
 *                       target__waitpid())
 *   ULP_FAULT_AFTER_SYSCALL  with REQUEST and N: calls are counted from the SETREGS that
 *                       starts the first remote system call of this number (N = 1: that
 *                       SETREGS itself), so that a sweep lands inside one step of the
 *                       operation whatever came before it
 *   ULP_FAULT_RAX       with REQUEST=SETREGS: only the SETREGS that start a remote system
 *                       call of this number count (N = 5 and 324: the fifth membarrier)
 *   ULP_FAULT_EEXIST    set: the first remote mmap with MAP_FIXED_NOREPLACE is made at
 *                       a page the process has mapped (its stack: the SETREGS that starts
 *                       it is given that address, the patcher's copy of the registers
 *                       left as it is), which the kernel refuses with EEXIST: as if the
 *                       process had mapped the range since the patcher read its maps
 *   ULP_FAULT_PAUSE_SYSCALL, ULP_FAULT_PAUSE_US  not a kill: the patcher sleeps PAUSE_US
 *                       right after the GETREGS that reads the result of the first remote
 *                       system call of number PAUSE_SYSCALL (its effect is in the target
 *                       by then), so that the target gets a long look at it
 * Unset or unknown: the library does nothing. ULP_FAULT_LOG, when set, names a file that
 * gets one line per call ("REQUEST result", and "rax=N" for SETREGS), to see what an
 * operation does.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

static const struct {
        const char *name;
        long req;
} requests[] = {
        { "SEIZE", 0x4206 },      { "INTERRUPT", 0x4207 },  { "CONT", 7 },
        { "SINGLESTEP", 9 },      { "SYSCALL", 24 },        { "DETACH", 17 },
        { "GETREGS", 12 },        { "SETREGS", 13 },        { "GETREGSET", 0x4204 },
        { "SETREGSET", 0x4205 },  { "GETSIGMASK", 0x420a }, { "SETSIGMASK", 0x420b },
        { "GETSIGINFO", 0x4202 }, { "SETSIGINFO", 0x4203 }, { "SETOPTIONS", 0x4200 },
        { "SETFPREGS", 15 },      { "GETFPREGS", 14 },      { "GET_SYSCALL_INFO", 0x420e },
};

#define MEMWRITE 0x7ffffffe

static long want = -2;          /* -2 not read yet, -1 none, 0x7fffffff any, MEMWRITE */
static unsigned long want_n, seen;
static long only_rax = -1;      /* ULP_FAULT_RAX, -1 any */
static long after_nr = -1;      /* ULP_FAULT_AFTER_SYSCALL, -1 none: count from the start */
static int eexist = -1;         /* ULP_FAULT_EEXIST: 1 armed, 0 done or unset, -1 not read */
static long pause_nr = -2;      /* ULP_FAULT_PAUSE_SYSCALL: -2 not read, -1 none or done */
static int pause_armed;         /* its SETREGS was seen: the next GETREGS pauses */

/* ULP_FAULT_PAUSE_SYSCALL: sleeps once, after the GETREGS at the exit of that call. */
static void maybe_pause(long request, const void *data) {
        if (pause_nr == -2) {
                const char *n = getenv("ULP_FAULT_PAUSE_SYSCALL");
                pause_nr = n ? strtol(n, NULL, 10) : -1;
        }
        if (pause_nr < 0)
                return;
        if (request == 13 && data && (long)((const struct user_regs_struct *)data)->rax == pause_nr)
                pause_armed = 1;
        else if (request == 12 && pause_armed) {
                const char *us = getenv("ULP_FAULT_PAUSE_US");
                pause_nr = -1;
                usleep(us ? (useconds_t)strtoul(us, NULL, 10) : 100000);
        }
}

static const char *req_name(long req) {
        if (req == MEMWRITE)
                return "MEMWRITE";
        for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
                if (requests[i].req == req)
                        return requests[i].name;
        return "?";
}

static void read_config(void) {
        const char *r = getenv("ULP_FAULT_REQUEST"), *n = getenv("ULP_FAULT_N");
        want = -1;
        if (!r || !n)
                return;
        want_n = strtoul(n, NULL, 10);
        if (getenv("ULP_FAULT_RAX") && *getenv("ULP_FAULT_RAX"))
                only_rax = strtol(getenv("ULP_FAULT_RAX"), NULL, 10);
        if (getenv("ULP_FAULT_AFTER_SYSCALL"))
                after_nr = strtol(getenv("ULP_FAULT_AFTER_SYSCALL"), NULL, 10);
        if (strcmp(r, "ANY") == 0)
                want = 0x7fffffff;
        if (strcmp(r, "MEMWRITE") == 0)
                want = MEMWRITE;
        for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
                if (strcmp(requests[i].name, r) == 0)
                        want = requests[i].req;
}

/* ULP_FAULT_EEXIST: the registers the first SETREGS of an mmap(MAP_FIXED_NOREPLACE)
 * sets, at the page of the stack the step runs on instead; NULL for any other call. */
static const struct user_regs_struct *fake_eexist(long request, const void *data, struct user_regs_struct *copy) {
        const struct user_regs_struct *regs = data;

        if (eexist < 0)
                eexist = getenv("ULP_FAULT_EEXIST") != NULL;
        if (!eexist || request != 13 || !regs || regs->rax != 9 || !(regs->r10 & 0x100000))
                return NULL;
        eexist = 0;
        *copy = *regs;
        copy->rdi = regs->rsp & ~0xfffULL;
        return copy;
}

/* A SETREGS line also gives rax: the system call of a remote step it starts. With
 * ULP_FAULT_LOG_THREADS set, each line also ends with the thread, and SETREGS and
 * GETREGS lines with the rip written or read ("tid=T rip=0x..."). */
static void log_call(long req, pid_t pid, long result, const void *data) {
        const char *path = getenv("ULP_FAULT_LOG");
        char line[160];
        int n;
        if (!path)
                return;
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        if (req == 13 && data)
                n = snprintf(line, sizeof(line), "%s %ld rax=%llu\n", req_name(req), result,
                             (unsigned long long)((const struct user_regs_struct *)data)->rax);
        else
                n = snprintf(line, sizeof(line), "%s %ld\n", req_name(req), result);
        if (getenv("ULP_FAULT_LOG_THREADS") && n > 0 && req != MEMWRITE) {
                n--;    /* over the newline */
                n += snprintf(line + n, sizeof(line) - (size_t)n, " tid=%d", (int)pid);
                if ((req == 13 || (req == 12 && result == 0)) && data)
                        n += snprintf(line + n, sizeof(line) - (size_t)n, " rip=%#llx",
                                      (unsigned long long)((const struct user_regs_struct *)data)->rip);
                n += snprintf(line + n, sizeof(line) - (size_t)n, "\n");
        }
        (void)!write(fd, line, (size_t)n);
        close(fd);
}

static void die(int sig) {
        (void)sig;
        syscall(SYS_kill, getpid(), SIGKILL);
}

__attribute__((constructor)) static void arm_timer(void) {
        const char *d = getenv("ULP_FAULT_DELAY_US");
        if (!d)
                return;
        unsigned long us = strtoul(d, NULL, 10);
        struct itimerval it = { .it_value = { (time_t)(us / 1000000), (suseconds_t)(us % 1000000) } };
        if (us == 0)
                die(0);
        signal(SIGALRM, die);
        setitimer(ITIMER_REAL, &it, NULL);
}

/* ULP_FAULT_MOVED_FROM: whether this SETREGS moves the stopped pid's PC out of the range. */
static int moves_out(long request, pid_t pid, const void *data) {
        const char *range = getenv("ULP_FAULT_MOVED_FROM");
        struct user_regs_struct cur;
        unsigned long lo, hi;
        char *end;

        if (!range || request != 13 || !data)
                return 0;
        lo = strtoul(range, &end, 16);
        if (*end != '-')
                return 0;
        hi = strtoul(end + 1, NULL, 16);
        if (syscall(SYS_ptrace, 12L, (long)pid, NULL, &cur) < 0)
                return 0;
        unsigned long to = ((const struct user_regs_struct *)data)->rip;
        return cur.rip >= lo && cur.rip < hi && (to < lo || to >= hi);
}

/* ULP_FAULT_UNTRAP: whether this SETREGS takes the stopped pid's PC one byte back onto an
 * int3. */
static int puts_back_on_int3(long request, pid_t pid, const void *data) {
        struct user_regs_struct cur;
        unsigned char b = 0;

        if (!getenv("ULP_FAULT_UNTRAP") || request != 13 || !data)
                return 0;
        unsigned long to = ((const struct user_regs_struct *)data)->rip;
        struct iovec local = { &b, 1 }, remote = { (void *)to, 1 };
        if (syscall(SYS_ptrace, 12L, (long)pid, NULL, &cur) < 0 || cur.rip != to + 1)
                return 0;
        return process_vm_readv(pid, &local, 1, &remote, 1, 0) == 1 && b == 0xcc;
}

long ptrace(enum __ptrace_request request, ...) {
        va_list ap;
        va_start(ap, request);
        pid_t pid = va_arg(ap, pid_t);
        void *addr = va_arg(ap, void *);
        void *data = va_arg(ap, void *);
        va_end(ap);

        if (want == -2)
                read_config();
        int moved = moves_out((long)request, pid, data) || puts_back_on_int3((long)request, pid, data);
        /* The raw system call: the PEEK requests' glibc convention is not used by ulp. */
        struct user_regs_struct copy;
        const struct user_regs_struct *eex = fake_eexist((long)request, data, &copy);
        long r = syscall(SYS_ptrace, (long)request, (long)pid, addr, eex ? (const void *)eex : data);
        int saved = errno;
        log_call((long)request, pid, r, data);
        maybe_pause((long)request, data);
        if (moved && r == 0)
                syscall(SYS_kill, getpid(), SIGKILL);
        if (after_nr >= 0 && (long)request == 13 && data &&
            (long)((const struct user_regs_struct *)data)->rax == after_nr)
                after_nr = -1;
        if (only_rax >= 0 && ((long)request != 13 || !data ||
                              (long)((const struct user_regs_struct *)data)->rax != only_rax))
                ;
        else if (want != -1 && after_nr < 0 && (want == 0x7fffffff || want == (long)request) && ++seen == want_n)
                syscall(SYS_kill, getpid(), SIGKILL);
        errno = saved;
        return r;
}

/* MEMWRITE: counted after the write is done, as a ptrace call is. */
static void after_write(ssize_t r) {
        int saved = errno;
        if (want == -2)
                read_config();
        log_call(MEMWRITE, 0, (long)r, NULL);
        if (want == MEMWRITE && ++seen == want_n)
                syscall(SYS_kill, getpid(), SIGKILL);
        errno = saved;
}

static int is_mem_fd(int fd) {
        char link[32], path[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof(path) - 1);
        if (n < 4)
                return 0;
        path[n] = 0;
        return strncmp(path, "/proc/", 6) == 0 && strcmp(path + n - 4, "/mem") == 0;
}

/* Both glibc names (the build's 64-bit offsets redirect pwrite to pwrite64). */
ssize_t fault_pwrite64(int fd, const void *buf, size_t len, off_t off) __asm__("pwrite64");
ssize_t fault_pwrite(int fd, const void *buf, size_t len, off_t off) __asm__("pwrite");

ssize_t fault_pwrite64(int fd, const void *buf, size_t len, off_t off) {
        ssize_t r = syscall(SYS_pwrite64, fd, buf, len, off);
        if (is_mem_fd(fd))
                after_write(r);
        return r;
}

ssize_t fault_pwrite(int fd, const void *buf, size_t len, off_t off) {
        return fault_pwrite64(fd, buf, len, off);
}

ssize_t process_vm_writev(pid_t pid, const struct iovec *local, unsigned long nl, const struct iovec *remote,
                          unsigned long nr, unsigned long flags) {
        ssize_t r = syscall(SYS_process_vm_writev, pid, local, nl, remote, nr, flags);
        after_write(r);
        return r;
}
