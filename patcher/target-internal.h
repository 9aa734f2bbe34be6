/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the files of the ptrace layer (target.c, target-stop.c, target-late.c);
 * not for other callers. The ones x86_64/remote.c uses too are at the end of target.h.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "patcher/target.h"

/* The state letter in /proc/PID/task/TID/stat, 0 when unreadable. */
char target__thread_state(pid_t pid, pid_t tid);
/* The parse of target_task_stat(): buf is the text of a stat file, NUL-terminated.
 * -EBADMSG when it is not one. */
int target__parse_task_stat(const char *buf, TaskStat *ret);
/* What target_look_threads() reads of a status text (NUL-terminated): the state letter
 * (0 none), the tracer (0 none) and the blocked signals (bit sig - 1; 0 none). */
void target__parse_look_status(const char *buf, char *ret_state, pid_t *ret_tracer, uint64_t *ret_blocked);
/* The thread tracing it (TracerPid in /proc/PID/task/TID/status), 0 none or unreadable. */
pid_t target__thread_tracer(pid_t pid, pid_t tid);
/* A stop request unanswered so long is slow: past a scheduler's usual delays. */
#define SLOW_STOP_NS (100ULL * 1000000ULL)
/* A stop request of th still unanswered SLOW_STOP_NS after it was made: its CPU time
 * is noted then, for the operator's sentence if it never stops (target_describe_late). */
void target__note_slow(Target *t, Thread *th, uint64_t now_ns);
/* The thread's CPU time in ns (/proc/PID/task/TID/schedstat), UINT64_MAX unknown. */
uint64_t target__thread_cpu_ns(pid_t pid, pid_t tid);
/* The kernel's count of the process's threads (Threads: in /proc/PID/status), -1
 * unreadable. */
int target__nr_threads(pid_t pid);
/* One thread's stop ends now (asked at requested_ns, stopped at stopped_ns; borrowed: for
 * remote steps): the longest so far and the stop hook (target_set_stop_hook()). */
void target__note_thread_stop(Target *t, pid_t tid, uint64_t requested_ns, uint64_t stopped_ns, bool borrowed);

/*
 * waitpid(tid, status, __WALL | flags) for one of t's tracees, except that a thread
 * reported in a signal-delivery-stop for the SIGTRAP of an int3 of ours (one of
 * t->trap_at, or any int3 still in place) is first put back on that int3: its PC one
 * byte back, before the wait takes the report (a taken report is a signal the kernel
 * forgets: a tracer that dies before resuming the thread would leave it running one
 * byte past the int3, inside an instruction). *ret_undone (may be NULL) then says so:
 * the thread is resumed with no signal and runs into the int3 again, which by then
 * holds whatever the entry holds. docs/stops.md, "A trap is never held".
 */
pid_t target__waitpid(Target *t, pid_t tid, int *status, int flags, bool *ret_undone);
/* A non-blocking waitpid on one seized thread (target__waitpid): 1 with *ret_status when
 * it reported, 0 when it has nothing to report, -ESRCH (marked gone) when it exited. */
int target__thread_poll(Target *t, Thread *th, int *ret_status);
/* Records a ptrace-stop waitpid reported for th; reads its registers. */
int target__record_stop(Target *t, Thread *th, int status);
/* Detaches a stopped thread, delivering its kept signal; -EBUSY when it is not stopped
 * (late: it stays seized). */
int target__detach(Target *t, Thread *th);
/* Detaches everything, collecting for up to timeout_ms the threads still seized. True
 * when none is left. */
bool target__release_all(Target *t, int timeout_ms);

/* Every thread of v (or of t, v NULL) still waited for and not stopped: late. */
void target__mark_late(Target *t, Thread **v, size_t n);
/* Orphans, per calling thread (target-late.c): a seized thread of a freed Target left
 * to collect, and taking one back (true) when a new Target seizes it. */
void target__orphan_add(pid_t pid, pid_t tid);
bool target__orphan_take(pid_t pid, pid_t tid);
