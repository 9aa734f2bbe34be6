/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "common/errno-clause.h"
#include "common/errfmt.h"
#include "common/macro.h"
#include "common/ptrace-denied.h"
#include "elf/maps.h"
#include "patcher/nearmem.h"
#include "patcher/op.h"
#include "patcher/procmem.h"
#include "patcher/shadow.h"
#include "patcher/symcache.h"
#include "patcher/unwcache.h"
#include "patcher/vfork.h"
#include "patcher/x86_64/stub.h"
#include "patcher/x86_64/sigtrap.h"

#define INIT_TRIES 200
/* Retries: soon while passes make progress (threads leave the patched functions all the
 * time in a busy process); growing to a second while nothing moves, like the kernel's
 * klp_transition_work every HZ. */
#define OP_FIRST_RETRY_MS 1
#define OP_BACKOFF_START_MS 10
#define OP_MAX_RETRY_MS 1000
/* For so long, a pass that switched nobody is retried soon anyway if a straggler ran
 * since the last one: it is leaving and entering the patched functions, and the next
 * look has its chance. A thread blocked inside one does not run. */
#define OP_FAST_WINDOW_NS (1000ULL * 1000000ULL)
/* After that, a straggler that runs is still looked at again within tens of ms (a
 * running thread leaves the functions sooner or later; a pass costs it microseconds),
 * with a few ms of variation so that the passes do not fall into step with a thread's
 * own period and keep finding it at the same point. Only a straggler that does not run
 * backs off towards a second. */
#define OP_MOVING_RETRY_MS 20
/* One attempt to stop threads waits at most this long, less when the operation has less
 * time left: a loaded machine may need tens of ms to run a thread into its stop, and a
 * stop-the-world holds every other thread stopped meanwhile. An attempt that times out
 * is tried again at a later step, until the operation's deadline. */
#define OP_STOP_ATTEMPT_MS 250
#define OP_STOP_MIN_MS 20
/* While a thread is late (asked to stop, not stopped), steps come this often, so that it
 * is detached at most this long after it finally stops. */
#define OP_LATE_POLL_MS 5
/* A prologue's borrow (op->prologue): one short attempt per step. Nothing is lost by
 * giving up early: the thread keeps its stop request, and the next try finds it
 * stopped. Tries come every 5 ms, backing off to 50 ms while nothing stops. */
#define OP_BORROW_TRY_MS 20
#define OP_BORROW_RETRY_MAX_MS 50

uint64_t op_now_ns(void) {
        return monotonic_ns();
}

int op_fail(UlpOp *op, int r, const char *fmt, ...) {
        va_list ap;
        /* Whatever failed after an exec failed because of it: say that, the one cause. */
        if (op->t && op->t->image_changed && r < 0) {
                snprintf(op->report->message, sizeof(op->report->message),
                         "process %d executed a new program since the operation was authorized; "
                         "nothing more was written into it", op->t->pid);
                return -ESTALE;
        }
        va_start(ap, fmt);
        vfail(op->report->message, sizeof(op->report->message), r, fmt, ap);
        va_end(ap);
        return r;
}

void op_warn(UlpOp *op, const char *fmt, ...) {
        UlpReport *rep = op->report;
        char **n = realloc(rep->warnings, (rep->n_warnings + 2) * sizeof(char *));
        va_list ap;
        if (!n)
                return;
        rep->warnings = n;
        va_start(ap, fmt);
        if (vasprintf(&n[rep->n_warnings], fmt, ap) >= 0)
                n[++rep->n_warnings] = NULL;
        va_end(ap);
}

UlpOp *op_new(OpKind kind, const UlpOptions *o, UlpReport *report) {
        UlpOp *op = calloc(1, sizeof(*op));
        if (!op)
                return NULL;
        op->kind = kind;
        op->o = o ? *o : (UlpOptions) {};
        if (!op->o.timeout_ms)
                op->o.timeout_ms = ULP_DEFAULT_TIMEOUT_MS;
        op->report = report;
        op->patch = -1;
        op->start_ns = op_now_ns();
        op->deadline_ns = op->start_ns + (uint64_t)op->o.timeout_ms * 1000000ULL;
        op->backoff_ms = OP_FIRST_RETRY_MS;
        return op;
}

static void free_symtabs(UlpOp *op) {
        for (size_t i = 0; op->symtabs && i < op->mods.n; i++)
                symcache_put(op->symtabs[i]);
        free(op->symtabs);
        op->symtabs = NULL;
}

int op_refresh_modules(UlpOp *op) {
        ModuleList prev = op->mods;
        int r;
        const MapList *maps;

        free_symtabs(op);
        op->mods = (ModuleList) {};
        procmaps_drop(op->t);   /* a refresh reads the maps as they are now */
        r = procmaps_get(op->t, &maps);
        /* what the operation read before (at its start) stands for what did not change */
        if (r >= 0)
                r = modules_reread_maps(op->t->pid, maps, &prev, &op->mods);
        modulelist_done(&prev);
        if (r == -E2BIG)
                return op_fail(op, r, "process %d has more than %u ELF objects mapped, more than ulp reads "
                               "(docs/limits.md)", op->t->pid, (unsigned) MODULES_MAX);
        if (r < 0)
                return op_fail(op, r, "cannot read the modules of process %d: %s", op->t->pid, process_errno_clause(r));
        op->symtabs = calloc(op->mods.n ? op->mods.n : 1, sizeof(SymTab *));
        if (!op->symtabs)
                return -ENOMEM;
        op->res = (SymResolver) { .mods = &op->mods, .symtabs = op->symtabs };
        if (op->u)
                return unwinder_set_modules(op->u, &op->mods);
        return 0;
}

