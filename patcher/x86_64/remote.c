/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Remote execution on a borrowed, ptrace-stopped thread (x86-64): system calls and
 * function calls. The lifecycle, as in CRIU's compel: save the thread's context
 * (registers with orig_rax, signal mask, FPU/vector state), run, restore in reverse
 * order. docs/architecture.md, hazards 4 to 6; docs/fault-tolerance.md.
 *
 * The patcher may die at any moment (SIGKILL, OOM): the kernel then detaches every
 * thread with no signal and they run on with whatever registers they hold. So every
 * step is a fake signal delivery that needs no tracer to end: before the registers are
 * changed, an rt_sigframe is written below the thread's red zone holding its whole
 * context (registers as the kernel's restart logic would leave them, signal mask, an
 * XSAVE image, an sigaltstack entry that rt_sigreturn ignores), and the step returns
 * into a restorer (rt_sigreturn) through the frame's return address:
 *   - system call: rip at "syscall; ret" found in the target's code (libc has many),
 *     rsp at the frame, whose return address is libc's __restore_rt;
 *   - call: rip at the function, rsp at the frame as at a signal handler's entry
 *     (rsp % 16 == 8), returning into ulp's own restorer, which first copies the return
 *     value to rdi (target_call_return_code()).
 * The tracer follows with PTRACE_SYSCALL (its flag dies with the tracer; a single-step
 * flag would not, and the next instruction would trap with nobody to catch it) up to the
 * exit stop of the system call, or the entry stop of the call's rt_sigreturn (rdi holds
 * the result), which is skipped: the frame is only for a thread we leave behind, as
 * rt_sigreturn resets the thread's restart block (a thread stopped in nanosleep would
 * see EINTR). At that stop the saved context is put back by ptrace, after an interrupt
 * was queued: the thread stays stopped there, and whenever it leaves (detached by us or
 * by the kernel) the pending interrupt sends it through get_signal(), where the stops
 * target-stop.c makes are: a thread interrupted in a blocking syscall restarts it (or returns
 * EINTR to a handler) exactly as the kernel decides, and a kept signal is queued back
 * (target__settle()). The restore writes go FPU, mask, registers last: until the
 * registers are back the thread would still return through the frame by itself.
 *
 * The signal mask while running blocks everything except the synchronous fault signals
 * (SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS): the kernel forces those, and
 * forcing a blocked one resets its handler to SIG_DFL for the whole process
 * (force_sig_info_to_task()), which would break a target with its own SIGSEGV handler.
 * Since we trace the thread, an unblocked signal reaches us first, never its handler.
 * It is set after the step's registers, so that a thread left behind by a dying tracer
 * always has the frame that gives its own mask back.
 *
 * A thread stopped inside ppoll, pselect6, epoll_pwait, rt_sigsuspend, ... holds the
 * call's temporary mask, the real one in saved_sigmask (TIF_RESTORE_SIGMASK). Since Linux
 * 5.0 PTRACE_GETSIGMASK reads saved_sigmask then, and PTRACE_SETSIGMASK clears the flag
 * (ptrace_request()); remote_run() needs PTRACE_GET_SYSCALL_INFO (5.3) anyway. So the
 * mask saved, put in the frame and restored is the real one, and the restarted call
 * installs its temporary mask again (docs/fault-tolerance.md, "Temporary masks").
 */

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/procmem.h"
#include "patcher/target.h"

#define REMOTE_SYSCALL_TIMEOUT_MS 5000
#define XSTATE_MAX (64 * 1024)
#define RED_ZONE 128
/* Below the red zone: TARGET_SCRATCH bytes for the caller's syscall arguments, then the frame. */
#define FRAME_SLACK TARGET_SCRATCH

/* The kernel's restart codes (include/linux/errno.h), never seen by a program. */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define ERESTARTNOHAND 514
#define ERESTART_RESTARTBLOCK 516

/* Signal frame as rt_sigreturn reads it (arch/x86/include/asm/sigframe.h, uapi
 * ucontext and sigcontext), spelled out to stay clear of the libc headers' variants. */
typedef struct RemoteSigcontext {
        uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
        uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
        uint16_t cs, gs, fs, ss;
        uint64_t err, trapno, oldmask, cr2;
        uint64_t fpstate;
        uint64_t reserved1[8];
} RemoteSigcontext;

typedef struct RemoteUcontext {
        uint64_t uc_flags;
        uint64_t uc_link;
        uint64_t ss_sp;
        int32_t ss_flags;
        uint32_t ss_pad;
        uint64_t ss_size;
        RemoteSigcontext mcontext;
        uint64_t sigmask;
} RemoteUcontext;

