/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: bytes as a control block read from a target, through control_validate()
 * and, for a block that passes, what reads a validated block: the status conversion and
 * the function stacks. The input is the block without its thread table (the header page,
 * then everything from the areas on; the rest zero), so that a few kilobytes reach the
 * patch and function records; dump-control-block.py writes a real block in this form.
 * The block claims its own address, so that the fuzzer gets past that check.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "patcher/op.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static ControlImage *img;
        UlpProcessStatus s = {};
        Control c;
        char why[160];

        if (!img && !(img = malloc(sizeof(*img))))
                return 0;
        memset(img, 0, sizeof(*img));
        memcpy(&img->hdr, data, MIN(size, sizeof(img->hdr)));
        if (size > sizeof(img->hdr))
                memcpy(img->areas, data + sizeof(img->hdr),
                       MIN(size - sizeof(img->hdr), sizeof(*img) - CONTROL_OFF(areas)));
        if (control_validate(img, img->hdr.self, why, sizeof(why)) < 0)
                return 0;
        if (control_validate_stragglers(&img->stragglers, why, sizeof(why)) < 0)
                img->stragglers.n = 0;
        if (op_status_convert(img, &s) >= 0)
                ulp_status_done(&s);
        c = (Control) { .addr = img->hdr.self, .img = img };
        for (unsigned i = 0; i < img->hdr.n_funcs; i++) {
                (void)control_top_func(&c, img->funcs[i].old_addr, -1);
                (void)control_any_func(&c, img->funcs[i].old_addr);
        }
        for (unsigned i = 0; i < img->hdr.n_patches; i++)
                (void)control_find_patch(&c, img->patches[i].name);
        return 0;
}
