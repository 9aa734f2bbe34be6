/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Remote execution on a borrowed, ptrace-stopped thread (x86-64): system calls and
 * function calls. The lifecycle, as in CRIU's compel: save the thread's context
 * (registers with orig_rax, signal mask, and for calls the FPU/vector state), run,
 * restore in reverse order. DESIGN.md pitfalls 11, 12 and 16.
 *
 * How the thread is run and caught:
 *   - system call: rip at a "syscall" instruction in the target, orig_rax = -1 (so the
 *     kernel applies no syscall-restart logic to our registers when the thread leaves
 *     its stop), PTRACE_SINGLESTEP; the step's SIGTRAP is reported at rip+2 after the
 *     syscall returned;
 *   - call: a return address pointing at an int3, PTRACE_CONT; the SIGTRAP comes with
 *     rip = trap_addr + 1.
 * Both end in a signal-delivery-stop inside get_signal(), like the stops target.c
 * makes, so after the registers are restored a thread that was interrupted in a
 * blocking syscall restarts it when detached, and a kept signal is delivered with its
 * siginfo (target__settle()).
 *
 * The signal mask while running blocks everything except the synchronous fault signals
 * (SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS): the kernel forces those, and
 * forcing a blocked one resets its handler to SIG_DFL for the whole process
 * (force_sig_info_to_task()), which would break a target with its own SIGSEGV handler.
 * Since we trace the thread, an unblocked signal reaches us first, never its handler.
 *
 * PTRACE_SETSIGMASK clears TIF_RESTORE_SIGMASK: for a thread stopped inside ppoll,
 * pselect6, epoll_pwait, rt_sigsuspend, io_pgetevents or io_uring_enter, the mask
 * GETSIGMASK reads is the call's temporary one and the real one would be lost. Such a
 * thread first runs a getpid without any mask change, which lets the kernel put the
 * real mask back (restore_saved_sigmask()); the saved registers still say "restart
 * ppoll", and the restarted call installs its temporary mask again.
 */

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "common/macro.h"
#include "patcher/target.h"

#define REMOTE_SYSCALL_TIMEOUT_MS 5000
#define XSTATE_MAX (64 * 1024)

/* The mask while running remote code: see the top of the file. */
static uint64_t remote_run_mask(void) {
        uint64_t m = ~0ULL;
        const int sync[] = { SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS };
        for (size_t i = 0; i < ELEMENTSOF(sync); i++)
                m &= ~(1ULL << (sync[i] - 1));
        return m;
}

static bool is_fault_signal(int sig) {
        return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
               sig == SIGSYS || sig == SIGTRAP;
}

/* Syscalls that install a temporary mask with TIF_RESTORE_SIGMASK (set_user_sigmask). */
static bool syscall_swaps_mask(long nr) {
        switch (nr) {
        case SYS_rt_sigsuspend:
        case SYS_pselect6:
        case SYS_ppoll:
        case SYS_epoll_pwait:
        case SYS_io_pgetevents:
        case 426:       /* io_uring_enter */
        case 441:       /* epoll_pwait2 */
                return true;
        default:
                return false;
        }
}

static int remote_check_syscall_insn(Target *t, uint64_t addr) {
        uint8_t b[2];
        int r = target_read(t, addr, b, 2);
        if (r < 0)
                return r;
        return b[0] == 0x0f && b[1] == 0x05 ? 0 : -ENOENT;
}

/* Searches [start, end) of the target for the bytes 0f 05. */
static int remote_scan_range(Target *t, uint64_t start, uint64_t end, uint64_t *ret) {
        _cleanup_free_ uint8_t *buf = malloc(65536);
        if (!buf)
                return -ENOMEM;
        for (uint64_t a = start; a + 1 < end;) {
                size_t n = (size_t)MIN((uint64_t)65536, end - a);
                if (target_read(t, a, buf, n) < 0)
                        return -ENOENT;
                for (size_t i = 0; i + 1 < n; i++)
                        if (buf[i] == 0x0f && buf[i + 1] == 0x05) {
                                *ret = a + i;
                                return 0;
                        }
                a += n - 1;     /* overlap one byte */
        }
        return -ENOENT;
}

/* Finds a "syscall" instruction in code that is never unmapped: the [vdso], then libc,
 * then any executable mapping; last, the one the thread just executed (rip - 2 after a
 * syscall). Any 0f 05 will do, even inside another instruction. Cached in t. */