typedef struct RemoteSigframe {
        uint64_t pretcode;
        RemoteUcontext uc;
        uint8_t info[128];       /* siginfo: only its room is checked (access_ok) */
} RemoteSigframe;

_Static_assert(sizeof(RemoteSigcontext) == 256, "struct sigcontext");
_Static_assert(__builtin_offsetof(RemoteUcontext, mcontext) == 40, "uc_mcontext");
_Static_assert(__builtin_offsetof(RemoteUcontext, sigmask) == 296, "uc_sigmask");

#define UC_FP_XSTATE 0x1
#define UC_SIGCONTEXT_SS 0x2
#define UC_STRICT_RESTORE_SS 0x4
#define FP_XSTATE_MAGIC1 0x46505853U
#define FP_XSTATE_MAGIC2 0x46505845U
#define FXSAVE_SIZE 512
#define FX_SW_OFFSET 464
/* A mode do_sigaltstack() refuses (neither 0, SS_ONSTACK nor SS_DISABLE): rt_sigreturn's
 * restore_altstack() ignores the error, so the thread's sigaltstack stays as it is. */
#define SS_FLAGS_KEEP 0x7f

/* glibc's __restore_rt: mov $15, %rax; syscall. */
static const uint8_t restore_rt_code[] = { 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05 };
/* syscall; ret */
static const uint8_t syscall_ret_code[] = { 0x0f, 0x05, 0xc3 };
/* ulp's restorer for calls: mov %rax, %rdi; mov $15, %eax; syscall. */
static const uint8_t call_return_code[] = { 0x48, 0x89, 0xc7, 0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05 };

size_t target_call_return_code(uint8_t buf[static 16]) {
        memcpy(buf, call_return_code, sizeof(call_return_code));
        return sizeof(call_return_code);
}

/*
 * The entry of a recorded call (target_call_record_code()): called with the function in
 * rdi and the slot's address in rsi, on the call's frame (rsp % 16 == 8); it returns
 * through the frame's return address like the function would.
 *     mov %rdi,%r11; mov %rsi,%r10
 *     mov $2,%eax; shl $32,%rax; mov %rax,(%r10)          started
 *     xor %edi,%edi; xor %esi,%esi; xor %eax,%eax
 *     push %r10; call *%r11; pop %r10                       rsp % 16 == 8 at its entry
 *     mov %rax,%rdx; mov %eax,%ecx
 *     mov $3,%eax; shl $32,%rax; or %rcx,%rax; mov %rax,(%r10)   returned, the value
 *     mov %rdx,%rax; ret
 * Each store is one aligned 8-byte write: a reader sees the slot before or after it.
 */
static const uint8_t call_record_code[] = {
        0x49, 0x89, 0xfb, 0x49, 0x89, 0xf2,
        0xb8, 0x02, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xe0, 0x20, 0x49, 0x89, 0x02,
        0x31, 0xff, 0x31, 0xf6, 0x31, 0xc0,
        0x41, 0x52, 0x41, 0xff, 0xd3, 0x41, 0x5a,
        0x48, 0x89, 0xc2, 0x89, 0xc1,
        0xb8, 0x03, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xe0, 0x20, 0x48, 0x09, 0xc8, 0x49, 0x89, 0x02,
        0x48, 0x89, 0xd0, 0xc3,
};

_Static_assert(sizeof(call_record_code) <= 64, "target_call_record_code()'s buffer");

size_t target_call_record_code(uint8_t buf[static 64]) {
        memcpy(buf, call_record_code, sizeof(call_record_code));
        return sizeof(call_record_code);
}

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

static int remote_check_code(Target *t, uint64_t addr, const uint8_t *code, size_t len) {
        uint8_t b[16];
        int r = target_read(t, addr, b, len);
        if (r < 0)
                return r;
        return memcmp(b, code, len) == 0 ? 0 : -ENOENT;
}

/* Searches [start, end) of the target for code; *ret gets the first place. */
static int remote_scan_range(Target *t, uint64_t start, uint64_t end, const uint8_t *code, size_t len,
                             uint64_t *ret) {
        enum { CHUNK = 65536 };
        _cleanup_free_ uint8_t *buf = malloc(CHUNK);
        if (!buf)
                return -ENOMEM;
        for (uint64_t a = start; a + len <= end;) {
                size_t n = (size_t)MIN((uint64_t)CHUNK, end - a);
                if (target_read(t, a, buf, n) < 0)
                        return -ENOENT;
                const uint8_t *hit = memmem(buf, n, code, len);
                if (hit) {
                        *ret = a + (uint64_t)(hit - buf);
                        return 0;
                }
                if (a + n >= end)
                        break;
                a += n - (len - 1);     /* overlap a match's length */
        }
        return -ENOENT;
}

