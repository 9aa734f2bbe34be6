/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * ulpctl in two pieces (docs/performance.md). The executable parses the command line
 * and talks to ulpd; it links only json-c, the protocol code and libulp-carriers (the
 * processes carrying a control block, ulp_list_processes(): libc alone), so that a
 * command through ulpd never loads libelf, libdw or capstone. Whatever does the work here
 * (--direct, and info, which reads a patch file's metadata) is in ulpctl-direct.so,
 * loaded with dlopen() only then, found through the executable's run path (the build
 * directory, or $libdir/ulp once installed). Both sides share the helpers below and
 * check ULPCTL_DIRECT_ABI, so that a stale module is refused rather than misread.
 */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/protocol.h"
#include "ulp/libulp.h"

#define EXIT_USAGE 2
#define EXIT_TIMEDOUT 3

#define ULPCTL_MISSING_MAX 16

typedef struct Args {
        bool direct, all, json, force, global, no_wait, sticky, return_trap;
        bool prometheus;         /* status: the Prometheus text exposition */
        const char *missing[ULPCTL_MISSING_MAX]; /* status --missing PATCH.so, each */
        size_t n_missing;
        unsigned timeout_ms;
        unsigned callback_timeout_ms; /* --direct only: ulpd has its own (--callback-timeout) */
        pid_t pids[PROTOCOL_PIDS_MAX];
        size_t n_pids;
        const char *target;      /* PATCH.so, or NAME for revert */
} Args;

/* What status knows beyond the processes: ulpd's own counters (through ulpd only), and
 * the count of --missing. */
typedef struct StatusExtra {
        bool have_daemon;
        uint64_t transitions_total, transitions_failed, invariant_failures;
        /* --missing: each patch's name and how many processes lack it */
        const char *missing_patch[ULPCTL_MISSING_MAX];
        size_t missing[ULPCTL_MISSING_MAX];
        size_t n_missing;
        /* ulpd's patch directory as status reports it (docs/fleet.md), or NULL */
        json_object *patch_dir;
} StatusExtra;

/* Bumped whenever Args or the entry point change. */
#define ULPCTL_DIRECT_ABI 3
#define ULPCTL_DIRECT_MODULE "ulpctl-direct.so"
#define ULPCTL_DIRECT_ENTRY "ulpctl_direct_main"

/* The module's entry: runs verb ("apply", "revert", "status", "check", "info") for a,
 * returns the exit status. abi must be ULPCTL_DIRECT_ABI. */
typedef int (*UlpctlDirectMain)(unsigned abi, const Args *a, const char *verb);
int ulpctl_direct_main(unsigned abi, const Args *a, const char *verb);

/* Shared by both (ulpctl-common.c). */
int exit_code_for(int error);
const char *base_name(const char *path);
void print_report(pid_t pid, const char *verb, const UlpReport *r, int error);
/* The outcome of check for pid: into results (a JSON array) with --json, else as lines. */
void print_check(const Args *a, pid_t pid, const UlpReport *rep, int error, json_object *results);
/* --json's output for one or more processes: the one report itself, or
 * {"results":[...]} for any other count (docs/json.md). Takes results. */
void print_json_results(json_object *results);
void print_json(json_object *o);
int open_patch(const char *path, int *ret_fd);
bool looks_like_file(const char *s);
/* The progress line on a terminal (stderr), rewritten in place; nothing otherwise. */
void progress(pid_t pid, unsigned switched, unsigned total, const UlpStraggler *worst, void *userdata);
void progress_done(void);
UlpOptions options_of(const Args *a);
/* Status as the caller asked for it (--json, --prometheus, or lines): with -p, the one
 * process; else those that carry an applied patch, a transition or a refused block, or
 * every process with ulp state under --all. */
void print_status(const Args *a, const UlpProcessStatus *s, size_t n, const StatusExtra *x);
/* The Prometheus text exposition of n processes (ulpctl-prometheus.c). */
void print_prometheus(const UlpProcessStatus *s, size_t n, const StatusExtra *x);