static int read_target(void *userdata, uint64_t addr, void *buf, size_t len) {
        return target_read(userdata, addr, buf, len);
}

_Static_assert(sizeof(((UlpOp *) 0)->u_image) == UNWCACHE_IMAGE_LEN &&
               sizeof(((Target *) 0)->random) == UNWCACHE_IMAGE_LEN, "an unwinder is kept by the image's AT_RANDOM");

int op_unwinder(UlpOp *op) {
        int r;
        if (op->u)
                return 0;
        /* the one an earlier operation on this process left, when there is one */
        op->u_keyed = op->t->random_addr != 0;
        memcpy(op->u_image, op->t->random, sizeof(op->u_image));
        r = unwcache_take(op->t->pid, op->u_keyed ? op->u_image : NULL, &op->mods, read_target, op->t, &op->u);
        if (r < 0)
                return op_fail(op, r, "cannot set up the unwinder: %s", process_errno_clause(r));
        return 0;
}

int op_fail_denied(UlpOp *op, pid_t pid) {
        char line[256];
        uid_t owner;

        if (procmem_mode_denies(pid, &owner) > 0)
                return op_fail(op, -EACCES, "cannot open /proc/%d/mem for writing: permission denied: "
                               "the file belongs to uid %u, and this process (uid %u) lacks CAP_DAC_OVERRIDE",
                               pid, (unsigned) owner, (unsigned) geteuid());
        return op_fail(op, -EPERM, "%s", ptrace_denied_line(pid, line, sizeof(line)));
}

int op_target_open(UlpOp *op, pid_t pid) {
        pid_t parent = vfork_parent_of(pid);
        if (parent > 0)
                return op_fail(op, -EBUSY, "process %d is a vfork child of process %d that has not called exec or "
                               "exited yet: it runs on the memory of process %d, whose patches are its patches",
                               pid, parent, parent);
        int r = target_open(pid, &op->t);
        if (r == -ESRCH)
                return op_fail(op, r, "no process with pid %d", pid);
        if (r == -EOWNERDEAD)
                return op_fail(op, r, "process %d cannot be patched: its main thread has exited while its other "
                               "threads run on, and ulp reaches a process's memory through its main thread "
                               "(docs/reach.md)", pid);
        if (r == -EPERM || r == -EACCES)
                return op_fail_denied(op, pid);
        if (r < 0)
                return op_fail(op, r, "cannot open process %d: %s", pid, process_errno_clause(r));
        return 0;
}

int op_find_control(UlpOp *op, pid_t pid) {
        const MapList *maps;
        uint64_t addr;
        int r = procmaps_get(op->t, &maps);
        if (r >= 0)
                r = control_find_in(maps, &addr);
        if (r < 0)
                return op_fail(op, r, "cannot read the memory map of process %d", pid);
        if (r == 0)
                return 0;
        op->c.addr = addr;
        r = op_load_control(op);
        return r < 0 ? r : 1;
}

int op_open_target(UlpOp *op, pid_t pid) {
        char why[256];
        int r = op_target_open(op, pid);
        if (r < 0)
                return r;
        /* No thread of it could be stopped: refused before anything is written. */
        if (op->t->foreign_tracer)
                return op_fail(op, -EBUSY, "cannot stop process %d: %s", pid,
                               op_stop_error(op, -EBUSY, why, sizeof(why)));
        r = target_bind_image(op->t, op->o.auth_mem ? op->o.auth_mem_fd : -1);
        if (r == -ESTALE)   /* image_changed is set: op_fail() says what happened */
                return op_fail(op, r, "the image changed");
        if (r == -ESRCH)
                return op_fail(op, r, "no process with pid %d", pid);
        if (r < 0)
                return op_fail(op, r, "cannot read the program process %d runs: %s", pid, process_errno_clause(r));
        r = op_refresh_modules(op);
        if (r < 0)
                return r;
        r = op_find_control(op, pid);
        if (r == -ENODATA) {
                /* An unborn block (its creator died before writing it): as if none. */
                uint64_t addr = op->c.addr;
                control_done(&op->c);
                op->c.addr = 0;
                op->c.unborn_addr = addr;
                return 0;
        }
        if (r <= 0)
                return r;
        return op_check_trust(op);
}

int op_check_trust(UlpOp *op) {
        if (!op->c.trusted && !op->o.trust_unsigned)
                return op_fail(op, -EPERM, "the ulp control block of process %d carries no valid signature of "
                               "this machine's ulp: not acted on (only the process's own user may act on it)",
                               op->t->pid);
        return 0;
}

