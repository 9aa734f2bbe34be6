/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Processes in a vfork (vfork.c): the parent's thread that waits for its child, and the
 * child that runs on its parent's memory until its exec or exit.
 */

#include <stdbool.h>
#include <sys/types.h>

/* Thread tid of pid waits in vfork(), or in clone() or clone3() with CLONE_VFORK
 * (posix_spawn), for its child. */
bool vfork_waits(pid_t pid, pid_t tid);

/* The process whose memory pid runs on: its parent, when pid is a vfork child that has
 * not called exec or exited yet (or shares its address space with its parent some other
 * way, clone(CLONE_VM) without CLONE_THREAD); 0 when pid has an address space of its
 * own or cannot be looked at. */
pid_t vfork_parent_of(pid_t pid);