static int remote_find_syscall_insn(Target *t, Thread *th) {
        if (t->syscall_insn && remote_check_syscall_insn(t, t->syscall_insn) == 0)
                return 0;
        t->syscall_insn = 0;

        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/maps", t->pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? -ESRCH : negative_errno();
        uint64_t ranges[3][2] = { { 0 } };   /* vdso, libc, other */
        char line[4096];
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                char perms[8];
                int off = 0;
                if (sscanf(line, "%lx-%lx %7s %*s %*s %*s%n", &lo, &hi, perms, &off) < 3)
                        continue;
                if (perms[2] != 'x')
                        continue;
                const char *name = line + off;
                while (*name == ' ')
                        name++;
                int k = strstr(name, "[vdso]") ? 0 :
                        strstr(name, "[vsyscall]") ? -1 :
                        (strstr(name, "/libc.so") || strstr(name, "/libc-")) ? 1 : 2;
                if (k >= 0 && ranges[k][1] == 0) {
                        ranges[k][0] = lo;
                        ranges[k][1] = hi;
                }
        }
        fclose(f);
        for (int k = 0; k < 3; k++)
                if (ranges[k][1] && remote_scan_range(t, ranges[k][0], ranges[k][1], &t->syscall_insn) == 0)
                        return 0;

        struct user_regs_struct regs;
        int r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, &regs);
        if (r < 0)
                return r;
        if ((long)regs.orig_rax >= 0 && regs.rip >= 2 &&
            remote_check_syscall_insn(t, regs.rip - 2) == 0) {
                t->syscall_insn = regs.rip - 2;
                return 0;
        }
        return -ENOENT;
}

/*
 * Interrupts a thread that runs remote code for too long and collects its stop.
 * *ret_signal_stop tells which kind of stop it is in. -ETIMEDOUT when it does not stop
 * either (left seized and running; target.c detaches it once it stops).
 */
static int remote_abandon(Target *t, Thread *th, bool *ret_signal_stop) {
        int r = target__ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL);
        if (r < 0 && r != -ESRCH)
                return r;
        for (;;) {
                int status;
                r = target__wait(t, th, t->stop_timeout_ms > 0 ? t->stop_timeout_ms : TARGET_STOP_TIMEOUT_MS,
                                 &status);
                if (r == -ETIMEDOUT) {
                        th->stopped = false;
                        return r;
                }
                if (r < 0)
                        return r;
                int sig = WSTOPSIG(status), event = status >> 16;
                if (event == PTRACE_EVENT_STOP) {
                        if (sig != SIGTRAP)
                                th->group_stopped = true;
                        *ret_signal_stop = false;
                        return 0;
                }
                if (event == PTRACE_EVENT_EXEC) {
                        t->image_changed = true;   /* stays in this stop; see remote_finish */
                        *ret_signal_stop = false;
                        return 0;
                }
                if (event != 0 || sig == (SIGTRAP | 0x80)) {
                        (void) target__ptrace(PTRACE_CONT, th->tid, NULL, NULL);
                        continue;
                }
                siginfo_t info;
                if (target__ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &info) < 0)
                        memset(&info, 0, sizeof(info));
                if (!(is_fault_signal(sig) && info.si_code > 0))
                        target__keep_signal(t, th, sig, &info);
                *ret_signal_stop = true;
                return 0;
        }
}

/*
 * Resumes the thread with req (PTRACE_SINGLESTEP or PTRACE_CONT) until it traps with
 * SIGTRAP at trap_rip. Group-stops and interrupt traps on the way are passed over,
 * other signals kept for delivery at resume. Returns 0 trapped (*ret_regs read), -EFAULT
 * a fault (a synchronous signal from the kernel, not delivered), -ENOSYS a SIGSYS
 * (seccomp), -ETIMEDOUT (interrupted, see remote_abandon), -ESRCH the thread exited.
 * *ret_signal_stop says whether the thread ends in a signal-delivery-stop.
 */