int op_load_control(UlpOp *op) {
        pid_t pid = op->t->pid;
        int r = control_load(op->t, &op->c);

        if (r == -ENODATA)
                return r;
        if (r == -EBADMSG)
                return op_fail(op, r, "the ulp control block of process %d is malformed: %s", pid, op->c.why);
        if (r == -EBUSY)
                return op_fail(op, r, "the ulp control block of process %d is %s", pid, op->c.why);
        if (r < 0)
                return op_fail(op, r, "cannot read the ulp control block of process %d: %s", pid, process_errno_clause(r));
        return 0;
}

static unsigned op_remaining_ms(const UlpOp *op) {
        uint64_t now = op_now_ns();
        return now >= op->deadline_ns ? 0 : (unsigned)MIN((op->deadline_ns - now) / 1000000ULL, (uint64_t)UINT32_MAX);
}

void op_stop_budget(UlpOp *op) {
        op->t->stop_timeout_ms = (int)MAX(MIN(op_remaining_ms(op), (unsigned)OP_STOP_ATTEMPT_MS),
                                          (unsigned)OP_STOP_MIN_MS);
}

const char *op_stop_error(UlpOp *op, int r, char *buf, size_t len) {
        if (r == -ETIMEDOUT && op->t && op->t->late_tid)
                target_describe_late(op->t, buf, len);
        else if (r == -ETIMEDOUT)
                snprintf(buf, len, "a thread did not stop in time");
        else if (r == -ESRCH)
                snprintf(buf, len, "it exited");
        else if (r == -EPERM || r == -EACCES)
                snprintf(buf, len, "the kernel refused to let ulp trace it");
        else if (r == -EBUSY && op->t)
                target_describe_tracer(op->t, buf, len);
        else
                snprintf(buf, len, "%s", process_errno_clause(r));
        return buf;
}

int op_borrow(UlpOp *op, Thread **ret) {
        char why[256];
        Thread *th = NULL;
        unsigned hold = op->borrow_retry ? (unsigned)OP_BORROW_TRY_MS :
                        MAX((unsigned)OP_BORROW_MS, op->o.callback_timeout_ms ?: (unsigned)CALLBACK_TIMEOUT_MS);
        /* what needs no stopped thread is done before one is stopped */
        (void)target_prepare_remote(op->t);
        int r = target_stop_any(op->t, (int)MAX(MIN(op_remaining_ms(op), hold), (unsigned)OP_STOP_MIN_MS), &th);

        if (r == -ETIMEDOUT && op->borrow_retry) {
                if (op_now_ns() < op->deadline_ns)
                        return -EAGAIN;
                return op_fail(op, r, "no thread of process %d could be stopped within %u ms: %s", op->t->pid,
                               op->o.timeout_ms, op_stop_error(op, r, why, sizeof(why)));
        }
        if (r == -ETIMEDOUT)
                return op_fail(op, r, "no thread of process %d could be stopped: %s", op->t->pid,
                               op_stop_error(op, r, why, sizeof(why)));
        if (r < 0)
                return op_fail(op, r, "cannot stop any thread of process %d: %s", op->t->pid,
                               op_stop_error(op, r, why, sizeof(why)));
        *ret = th;
        return 0;
}

int op_borrow_now(UlpOp *op, Thread **ret) {
        bool retry = op->borrow_retry;
        int r;

        op->borrow_retry = false;
        r = op_borrow(op, ret);
        op->borrow_retry = retry;
        return r;
}

bool op_stubs_fit(UlpOp *op, int patch) {
        const Control *c = &op->c;
        const ControlPatch *p = &c->img->patches[patch];
        _cleanup_free_ AreaWant *v = NULL;
        size_t n = 0;

        if (p->first_func > CONTROL_MAX_FUNCS || p->n_funcs > CONTROL_MAX_FUNCS - p->first_func ||
            !(v = calloc(p->n_funcs + 1, sizeof(*v))))
                return false;
        for (unsigned i = p->first_func; i < p->first_func + p->n_funcs; i++) {
                const ControlFunc *f = &c->img->funcs[i];
                v[n++] = (AreaWant) { f->old_addr, f->old_addr + f->old_size, STUB_MAX_SIZE };
        }
        if (!c->img->hdr.guard_block && p->n_funcs) {
                const ControlFunc *f = &c->img->funcs[p->first_func];
                v[n++] = (AreaWant) { f->old_addr, f->old_addr + f->old_size, SIGTRAP_BLOCK_SIZE };
        }
        return area_fits(c, v, n);
}

/* Stubs are fresh for each transition: one from a finished transition may still have a
 * thread inside it. Each goes near its function, so the entry's 5-byte jump reaches it. */
