/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A small valid control block, as a patched process would carry it: one patch of one
 * function, one area with its stub and relocated entry. Shared by the unit test and the
 * fuzz target's corpus writer. */

#include <string.h>

#include "patcher/control.h"

#define SAMPLE_SELF 0x7f0000000000ULL
#define SAMPLE_AREA 0x7f0000100000ULL
#define SAMPLE_MAP 0x7f0000200000ULL

static inline void control_sample(ControlImage *img) {
        ControlPatch *p = &img->patches[0];
        ControlFunc *f = &img->funcs[0];

        memset(img, 0, sizeof(*img));
        memcpy(img->hdr.magic, CONTROL_MAGIC, 8);
        img->hdr.version = CONTROL_VERSION;
        img->hdr.image_size = sizeof(ControlImage);
        img->hdr.self = SAMPLE_SELF;
        img->hdr.owner_pid = 1234;
        img->hdr.generation = 8;
        img->hdr.target_state = THREAD_PATCHED;
        img->hdr.transition_patch = -1;
        img->hdr.n_patches = 1;
        img->hdr.n_funcs = 1;
        img->hdr.n_areas = 1;
        img->hdr.trap_addr = SAMPLE_AREA;
        img->areas[0] = (ControlArea) { .addr = SAMPLE_AREA, .size = CONTROL_AREA_SIZE, .used = 4096 };
        strcpy(p->name, "fix-compute");
        strcpy(p->file, "fix-compute.so");
        p->state = CP_PATCHED;
        p->first_func = 0;
        p->n_funcs = 1;
        p->seq = 1;
        p->map_start = SAMPLE_MAP;
        p->map_size = 0x10000;
        p->bias = SAMPLE_MAP;
        p->callbacks[CP_CB_POST_PATCH] = SAMPLE_MAP + 0x1100;
        f->patch = 0;
        f->old_addr = 0x401000;
        f->old_size = 64;
        f->new_addr = SAMPLE_MAP + 0x1000;
        f->new_size = 32;
        f->prev_addr = SAMPLE_AREA + 0x100;
        f->stub_addr = SAMPLE_AREA + 0x10;
        f->copy_addr = SAMPLE_AREA + 0x100;
        f->entry_off = 4;
        f->displaced_len = 5;
        strcpy(f->symbol, "compute");
}