static int remote_run(Target *t, Thread *th, int req, uint64_t trap_rip, int timeout_ms,
                      struct user_regs_struct *ret_regs, bool *ret_signal_stop) {
        uint64_t deadline = target__now_ns() + (uint64_t)timeout_ms * 1000000ULL;

        for (;;) {
                int r = target__ptrace(req, th->tid, NULL, NULL);
                if (r < 0)
                        return r;
                int status;
                uint64_t now = target__now_ns();
                int left_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
                r = target__wait(t, th, left_ms, &status);
                if (r == -ETIMEDOUT) {
                        r = remote_abandon(t, th, ret_signal_stop);
                        return r < 0 ? r : -ETIMEDOUT;
                }
                if (r < 0)
                        return r;

                int sig = WSTOPSIG(status), event = status >> 16;
                if (event == PTRACE_EVENT_STOP) {
                        /* A group-stop (the thread stays stopped after detach), or the
                         * interrupt still pending from a signal-delivery-stop. */
                        if (sig != SIGTRAP)
                                th->group_stopped = true;
                        continue;
                }
                if (event == PTRACE_EVENT_EXEC) {
                        /* The code run made the process execute a new program: it is
                         * not ours to touch any more, see remote_finish. */
                        t->image_changed = true;
                        *ret_signal_stop = false;
                        return -ESTALE;
                }
                if (event != 0 || sig == (SIGTRAP | 0x80))
                        continue;

                siginfo_t info;
                r = target__ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &info);
                if (r < 0)
                        return r;
                if (is_fault_signal(sig) && info.si_code > 0) {
                        *ret_signal_stop = true;
                        r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, ret_regs);
                        if (r < 0)
                                return r;
                        if (sig == SIGTRAP && ret_regs->rip == trap_rip)
                                return 0;
                        return sig == SIGSYS ? -ENOSYS : -EFAULT;
                }
                /* Someone's signal (kill, timer, SIGSTOP...): kept, delivered at resume. */
                target__keep_signal(t, th, sig, &info);
        }
}

/* What a remote operation saves and restores. */
typedef struct RemoteContext {
        struct user_regs_struct regs;
        uint64_t sigmask;
        bool mask_set;
        struct iovec xstate;     /* NT_X86_XSTATE, or the fxsave area (fp_only) */
        bool fp_only;
} RemoteContext;

static void remote_context_done(RemoteContext *c) {
        free(c->xstate.iov_base);
        c->xstate.iov_base = NULL;
}

static int remote_save_fpu(Thread *th, RemoteContext *c) {
        c->xstate.iov_base = malloc(XSTATE_MAX);
        if (!c->xstate.iov_base)
                return -ENOMEM;
        c->xstate.iov_len = XSTATE_MAX;
        int r = target__ptrace(PTRACE_GETREGSET, th->tid, (void *)(long)NT_X86_XSTATE, &c->xstate);
        if (r == -EINVAL || r == -ENODEV || r == -EIO) {
                c->fp_only = true;
                c->xstate.iov_len = sizeof(struct user_fpregs_struct);
                r = target__ptrace(PTRACE_GETFPREGS, th->tid, NULL, c->xstate.iov_base);
        }
        return r;
}

static int remote_restore_fpu(Thread *th, RemoteContext *c) {
        if (!c->xstate.iov_base)
                return 0;
        if (c->fp_only)
                return target__ptrace(PTRACE_SETFPREGS, th->tid, NULL, c->xstate.iov_base);
        return target__ptrace(PTRACE_SETREGSET, th->tid, (void *)(long)NT_X86_XSTATE, &c->xstate);
}

/* Saves registers and mask, blocks signals when asked. */
static int remote_save(Thread *th, RemoteContext *c, bool block) {
        int r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, &c->regs);
        if (r < 0)
                return r;
        if (!block)
                return 0;
        r = target__ptrace(PTRACE_GETSIGMASK, th->tid, (void *)sizeof(uint64_t), &c->sigmask);
        if (r < 0)
                return r;
        uint64_t m = remote_run_mask();
        r = target__ptrace(PTRACE_SETSIGMASK, th->tid, (void *)sizeof(uint64_t), &m);
        if (r < 0)
                return r;
        c->mask_set = true;
        return 0;
}