int op_build_stubs(UlpOp *op, Thread *th, int patch) {
        Control *c = &op->c;
        ControlPatch *p = &c->img->patches[patch];

        for (unsigned i = p->first_func; i < p->first_func + p->n_funcs; i++) {
                ControlFunc *f = &c->img->funcs[i];
                uint8_t code[STUB_MAX_SIZE];
                size_t len;
                int top = control_top_func(c, f->old_addr, patch);
                uint64_t old = top >= 0 && !(c->img->funcs[top].flags & CF_FLAG_NOP)
                                       ? c->img->funcs[top].new_addr : f->copy_addr;
                StubParams sp;
                int r;

                r = area_alloc(op->t, th, c, f->old_addr, f->old_addr + f->old_size, STUB_MAX_SIZE,
                               &f->stub_addr);
                if (r < 0)
                        return op_fail(op, r, "no memory for a dispatch stub near %s: %s", f->symbol, process_errno_clause(r));
                f->prev_addr = old;
                sp = (StubParams) {
                        .stub_addr = f->stub_addr,
                        .table_addr = c->addr + CONTROL_OFF(table_tp),
                        .table_order = CONTROL_TABLE_ORDER,
                        .target_state_addr = c->addr + CONTROL_OFF(hdr.untabled_state),
                        .new_addr = f->new_addr,
                        .old_addr = old,
                };
                r = stub_build(&sp, code, sizeof(code), &len);
                if (r >= 0)
                        r = target_write(op->t, f->stub_addr, code, len);
                if (r < 0)
                        return op_fail(op, r, "cannot write the dispatch stub of %s: %s", f->symbol, process_errno_clause(r));
        }
        /* The SIGTRAP guard of init's int3 window (docs/stops.md), once per process and
         * never freed; written with the header at init. Without one, init stops every
         * thread. */
        if (!c->img->hdr.guard_block && p->n_funcs) {
                const ControlFunc *f = &c->img->funcs[p->first_func];
                uint64_t block = 0;
                if (area_alloc(op->t, th, c, f->old_addr, f->old_addr + f->old_size, SIGTRAP_BLOCK_SIZE, &block) >= 0)
                        c->img->hdr.guard_block = block;
        }
        return control_write_funcs(op->t, c, p->first_func, p->n_funcs);
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* What the entry init found holds: named, with its bytes, so that a tool that wrote
 * there (a debugger's breakpoint: cc) can be told. */
static int op_fail_entry_busy(UlpOp *op) {
        const ControlPatch *p = &op->c.img->patches[op->patch];
        char hex[3 * 16 + 1] = "";
        const char *sym = op->tr.busy_func >= 0 && (unsigned)op->tr.busy_func < p->n_funcs
                                  ? op->c.img->funcs[p->first_func + (unsigned)op->tr.busy_func].symbol : "?";

        for (unsigned i = 0, k = 0; i < op->tr.busy_len && i < 16; i++)
                k += (unsigned)snprintf(hex + k, sizeof(hex) - k, "%s%02x", i ? " " : "", op->tr.busy_bytes[i]);
        return op_fail(op, -EBUSY, "the code of a patched function was changed by someone else: the entry of "
                       "%.96s holds %s; nothing written", sym, hex);
}

/* A post-unpatch callback runs from the patch's code after completion: completion
 * leaves it mapped then. */
static void op_set_keep_code(UlpOp *op) {
        op->tr.keep_code = op->tr.target_state == THREAD_UNPATCHED &&
                           op->c.img->patches[op->patch].callbacks[CP_CB_POST_UNPATCH];
}

/* init under one stop-the-world (retried while threads sit in code being rewritten).
 * A thread that does not stop within the attempt leaves op->init_pending set, for the
 * next step to try again: 0 then, as when it started. */
static int op_try_init(UlpOp *op) {
        char why[256];
        int r, k;

        for (int i = 0; i < INIT_TRIES; i++) {
                /* A whole attempt even when loading the patch ate the time: the deadline
                 * is for the transition, which has not had its chance yet. */
                op->t->stop_timeout_ms = OP_STOP_ATTEMPT_MS;
                /* Set again by a try that has to wait. Left set by an earlier one, the
                 * step after a successful init ran init once more, over the stubs it had
                 * just put in: "the code of a patched function was changed by someone
                 * else" (docs/stops.md). */
                op->init_pending = false;
                /* Without a stop of every thread when it can (docs/stops.md, "The
                 * untabled state"); a thread it could not stop is the next step's. */
                r = transition_nostop_mode() != NOSTOP_INIT_OFF ? transition_init_nostop(&op->tr, op->c.img->hdr.guard_block) : -ENOSYS;
                k = 0;
                /* Each try is a whole window: the next step tries again, until the
                 * deadline (a thread that could not stop, or one in a stub; a window
                 * that could not be taken back, which the next try takes back first). */
                if (r == -EAGAIN) {
                        op->init_pending = true;
                        return 0;
                }
                if (r == -ENOSYS) {
                        r = target_stop_all(op->t);
                        op->init_pending = r == -ETIMEDOUT;
                        if (r == -ETIMEDOUT)
                                return 0;
                        if (r < 0)
                                return op_fail(op, r, "cannot stop process %d: %s", op->t->pid,
                                               op_stop_error(op, r, why, sizeof(why)));
                        r = transition_init(&op->tr);
                        /* A few threads: checked, and the transition completed when it
                         * can, in this same stop (transition_try_at_init()). */
                        if (r == 0) {
                                op_set_keep_code(op);
                                op->tr.at_init_error = MIN(transition_try_at_init(&op->tr), 0);
                        }
                        k = target_resume_all(op->t);
                }
                /* Checked first: a window that could not be taken back (its int3 bytes
                 * stay, under the guard) is a resume's to close, never retried here. */
                if (r < 0 && op->tr.entries_left)
                        return op_fail(op, r, "cannot start the transition: %s; it stays in process %d "
                                       "until a revert of the patch takes it back", process_errno_clause(r), op->t->pid);
                if (r == -EOPNOTSUPP) {
                        op_warn(op, "threads of process %d share a thread pointer: global mode used", op->t->pid);
                        op->o.global = op->tr.global = true;
                        return 0;
                }
                if (r == -EBUSY)
                        return op_fail_entry_busy(op);
                if (r == -EILSEQ)
                        return op_fail(op, r, "thread %d of process %d is at 0x%llx, inside an instruction of "
                                       "the bytes the entry jump replaces: no relocated copy can hold it; "
                                       "nothing written", op->tr.stuck_tid, op->t->pid,
                                       (unsigned long long)op->tr.stuck_pc);
                if (r != -EAGAIN)
                        return r < 0 ? op_fail(op, r, "cannot start the transition: %s", process_errno_clause(r)) : k;
                sleep_ms(1);
        }
        return op_fail(op, -EBUSY, "threads keep running inside the dispatch stubs whose table is to be "
                       "rewritten; try again");
}

int op_start_transition(UlpOp *op, int target_state) {
        int r;

        r = transition_prepare(&op->tr, op->t, &op->c, op->u, &op->res, op->patch, target_state,
                               op->o.global);
        if (r < 0)
                return op_fail(op, r, "cannot prepare the transition: %s", process_errno_clause(r));
        op->tr_ready = true;
        op->tr.return_trap = op->o.return_trap;
        /* In the header init writes: a ulpd that takes the transition over after a
         * restart keeps to the timeout asked for, not the default. */
        op->c.img->hdr.timeout_ms = op->o.timeout_ms;
        if (op->o.global)
                return 0;
        return op_try_init(op);
}

/* The step of an operation whose transition has not started: one more try. Past the
 * deadline, nothing of the patch was ever visible: it is taken back. */
static int op_step_init(UlpOp *op) {
        char why[256];
        int r = op_try_init(op);

        if (r >= 0 && !op->init_pending)
                return 0;
        if (r >= 0 && op_now_ns() < op->deadline_ns)
                return 0;
        op->done = true;
        op_report_figures(op);
        /* A revert that did not start leaves the patch applied, as it was. */
        if (r < 0) {
                if (op->kind == OP_APPLY)
                        (void)transition_cancel(&op->tr);
                return r;
        }
        op_stop_error(op, -ETIMEDOUT, why, sizeof(why));
        /* A window of init not taken back by the deadline stays, under its guard. */
        if (op->tr.entries_left)
                return op_fail(op, -ETIMEDOUT, "the transition could not start within %u ms: %s; it stays in "
                               "process %d until a revert of the patch takes it back", op->o.timeout_ms, why,
                               op->t->pid);
        op_fail(op, -ETIMEDOUT, "the transition could not start within %u ms: %s; nothing changed",
                op->o.timeout_ms, why);
        r = op->kind == OP_APPLY ? transition_cancel(&op->tr) : 0;
        if (r < 0)
                op_warn(op, "taking the patch's code back failed: %s", process_errno_clause(r));
        return -ETIMEDOUT;
}

void op_report_figures(UlpOp *op) {
        UlpReport *rep = op->report;
        rep->threads = op->tr.total;
        rep->switched = op->tr.switched;
        rep->retries = op->tr.passes > 0 ? op->tr.passes - 1 : 0;
        rep->max_thread_stop_us = op->t->max_thread_stop_ns / 1000;
        rep->max_stw_us = op->t->max_stw_ns / 1000;
        rep->total_ms = (op_now_ns() - op->start_ns) / 1000000;
        rep->forced = op->tr.forced;
}

static void report_stragglers(UlpOp *op) {
        UlpReport *rep = op->report;
        free(rep->stragglers);
        rep->stragglers = calloc(op->tr.n_pending ? op->tr.n_pending : 1, sizeof(UlpStraggler));
        rep->n_stragglers = 0;
        for (size_t i = 0; rep->stragglers && i < op->tr.n_pending; i++) {
                UlpStraggler *s = &rep->stragglers[rep->n_stragglers++];
                s->tid = op->tr.pending[i].tid;
                target_thread_name(op->t, s->tid, s->comm);
                snprintf(s->function, sizeof(s->function), "%s",
                         op->tr.pending[i].blocker[0] ? op->tr.pending[i].blocker : "not checked yet");
        }
}

/* The stragglers of the last pass into the control block, for status readers in other
 * processes (ulp_status); an empty list once the transition is over. Best effort: the
 * list is informational, a failed write does not fail the operation. */
static void publish_stragglers(UlpOp *op, bool over) {
        ControlStraggler v[CONTROL_MAX_STRAGGLERS] = {};
        size_t n = 0;

        for (size_t i = 0; !over && i < op->tr.n_pending && n < ELEMENTSOF(v); i++, n++) {
                const PendingThread *p = &op->tr.pending[i];
                v[n] = (ControlStraggler) { .tid = p->tid };
                target_thread_name(op->t, p->tid, v[n].comm);
                snprintf(v[n].blocker, sizeof(v[n].blocker), "%.107s", p->blocker[0] ? p->blocker : "not checked yet");
        }
        (void)control_write_stragglers(op->t, &op->c, v, n, op->tr.passes);
}

/* An exec replaces the image the transition was about: the control block is gone with
 * it. True when the control block is no longer where the operation found it. */
static bool target_replaced(UlpOp *op) {
        const MapList *maps;
        uint64_t addr = 0;
        int r = procmaps_get(op->t, &maps);   /* the step's read, shared (procmem.h) */

        if (r >= 0)
                r = control_find_in(maps, &addr);
        return r == 0 || (r > 0 && addr != op->c.addr) || r == -ENOENT || r == -ESRCH;
}

static void report_drop_stragglers(UlpReport *rep) {
        free(rep->stragglers);
        rep->stragglers = NULL;
        rep->n_stragglers = 0;
}

static int op_replaced(UlpOp *op) {
        op->done = true;
        op_report_figures(op);
        /* The threads of an image that is gone are nobody's stragglers: one line. */
        report_drop_stragglers(op->report);
        return op_fail(op, -ESTALE, "process %d executed a new program or exited during the transition: "
                       "the patched image is gone, nothing left to do", op->t->pid);
}

/* A reverted patch whose post-unpatch callback had to run from its code: unmapped now,
 * unless some thread was forced (then its code stays, as transition.c's transition__finish()). */
static void unmap_after_callback(UlpOp *op, ControlPatch *p) {
        Thread *th;

        if (p->state != CP_UNPATCHED || !p->map_size || control_keeps_code(op->c.img, p))
                return;
        if (op_borrow(op, &th) < 0)
                return;
        if (loader_unmap(op->t, th, p->map_start, p->map_size) >= 0) {
                p->map_size = 0;
                (void)control_write_patch(op->t, &op->c, (unsigned)op->patch);
        }
        (void)target_resume_thread(op->t, th);
}

/* The end of an operation: post callbacks after a completed transition. */
static int op_finished(UlpOp *op) {
        ControlPatch *p = &op->c.img->patches[op->patch];
        int r = 0, cb = 0;
        uint64_t post = 0;

        op->done = true;
        if (op->tr.forced)
                op_warn(op, "forced: %zu thread(s) switched without the check; the patch code stays mapped",
                        op->forced_threads);
        publish_stragglers(op, true);
        /* As klp_complete_transition: by the state reached, so that a reversed apply
         * gets its post-unpatch (its pre-patch ran) and a reversed revert its post-patch. */
        post = op->tr.target_state == THREAD_PATCHED ? p->callbacks[CP_CB_POST_PATCH] : p->callbacks[CP_CB_POST_UNPATCH];
        if (post)
                r = op_run_callback(op, post, &cb);
        if (r < 0)
                op_warn(op, "post callback failed to run: %s", op->report->message);
        if (op->tr.keep_code)
                unmap_after_callback(op, p);
        op_report_figures(op);
        if (op->reversing)
                return -ETIMEDOUT;
        return 1;
}

static int op_timeout(UlpOp *op) {
        char first[160] = "", why[256];
        int r;

        report_stragglers(op);
        if (op->report->n_stragglers)
                snprintf(first, sizeof(first), "; thread %d (%s) in %s", op->report->stragglers[0].tid,
                         op->report->stragglers[0].comm, op->report->stragglers[0].function);
        else if (target_collect_late(op->t) > 0) {
                /* No straggler left, but the final stop-the-world waits for this one. */
                target_describe_late(op->t, why, sizeof(why));
                snprintf(first, sizeof(first), "; %.150s", why);
        }
        if (op->o.force) {
                /* Past the deadline the force gets whole stop attempts of its own, and,
                 * while a thread cannot be stopped (a loaded machine), the next steps try
                 * its stop again for another timeout: switched threads stay switched. */
                if (!op->reverse_until_ns) {
                        op->reverse_until_ns = op->deadline_ns + (uint64_t)op->o.timeout_ms * 1000000ULL;
                        op->forced_threads = op->report->n_stragglers;
                }
                op->t->stop_timeout_ms = OP_STOP_ATTEMPT_MS;
                r = transition_force(&op->tr);
                if (r == -ETIMEDOUT && op_now_ns() < op->reverse_until_ns) {
                        op->report->message[0] = 0;
                        return 0;
                }
                if (r < 0)
                        return op_fail(op, r, "forcing the transition failed: %s",
                                       op_stop_error(op, r, why, sizeof(why)));
                return op_finished(op);
        }
        if (op->reversing)
                return op_fail(op, -ETIMEDOUT,
                               "the transition did not finish in time and its reversal is still waiting%s; "
                               "it stays consistent in the target: run revert or resume later", first);
        op->reversing = true;
        if (op->tr.global && op->kind == OP_APPLY) {
                /* Global mode switches all or none: none did, nothing to reverse. The
                 * cancel borrows a thread: a whole stop attempt, not what is left of the
                 * last one (on a loaded machine 40 ms were not enough: "cancelling the
                 * patch failed", the patch left loaded), tried again at the next steps,
                 * as a reversal is, for up to another timeout. */
                if (!op->reverse_until_ns)
                        op->reverse_until_ns = op->deadline_ns + (uint64_t)op->o.timeout_ms * 1000000ULL;
                op->t->stop_timeout_ms = OP_STOP_ATTEMPT_MS;
                r = transition_cancel(&op->tr);
                if (r == -ETIMEDOUT && op_now_ns() < op->reverse_until_ns) {
                        op->reversing = false;
                        op->report->message[0] = 0;
                        return 0;
                }
                op->done = true;
                op_report_figures(op);
                if (r < 0)
                        return op_fail(op, r, "cancelling the patch failed: %s", op_stop_error(op, r, why, sizeof(why)));
                return op_fail(op, -ETIMEDOUT, "the patch could not be applied within %u ms: %zu thread(s) "
                               "were always in the way%s; nothing changed", op->o.timeout_ms,
                               op->report->n_stragglers, first);
        }
        op_fail(op, -ETIMEDOUT, "the transition did not finish within %u ms and was reversed (%zu straggler(s)%s)",
                op->o.timeout_ms, op->report->n_stragglers, first);
        if (!op->reverse_until_ns)
                op->reverse_until_ns = op->deadline_ns + (uint64_t)op->o.timeout_ms * 1000000ULL;
        op_stop_budget(op);
        r = transition_reverse(&op->tr);
        if (r == -ETIMEDOUT && op_now_ns() < op->reverse_until_ns) {
                /* A thread that cannot be stopped now holds the reversal back: the
                 * transition goes on as it was (consistent), the reversal is tried again
                 * at the next step. */
                op->reversing = false;
                op->report->message[0] = 0;
                return 0;
        }
        if (r < 0) {
                return op_fail(op, r, "the transition did not finish within %u ms and could not be reversed: %s; "
                               "it stays consistent in the target: run revert or resume later",
                               op->o.timeout_ms, op_stop_error(op, r, why, sizeof(why)));
        }
        op->deadline_ns = op_now_ns() + (uint64_t)op->o.timeout_ms * 1000000ULL;
        op->backoff_ms = OP_FIRST_RETRY_MS;
        return 0;
}

/* The third field of /proc/PID/task/TID/schedstat: how many times tid ran; 0 unknown. */
static uint64_t thread_slices(pid_t pid, pid_t tid) {
        char path[64];
        unsigned long long run, wait, slices = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", pid, tid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        if (fscanf(f, "%llu %llu %llu", &run, &wait, &slices) != 3)
                slices = 0;
        fclose(f);
        return slices;
}

/* True when some straggler (of the first few) ran since the previous pass. */
static bool stragglers_moving(UlpOp *op) {
        bool moving = false;
        for (size_t i = 0; i < op->tr.n_pending && i < CONTROL_MAX_STRAGGLERS; i++) {
                PendingThread *p = &op->tr.pending[i];
                uint64_t s = thread_slices(op->t->pid, p->tid);
                /* Our own stop and resume count as one run: more means it ran on its own. */
                moving |= s && p->slices && s > p->slices + 1;
                p->slices = s;
        }
        return moving;
}

/* One more try of the operation's prologue: 0 and op->prologue still set while it waits
 * for a thread to borrow; once it ran (done or failed) its data is freed. */
static int op_step_prologue(UlpOp *op) {
        op_stop_budget(op);
        op->borrow_retry = true;
        int r = op->prologue(op);
        op->borrow_retry = false;
        if (r == -EAGAIN) {
                op->report->message[0] = 0;
                /* Nothing was done: the thread stays asked to stop; the next try
                 * collects its stop or asks another. */
                op->backoff_ms = MIN(MAX(op->backoff_ms * 2, (unsigned)OP_LATE_POLL_MS),
                                     (unsigned)OP_BORROW_RETRY_MAX_MS);
                return 0;
        }
        if (op->prologue_free)
                op->prologue_free(op->prologue_data);
        op->prologue = NULL;
        op->prologue_data = NULL;
        op->prologue_free = NULL;
        op->backoff_ms = OP_FIRST_RETRY_MS;
        return r;
}

int ulp_op_step(UlpOp *op, unsigned *ret_next_ms) {
        unsigned before = op->tr.switched;
        bool moving;
        char why[256];
        int r;

        if (op->done)
                return op->reversing ? -ETIMEDOUT : 1;
        if (op->t)
                procmaps_drop(op->t);   /* its threads ran since the last step */
        if (op->prologue) {
                r = op_step_prologue(op);
                if (r < 0)
                        return r;
                if (op->prologue) {
                        if (ret_next_ms)
                                *ret_next_ms = op->backoff_ms;
                        return 0;
                }
        }
        if (op->next_pass_ns && op_now_ns() + 500000ULL < op->next_pass_ns) {
                /* Called early to let a late thread go: no pass yet. */
                unsigned left = (unsigned)((op->next_pass_ns - op_now_ns()) / 1000000ULL);
                if (ret_next_ms)
                        *ret_next_ms = MAX(1u, target_collect_late(op->t) > 0 ? MIN(left, (unsigned)OP_LATE_POLL_MS)
                                                                            : left);
                return 0;
        }
        if (op->t->image_changed || target_replaced(op))
                return op_replaced(op);
        op_stop_budget(op);
        if (op->init_pending) {
                r = op_step_init(op);
                if (r < 0)
                        return r;
                if (op->init_pending) {
                        if (ret_next_ms)
                                *ret_next_ms = OP_LATE_POLL_MS;
                        return 0;
                }
        }
        op_set_keep_code(op);
        /* what init's stop did instead of a pass (transition_try_at_init()) */
        r = op->tr.completed ? 1 : op->tr.at_init_error;
        op->tr.at_init_error = 0;
        if (r == 0)
                r = transition_try_complete(&op->tr);
        /* An exec in the middle of the pass shows as memory that is gone. */
        if (r < 0 && r != -ESRCH && (op->t->image_changed || target_replaced(op)))
                return op_replaced(op);
        if (r == -ESRCH) {
                /* Nobody is left to wait for: stragglers of an earlier pass say nothing. */
                op->done = true;
                report_drop_stragglers(op->report);
                return op_fail(op, r, "process %d exited during the transition", op->t->pid);
        }
        if (r < 0)
                return op_fail(op, r, "transition failed: %s", op_stop_error(op, r, why, sizeof(why)));
        if (r == 1) {
                /* A reversal keeps the stragglers of the forward attempt for the report,
                 * a force (completed at a later step) those it switched. */
                if (!op->reversing && !op->tr.forced)
                        report_stragglers(op);
                return op_finished(op);
        }
        if (op_now_ns() >= op->deadline_ns) {
                r = op_timeout(op);
                if (r != 0)
                        return r;
        } else if (!op->reversing)
                report_stragglers(op);
        if (!op->tr.global)
                publish_stragglers(op, false);
        op_report_figures(op);
        moving = stragglers_moving(op);
        if (op->tr.switched > before || (moving && op_now_ns() - op->start_ns < OP_FAST_WINDOW_NS))
                op->backoff_ms = OP_FIRST_RETRY_MS;
        else if (moving)
                op->backoff_ms = OP_MOVING_RETRY_MS + op->tr.passes % 7;
        else if (op->backoff_ms < OP_BACKOFF_START_MS)
                op->backoff_ms = OP_BACKOFF_START_MS;
        else
                op->backoff_ms = MIN(op->backoff_ms * 2, (unsigned)OP_MAX_RETRY_MS);
        if (ret_next_ms)
                *ret_next_ms = op->backoff_ms;
        op->next_pass_ns = op_now_ns() + (uint64_t)op->backoff_ms * 1000000ULL;
        /* A thread still late must not sit in its stop long once it gets there: the
         * steps until the next pass only let it go. */
        if (ret_next_ms && target_collect_late(op->t) > 0)
                *ret_next_ms = MIN(*ret_next_ms, (unsigned)OP_LATE_POLL_MS);
        return 0;
}

void ulp_op_progress(const UlpOp *op, unsigned *ret_switched, unsigned *ret_total) {
        *ret_switched = op->tr.switched;
        *ret_total = op->tr.total;
}

bool ulp_op_worst_straggler(UlpOp *op, UlpStraggler *ret) {
        const PendingThread *w = NULL;

        for (size_t i = 0; i < op->tr.n_pending; i++)
                if (!w || op->tr.pending[i].fails > w->fails)
                        w = &op->tr.pending[i];
        if (!w || !op->t)
                return false;
        *ret = (UlpStraggler) { .tid = w->tid };
        target_thread_name(op->t, w->tid, ret->comm);
        snprintf(ret->function, sizeof(ret->function), "%s", w->blocker[0] ? w->blocker : "not checked yet");
        return true;
}

pid_t ulp_op_pid(const UlpOp *op) {
        return op->t ? op->t->pid : 0;
}

void ulp_op_free(UlpOp *op) {
        if (!op)
                return;
        /* A transition left to a later driver keeps no trap of ours on its stacks. */
        if (op->tr_ready && !op->done)
                (void)transition_disarm_traps(&op->tr);
        if (op->tr_ready)
                transition_done(&op->tr);
        if (op->prologue_free)
                op->prologue_free(op->prologue_data);
        if (op->u)
                unwcache_give(op->t->pid, op->u_keyed ? op->u_image : NULL, op->u);
        free_symtabs(op);
        modulelist_done(&op->mods);
        control_done(&op->c);
        target_free(op->t);
        free(op);
}

size_t ulp_release_late(void) {
        return target_collect_orphans();
}

bool ulp_late_holds(pid_t pid) {
        return target_orphans_of(pid);
}

int ulp_wait_timer_start(int signo) {
        return target_wait_timer_start(signo);
}

void ulp_wait_timer_stop(void) {
        target_wait_timer_stop();
}

void ulp_report_done(UlpReport *r) {
        for (size_t i = 0; i < r->n_warnings; i++)
                free(r->warnings[i]);
        free(r->warnings);
        free(r->stragglers);
        *r = (UlpReport) {};
}

static int run_to_end(UlpOp *op, int r) {
        unsigned next = 0;
        while (r == 0) {
                r = ulp_op_step(op, &next);
                if (r == 0)
                        sleep_ms(next);
        }
        return r < 0 ? r : 0;
}

int ulp_apply(pid_t pid, int patch_fd, const char *name_hint, const UlpOptions *o, UlpReport *report) {
        UlpOp *op = NULL;
        int r = ulp_op_apply(pid, patch_fd, name_hint, o, &op, report);
        if (r >= 0)
                r = run_to_end(op, r);
        ulp_op_free(op);
        return r;
}

int ulp_revert(pid_t pid, const char *name, const UlpOptions *o, UlpReport *report) {
        UlpOp *op = NULL;
        int r = ulp_op_revert(pid, name, o, &op, report);
        if (r >= 0)
                r = run_to_end(op, r);
        ulp_op_free(op);
        return r;
}