/* Where the code was found last, as a place in a file: the next target mapping that
 * file is tried there first (every process maps the same libc), and scanned only when
 * the bytes are not there. Per thread: nothing shared between drivers. */
typedef struct CodePlace {
        unsigned dev_major, dev_minor;
        uint64_t inode, file_off;
} CodePlace;

static _Thread_local CodePlace cached_place[2];

static void place_remember(CodePlace *c, const MapEntry *e, uint64_t addr) {
        *c = (CodePlace) { e->dev_major, e->dev_minor, e->inode, e->offset + (addr - e->start) };
}

/* The address in e of the cached place, or 0 when e does not map it. */
static uint64_t place_in(const CodePlace *c, const MapEntry *e) {
        if (!c->inode || e->inode != c->inode || e->dev_major != c->dev_major || e->dev_minor != c->dev_minor ||
            c->file_off < e->offset || c->file_off - e->offset >= e->end - e->start)
                return 0;
        return e->start + (c->file_off - e->offset);
}

static int find_one(Target *t, const MapList *l, const bool *usable, const int *rank, CodePlace *c,
                    const uint8_t *code, size_t len, uint64_t *ret) {
        for (size_t i = 0; i < l->n; i++) {
                uint64_t a = usable[i] ? place_in(c, &l->v[i]) : 0;
                if (a && a + len <= l->v[i].end && remote_check_code(t, a, code, len) == 0) {
                        *ret = a;
                        return 0;
                }
        }
        for (int k = 0; k < 3; k++)
                for (size_t i = 0; i < l->n; i++)
                        if (usable[i] && rank[i] == k &&
                            remote_scan_range(t, l->v[i].start, l->v[i].end, code, len, ret) == 0) {
                                place_remember(c, &l->v[i], *ret);
                                return 0;
                        }
        return -ENOENT;
}

/*
 * Finds the two pieces of the target's own code a system call step needs: "syscall;
 * ret" and glibc's __restore_rt, in code that is never unmapped: libc first, then the
 * program and its other libraries, then the [vdso]. Any occurrence of the bytes will do,
 * even inside another instruction: execution starts there. Cached in t, checked again
 * before each use. -ENOEXEC when the target has neither (a static program without
 * glibc's signal code): no remote step is made then.
 */
static int remote_find_code(Target *t) {
        if (t->syscall_insn && t->restorer &&
            remote_check_code(t, t->syscall_insn, syscall_ret_code, sizeof(syscall_ret_code)) == 0 &&
            remote_check_code(t, t->restorer, restore_rt_code, sizeof(restore_rt_code)) == 0)
                return 0;
        t->syscall_insn = t->restorer = 0;

        const MapList *l;
        int r = procmaps_get(t, &l);   /* the places found are checked by reading them */
        if (r < 0)
                return r;
        _cleanup_free_ bool *usable = calloc(l->n ?: 1, sizeof(bool));
        _cleanup_free_ int *rank = calloc(l->n ?: 1, sizeof(int));
        if (!usable || !rank)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++) {
                const char *name = l->v[i].path ?: "";
                usable[i] = (l->v[i].prot & PROT_EXEC) && l->v[i].end > l->v[i].start && !strstr(name, "[vsyscall]") &&
                            !strstr(name, "memfd:ulp");
                rank[i] = (strstr(name, "/libc.so") || strstr(name, "/libc-")) ? 0 : strstr(name, "[vdso]") ? 2 : 1;
        }
        if (find_one(t, l, usable, rank, &cached_place[0], syscall_ret_code, sizeof(syscall_ret_code),
                     &t->syscall_insn) == 0 &&
            find_one(t, l, usable, rank, &cached_place[1], restore_rt_code, sizeof(restore_rt_code),
                     &t->restorer) == 0)
                return 0;
        t->syscall_insn = t->restorer = 0;
        return -ENOEXEC;
}

int target_prepare_remote(Target *t) {
        return remote_find_code(t);
}

/*
 * Interrupts a thread that runs remote code for too long and collects its stop.
 * *ret_signal_stop tells which kind of stop it is in. -ETIMEDOUT when it does not stop
 * either (left seized and running; target-late.c detaches it once it stops).
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
                        /* Any ptrace trap clears the pending interrupt (a blocking
                         * call it woke reports its exit stop first): ask again. */
                        (void) target__ptrace(PTRACE_CONT, th->tid, NULL, NULL);
                        (void) target__ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL);
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