/* Restores in reverse order; every step is tried even if one fails. */
static int remote_restore(Thread *th, RemoteContext *c) {
        int ret = remote_restore_fpu(th, c);
        if (c->mask_set) {
                int r = target__ptrace(PTRACE_SETSIGMASK, th->tid, (void *)sizeof(uint64_t), &c->sigmask);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        int r = target__ptrace(PTRACE_SETREGS, th->tid, NULL, &c->regs);
        if (r < 0 && ret == 0)
                ret = r;
        return ret;
}

/* The outcome of a run: which error wins, and the thread settled for resume. A thread
 * that no longer stops (-ETIMEDOUT from remote_abandon with th->stopped cleared) or
 * exited cannot be restored. */
static int remote_finish(Target *t, Thread *th, RemoteContext *c, int r, bool signal_stop) {
        if (th->gone)
                return -ESRCH;
        if (!th->stopped)
                return r;
        /* After an exec the saved registers belong to a program that is gone: the new
         * one continues from its start, as it would have without us. */
        if (t->image_changed)
                return -ESTALE;
        int q = remote_restore(th, c);
        if (q == 0)
                q = target__settle(t, th, signal_stop);
        return r < 0 ? r : q;
}

static int remote_syscall(Target *t, Thread *th, long nr, const long args[6], bool block, long *ret) {
        _cleanup_(remote_context_done) RemoteContext c = { 0 };
        bool signal_stop = th->signal_stop;

        int r = remote_find_syscall_insn(t, th);
        if (r < 0)
                return r;
        r = remote_save(th, &c, block);
        if (r < 0)
                return remote_finish(t, th, &c, r, signal_stop);

        struct user_regs_struct regs = c.regs;
        regs.rip = t->syscall_insn;
        regs.orig_rax = (uint64_t)-1;
        regs.rax = (uint64_t)nr;
        regs.rdi = (uint64_t)args[0];
        regs.rsi = (uint64_t)args[1];
        regs.rdx = (uint64_t)args[2];
        regs.r10 = (uint64_t)args[3];
        regs.r8 = (uint64_t)args[4];
        regs.r9 = (uint64_t)args[5];
        r = target__ptrace(PTRACE_SETREGS, th->tid, NULL, &regs);
        if (r < 0)
                return remote_finish(t, th, &c, r, signal_stop);
        r = remote_run(t, th, PTRACE_SINGLESTEP, t->syscall_insn + 2, REMOTE_SYSCALL_TIMEOUT_MS,
                       &regs, &signal_stop);
        if (r == 0)
                *ret = (long)regs.rax;
        return remote_finish(t, th, &c, r, signal_stop);
}

/* Before a mask change, a thread stopped in a syscall with a temporary mask gets its
 * real one back: see the top of the file. */
static int remote_flush_temporary_mask(Target *t, Thread *th) {
        struct user_regs_struct regs;
        int r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, &regs);
        if (r < 0)
                return r;
        if ((long)regs.orig_rax < 0 || !syscall_swaps_mask((long)regs.orig_rax))
                return 0;
        const long none[6] = { 0 };
        long ignored;
        return remote_syscall(t, th, SYS_getpid, none, false, &ignored);
}

int target_syscall(Target *t, Thread *th, long nr, const long args[6], long *ret) {
        if (t->image_changed)
                return -ESTALE;
        if (th->gone)
                return -ESRCH;
        if (!th->stopped)
                return -EINVAL;
        int r = remote_flush_temporary_mask(t, th);
        if (r < 0)
                return r;
        return remote_syscall(t, th, nr, args, true, ret);
}

int target_call(Target *t, Thread *th, uint64_t func, const long args[6], uint64_t trap_addr,
                int timeout_ms, uint64_t *ret) {
        _cleanup_(remote_context_done) RemoteContext c = { 0 };

        if (t->image_changed)
                return -ESTALE;
        if (th->gone)
                return -ESRCH;
        if (!th->stopped)
                return -EINVAL;
        int r = remote_flush_temporary_mask(t, th);
        if (r < 0)
                return r;
        bool signal_stop = th->signal_stop;
        r = remote_save_fpu(th, &c);
        if (r < 0)
                return r;
        r = remote_save(th, &c, true);
        if (r < 0)
                return remote_finish(t, th, &c, r, signal_stop);

        /* Below the red zone and some slack, 16-byte aligned, then the return address
         * pushed as a call would: rsp % 16 == 8 at the function's entry. */
        struct user_regs_struct regs = c.regs;
        uint64_t sp = ((c.regs.rsp - 128 - 256) & ~15ULL) - 8;
        r = target_write(t, sp, &trap_addr, sizeof(trap_addr));
        if (r < 0)
                return remote_finish(t, th, &c, r, signal_stop);
        regs.rsp = sp;
        regs.rip = func;
        regs.orig_rax = (uint64_t)-1;
        regs.rax = 0;
        regs.rdi = (uint64_t)args[0];
        regs.rsi = (uint64_t)args[1];
        regs.rdx = (uint64_t)args[2];
        regs.rcx = (uint64_t)args[3];
        regs.r8 = (uint64_t)args[4];
        regs.r9 = (uint64_t)args[5];
        r = target__ptrace(PTRACE_SETREGS, th->tid, NULL, &regs);
        if (r < 0)
                return remote_finish(t, th, &c, r, signal_stop);
        r = remote_run(t, th, PTRACE_CONT, trap_addr + 1, timeout_ms, &regs, &signal_stop);
        if (r == 0)
                *ret = regs.rax;
        return remote_finish(t, th, &c, r, signal_stop);
}