/* A system call stop to run to: entry or exit, of system call nr (-1 any) at rip (0 any;
 * the exit stop of rt_sigreturn has the restored registers already). */
typedef struct RemoteEnd {
        bool at_entry;
        long nr;
        uint64_t rip;
} RemoteEnd;

/*
 * Resumes the thread with PTRACE_SYSCALL until it reaches end (*ret_regs read there).
 * Other system call stops (the called function's own system calls) are passed over,
 * group-stops and interrupt traps too, other signals kept for delivery at resume.
 * Returns 0 reached, -EFAULT a fault (a synchronous signal from the kernel, not
 * delivered), -ENOSYS a SIGSYS (seccomp), -ETIMEDOUT (interrupted, see remote_abandon),
 * -ESRCH the thread exited. *ret_signal_stop says whether the thread ends in a
 * signal-delivery-stop; after 0 it is in a system call stop.
 */
static int remote_run(Target *t, Thread *th, const RemoteEnd *end, int timeout_ms,
                      struct user_regs_struct *ret_regs, bool *ret_signal_stop) {
        uint64_t deadline = target__now_ns() + (uint64_t)timeout_ms * 1000000ULL;

        for (;;) {
                int r = target__ptrace(PTRACE_SYSCALL, th->tid, NULL, NULL);
                if (r < 0)
                        return r;
                int status;
                for (;;) {
                        uint64_t now = target__now_ns();
                        int left_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
                        /* In slices: the code run may execute a program, which waits
                         * for us to reap the other threads it kills. */
                        r = target__wait(t, th, MIN(left_ms, 20), &status);
                        if (r != -ETIMEDOUT || left_ms <= 20)
                                break;
                        target__reap_exited(t, th);
                }
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
                if (event != 0)
                        continue;
                if (sig == (SIGTRAP | 0x80)) {
                        struct __ptrace_syscall_info si;
                        r = target__ptrace(PTRACE_GET_SYSCALL_INFO, th->tid, (void *)sizeof(si), &si);
                        if (r < 0)
                                return r;
                        if ((end->rip && si.instruction_pointer != end->rip) ||
                            si.op != (end->at_entry ? PTRACE_SYSCALL_INFO_ENTRY : PTRACE_SYSCALL_INFO_EXIT))
                                continue;
                        r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, ret_regs);
                        if (r < 0)
                                return r;
                        if (end->nr >= 0 && (long)ret_regs->orig_rax != end->nr)
                                continue;
                        *ret_signal_stop = false;
                        return 0;
                }

                siginfo_t info;
                r = target__ptrace(PTRACE_GETSIGINFO, th->tid, NULL, &info);
                if (r < 0)
                        return r;
                if (is_fault_signal(sig) && info.si_code > 0) {
                        *ret_signal_stop = true;
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
        bool in_step;            /* the thread holds the step's registers */
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
        if (r == 0 && !c->fp_only && c->xstate.iov_len < FXSAVE_SIZE + 64)
                return -EIO;
        return r;
}

static int remote_restore_fpu(Thread *th, RemoteContext *c) {
        if (!c->xstate.iov_base)
                return 0;
        if (c->fp_only)
                return target__ptrace(PTRACE_SETFPREGS, th->tid, NULL, c->xstate.iov_base);
        return target__ptrace(PTRACE_SETREGSET, th->tid, (void *)(long)NT_X86_XSTATE, &c->xstate);
}

/*
 * A thread that ran into an int3 of ours and was stopped before it took the SIGTRAP
 * would take it inside the step, where it reads as a fault of the step's code and is
 * dropped: restored, the thread would run on one byte past the int3. The trap is taken
 * first, which puts the thread back on the int3 (target__waitpid()). -EAGAIN when it
 * still waits (another signal came first): the step is not made on this thread.
 */
static int remote_take_trap(Target *t, Thread *th) {
        int r;

        if (!target__at_int3_trap(t, th))
                return 0;
        /* In a signal-delivery-stop, or holding another signal: the trap cannot be taken
         * before that one goes on. */
        if (th->signal_stop || th->held_sig)
                return -EAGAIN;
        r = target_take_signal(t, th, t->stop_timeout_ms > 0 ? t->stop_timeout_ms : TARGET_STOP_TIMEOUT_MS);
        if (r < 0)
                return r == -ETIMEDOUT ? -EAGAIN : r;
        return target__at_int3_trap(t, th) || (th->held_sig == SIGTRAP && th->held_info.si_code == SI_KERNEL) ?
               -EAGAIN : 0;
}

/* Saves registers, mask and FPU state. */
static int remote_save(Thread *th, RemoteContext *c) {
        int r = target__ptrace(PTRACE_GETREGS, th->tid, NULL, &c->regs);
        if (r < 0)
                return r;
        r = target__ptrace(PTRACE_GETSIGMASK, th->tid, (void *)sizeof(uint64_t), &c->sigmask);
        if (r < 0)
                return r;
        return remote_save_fpu(th, c);
}

/*
 * The registers the thread resumes with after rt_sigreturn from its frame. rt_sigreturn
 * sets orig_rax to -1, so no restart logic runs afterwards: the frame says where the
 * kernel would have sent a thread stopped inside an interrupted system call with no
 * handler to run, i.e. back to its "syscall" instruction with the call's number. For
 * -ERESTART_RESTARTBLOCK (nanosleep, poll with a timeout...) the kernel would run
 * restart_syscall, but rt_sigreturn resets the restart block and restart_syscall would
 * fail with EINTR: the original call is made again with its original arguments (they are
 * still in their registers), which waits at most its full time again.
 */
static void remote_resume_regs(const struct user_regs_struct *in, struct user_regs_struct *out) {
        *out = *in;
        if ((long)in->orig_rax < 0)
                return;
        switch ((long)in->rax) {
        case -ERESTARTSYS:
        case -ERESTARTNOINTR:
        case -ERESTARTNOHAND:
        case -ERESTART_RESTARTBLOCK:
                out->rax = in->orig_rax;
                out->rip = in->rip - 2;
                break;
        default:
                break;
        }
}

/*
 * Writes the step's signal frame below the thread's red zone: the frame, then its XSAVE
 * image 64-byte aligned above it, in one write. *ret_sp gets the frame's address (the
 * return address slot, rsp % 16 == 8 as at a signal handler's entry).
 */
static int remote_write_frame(Target *t, RemoteContext *c, uint64_t pretcode, uint64_t *ret_sp) {
        size_t xsize = c->xstate.iov_len;
        size_t fp_room = xsize + (c->fp_only ? 0 : sizeof(uint32_t));
        uint64_t top = c->regs.rsp - RED_ZONE - FRAME_SLACK;
        uint64_t fp = ALIGN_DOWN(top - fp_room, (uint64_t)64);
        uint64_t sp = ALIGN_DOWN(fp - sizeof(RemoteSigframe), (uint64_t)16) - 8;
        size_t len = (size_t)(fp + fp_room - sp);

        if (c->regs.rsp < 65536 + len)
                return -EFAULT;
        _cleanup_free_ uint8_t *buf = calloc(1, len);
        if (!buf)
                return -ENOMEM;
        RemoteSigframe *f = (RemoteSigframe *)buf;
        struct user_regs_struct res;
        remote_resume_regs(&c->regs, &res);

        f->pretcode = pretcode;
        f->uc.uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
        f->uc.ss_flags = SS_FLAGS_KEEP;
        f->uc.sigmask = c->sigmask;
        RemoteSigcontext *m = &f->uc.mcontext;
        *m = (RemoteSigcontext) {
                .r8 = res.r8, .r9 = res.r9, .r10 = res.r10, .r11 = res.r11,
                .r12 = res.r12, .r13 = res.r13, .r14 = res.r14, .r15 = res.r15,
                .rdi = res.rdi, .rsi = res.rsi, .rbp = res.rbp, .rbx = res.rbx,
                .rdx = res.rdx, .rax = res.rax, .rcx = res.rcx, .rsp = res.rsp,
                .rip = res.rip, .eflags = res.eflags,
                .cs = (uint16_t)res.cs, .ss = (uint16_t)res.ss,
                .oldmask = c->sigmask,
                .fpstate = fp,
        };

        uint8_t *x = buf + (fp - sp);
        memcpy(x, c->xstate.iov_base, xsize);
        if (!c->fp_only) {
                /* What the kernel's own frames carry (fpx_sw_bytes, magic2 after the
                 * image): without it rt_sigreturn restores only the legacy area and
                 * resets the AVX state. ptrace put the feature mask (XCR0) at the same
                 * place; the image's header says which features it holds. */
                uint64_t xcr0, xstate_bv;
                memcpy(&xcr0, x + FX_SW_OFFSET, sizeof(xcr0));
                memcpy(&xstate_bv, x + FXSAVE_SIZE, sizeof(xstate_bv));
                uint32_t sw[12] = { 0 };
                uint64_t features = xcr0 ? xcr0 : xstate_bv;
                sw[0] = FP_XSTATE_MAGIC1;
                sw[1] = (uint32_t)(xsize + sizeof(uint32_t));
                memcpy(&sw[2], &features, sizeof(features));
                sw[4] = (uint32_t)xsize;
                memcpy(x + FX_SW_OFFSET, sw, sizeof(sw));
                uint32_t magic2 = FP_XSTATE_MAGIC2;
                memcpy(x + xsize, &magic2, sizeof(magic2));
                f->uc.uc_flags |= UC_FP_XSTATE;
        }
        /* Inside gathered writes (the loader's, whose relocations may run an IFUNC
         * resolver here) a write waits in the queue: the frame must be in the target
         * before the thread runs through it. */
        int r = target_write(t, sp, buf, len);
        if (r >= 0)
                r = target_write_flush(t);
        if (r < 0)
                return r;
        *ret_sp = sp;
        return 0;
}

/*
 * Starts a step: the frame first (memory below the red zone, nothing of the thread's),
 * then the registers, then the mask (see the top of the file). From the SETREGS on the
 * thread holds the step's registers and returns through the frame by itself.
 */
static int remote_enter(Target *t, Thread *th, RemoteContext *c, struct user_regs_struct *regs,
                        uint64_t pretcode, bool block, bool call) {
        uint64_t sp;
        int r = remote_write_frame(t, c, pretcode, &sp);
        if (r < 0)
                return r;
        /* A call's start record (Target.call_start) names the frame: the last write
         * before the registers change. */
        if (call && t->call_start && (r = t->call_start(t->call_start_data, th->tid, sp)) < 0)
                return r;
        /* Syscall stops come as SIGTRAP | 0x80, told apart from real SIGTRAPs: every
         * thread is seized with PTRACE_O_TRACESYSGOOD (target-stop.c, TARGET_PTRACE_OPTIONS). */
        regs->rsp = sp;
        regs->orig_rax = (uint64_t)-1;
        r = target__ptrace(PTRACE_SETREGS, th->tid, NULL, regs);
        if (r < 0)
                return r;
        c->in_step = true;
        if (!block)
                return 0;
        uint64_t m = remote_run_mask();
        r = target__ptrace(PTRACE_SETSIGMASK, th->tid, (void *)sizeof(uint64_t), &m);
        if (r < 0)
                return r;
        c->mask_set = true;
        return 0;
}

/* Puts the saved context back by ptrace; FPU, mask, registers last. */
static int remote_restore(Thread *th, RemoteContext *c) {
        int ret = remote_restore_fpu(th, c), r;
        if (c->mask_set) {
                r = target__ptrace(PTRACE_SETSIGMASK, th->tid, (void *)sizeof(uint64_t), &c->sigmask);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        r = target__ptrace(PTRACE_SETREGS, th->tid, NULL, &c->regs);
        if (r < 0 && ret == 0)
                ret = r;
        return ret;
}

/*
 * From a system call stop at the end of a step: the context put back, the thread stays
 * in that stop. An interrupt queued first sets TIF_SIGPENDING, so that whenever the
 * thread leaves the stop (detached by us, or by the kernel when we die) it passes
 * through get_signal() and the kernel's restart logic runs over the restored registers,
 * as after the stops target-stop.c makes (the exit work reads the thread's flags after the
 * ptrace stop). The interrupt's own trap, should the thread be resumed for another
 * step, is passed over by remote_run().
 */
static int remote_leave_syscall_stop(Thread *th, RemoteContext *c, bool *ret_signal_stop) {
        int r = target__ptrace(PTRACE_INTERRUPT, th->tid, NULL, NULL);
        if (r < 0)
                return r;
        r = remote_restore(th, c);
        if (r < 0)
                return r;
        c->in_step = false;
        *ret_signal_stop = false;
        return 0;
}

/* The outcome of a step: which error wins, and the thread settled for resume. A thread
 * that no longer stops (-ETIMEDOUT from remote_abandon with th->stopped cleared) or
 * exited cannot be restored; left with the step's registers it restores itself. */
static int remote_finish(Target *t, Thread *th, RemoteContext *c, int r, bool at_syscall_stop,
                         bool signal_stop) {
        if (th->gone)
                return -ESRCH;
        if (!th->stopped)
                return r;
        /* After an exec the saved registers belong to a program that is gone: the new
         * one continues from its start, as it would have without us. */
        if (t->image_changed)
                return -ESTALE;
        int q;
        if (at_syscall_stop)
                q = remote_leave_syscall_stop(th, c, &signal_stop);
        else
                q = remote_restore(th, c);
        if (q == 0)
                q = target__settle(t, th, signal_stop);
        return r < 0 ? r : q;
}

/*
 * At the entry stop of the call's rt_sigreturn: the context goes back by ptrace instead
 * (rt_sigreturn would reset the thread's restart block, and a thread stopped in
 * nanosleep would then see EINTR). The call is skipped (orig_rax -1) with the registers
 * set to make it again, should we die before the exit stop: rip back on the "syscall"
 * instruction, rax 15. *regs holds the entry stop's registers, rip is after "syscall".
 */
static int remote_skip_sigreturn(Target *t, Thread *th, struct user_regs_struct *regs, uint64_t rip,
                                 bool *ret_signal_stop) {
        regs->orig_rax = (uint64_t)-1;
        regs->rax = SYS_rt_sigreturn;
        regs->rip = rip - 2;
        int r = target__ptrace(PTRACE_SETREGS, th->tid, NULL, regs);
        if (r < 0)
                return r;
        const RemoteEnd end = { .at_entry = false, .nr = -1, .rip = rip - 2 };
        return remote_run(t, th, &end, REMOTE_SYSCALL_TIMEOUT_MS, regs, ret_signal_stop);
}

static void syscall_regs(struct user_regs_struct *regs, uint64_t rip, long nr, const long args[6]) {
        regs->rip = rip;
        regs->rax = (uint64_t)nr;
        regs->rdi = (uint64_t)args[0];
        regs->rsi = (uint64_t)args[1];
        regs->rdx = (uint64_t)args[2];
        regs->r10 = (uint64_t)args[3];
        regs->r8 = (uint64_t)args[4];
        regs->r9 = (uint64_t)args[5];
}

static int remote_syscall(Target *t, Thread *th, long nr, const long args[6], bool block, long *ret) {
        _cleanup_(remote_context_done) RemoteContext c = { 0 };
        bool signal_stop;

        int r = remote_find_code(t);
        if (r >= 0)
                r = remote_take_trap(t, th);
        if (r < 0)
                return r;
        signal_stop = th->signal_stop;
        r = remote_save(th, &c);
        if (r < 0)
                return r;

        struct user_regs_struct regs = c.regs;
        syscall_regs(&regs, t->syscall_insn, nr, args);
        r = remote_enter(t, th, &c, &regs, t->restorer, block, false);
        if (r < 0)
                return remote_finish(t, th, &c, r, false, signal_stop);
        const RemoteEnd end = { .at_entry = false, .nr = nr, .rip = t->syscall_insn + 2 };
        r = remote_run(t, th, &end, REMOTE_SYSCALL_TIMEOUT_MS, &regs, &signal_stop);
        if (r == 0)
                *ret = (long)regs.rax;
        return remote_finish(t, th, &c, r, r == 0, signal_stop);
}

/* An open batch: the context saved once; after the first call the thread waits in that
 * call's exit stop, holding the step's registers (stack pointer at the frame). */
struct RemoteBatch {
        RemoteContext c;
        bool signal_stop;        /* as remote_finish() needs it, updated by each run */
        bool entered;            /* the frame is written, the thread in a step */
        uint64_t frame_sp;
};

/* Ends the batch as remote_syscall() ends one call; at_syscall_stop: the thread waits in
 * the exit stop of a call of the batch. */
static int batch_close(Target *t, Thread *th, int r, bool at_syscall_stop) {
        struct RemoteBatch *b = th->batch;

        th->batch = NULL;
        r = remote_finish(t, th, &b->c, r, at_syscall_stop, b->signal_stop);
        remote_context_done(&b->c);
        free(b);
        return r;
}

static int batch_syscall(Target *t, Thread *th, long nr, const long args[6], long *ret) {
        struct RemoteBatch *b = th->batch;
        struct user_regs_struct regs = b->c.regs;
        int r;

        syscall_regs(&regs, t->syscall_insn, nr, args);
        if (!b->entered) {
                r = remote_enter(t, th, &b->c, &regs, t->restorer, true, false);
                if (r < 0)
                        return batch_close(t, th, r, false);
                b->entered = true;
                b->frame_sp = regs.rsp;
        } else {
                regs.rsp = b->frame_sp;
                regs.orig_rax = (uint64_t)-1;
                r = target__ptrace(PTRACE_SETREGS, th->tid, NULL, &regs);
                if (r < 0)
                        return batch_close(t, th, r, true);
        }
        const RemoteEnd end = { .at_entry = false, .nr = nr, .rip = t->syscall_insn + 2 };
        r = remote_run(t, th, &end, REMOTE_SYSCALL_TIMEOUT_MS, &regs, &b->signal_stop);
        if (r < 0)   /* not at a system call stop of ours: settled as a single call is */
                return batch_close(t, th, r, false);
        *ret = (long)regs.rax;
        return 0;
}

int target_syscall_batch_begin(Target *t, Thread *th) {
        if (t->image_changed)
                return -ESTALE;
        if (th->gone)
                return -ESRCH;
        if (!th->stopped || th->batch)
                return -EINVAL;
        int r = target_write_flush(t);
        if (r == 0)
                r = remote_find_code(t);
        if (r >= 0)
                r = remote_take_trap(t, th);
        if (r < 0)
                return r;
        struct RemoteBatch *b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        r = remote_save(th, &b->c);
        if (r < 0) {
                remote_context_done(&b->c);
                free(b);
                return r;
        }
        b->signal_stop = th->signal_stop;
        th->batch = b;
        return 0;
}

int target_syscall_batch_end(Target *t, Thread *th) {
        if (!th->batch)
                return 0;
        return batch_close(t, th, 0, th->batch->entered);
}

int target_syscall(Target *t, Thread *th, long nr, const long args[6], long *ret) {
        if (t->image_changed)
                return -ESTALE;
        if (th->gone)
                return -ESRCH;
        if (!th->stopped)
                return -EINVAL;
        int r = target_write_flush(t);   /* the call may read what was written */
        if (r < 0)
                return r;
        if (th->batch)
                return batch_syscall(t, th, nr, args, ret);
        return remote_syscall(t, th, nr, args, true, ret);
}

/*
 * A call past its deadline is not taken back: the code may hold a lock of the target, or
 * be half-way through a change of its data. The thread keeps the call's registers, stack
 * and run mask and, once resumed (detached), finishes the call by itself and returns
 * through its frame like any step whose tracer is gone. *ret gets the frame's address:
 * the thread is out of the call once its stack pointer is above it
 * (docs/fault-tolerance.md, "Callbacks past their deadline").
 */
static int remote_run_on(Target *t, Thread *th, bool signal_stop, uint64_t frame, uint64_t *ret) {
        *ret = frame;
        if (th->gone)
                return -ESRCH;
        if (t->image_changed)
                return -ESTALE;
        if (th->stopped) {
                int r = target__settle(t, th, signal_stop);
                if (r < 0)
                        return r;
        }
        return -ETIMEDOUT;
}

int target_call(Target *t, Thread *th, uint64_t func, const long args[6], uint64_t return_code,
                int timeout_ms, uint64_t *ret) {
        _cleanup_(remote_context_done) RemoteContext c = { 0 };

        t->call_entered = false;
        if (t->image_changed)
                return -ESTALE;
        if (th->gone)
                return -ESRCH;
        if (!th->stopped)
                return -EINVAL;
        if (th->batch)
                return -EBUSY;
        int r = target_write_flush(t);
        if (r < 0)
                return r;
        r = remote_check_code(t, return_code, call_return_code, sizeof(call_return_code));
        if (r < 0)
                return r == -ENOENT ? -EINVAL : r;
        r = remote_take_trap(t, th);
        if (r < 0)
                return r;
        bool signal_stop = th->signal_stop;
        r = remote_save(th, &c);
        if (r < 0)
                return r;

        struct user_regs_struct regs = c.regs;
        regs.rip = func;
        regs.rax = 0;
        regs.rdi = (uint64_t)args[0];
        regs.rsi = (uint64_t)args[1];
        regs.rdx = (uint64_t)args[2];
        regs.rcx = (uint64_t)args[3];
        regs.r8 = (uint64_t)args[4];
        regs.r9 = (uint64_t)args[5];
        r = remote_enter(t, th, &c, &regs, return_code, true, true);
        if (r < 0)
                return remote_finish(t, th, &c, r, false, signal_stop);
        t->call_entered = true;   /* resumed from here on: the function runs */
        const RemoteEnd end = { .at_entry = true, .nr = SYS_rt_sigreturn,
                                .rip = return_code + sizeof(call_return_code) };
        uint64_t frame = regs.rsp;
        r = remote_run(t, th, &end, timeout_ms, &regs, &signal_stop);
        if (r == -ETIMEDOUT)
                return remote_run_on(t, th, signal_stop, frame, ret);
        if (r == 0) {
                *ret = regs.rdi;
                r = remote_skip_sigreturn(t, th, &regs, end.rip, &signal_stop);
        }
        return remote_finish(t, th, &c, r, r == 0, signal_stop);
}
