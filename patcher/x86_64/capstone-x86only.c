/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * With capstone linked statically (ULP_CAPSTONE_STATIC, meson.build), its dispatcher
 * (cs.o) names an init and an option function of every architecture it was built for,
 * and the linker would take each architecture's decoder out of the archive with them:
 * 75,000 relative relocations to apply at every load, 65,536 of them one table of the
 * M68K decoder (patcher/x86_64/insn.c). Defined here, in an object linked before the
 * archive is searched, they keep those decoders out: ulp decodes x86-64 only, and
 * cs_open() calls an architecture's init only for that architecture (never these).
 * The names are capstone 4's (meson.build checks that a program using them links);
 * an architecture a later capstone adds is linked in as before, which costs its
 * relocations and nothing else.
 */

#include <stddef.h>

#include <capstone/capstone.h>

#include "patcher/x86_64/insn.h"

/* Named by insn.c, so that the linker takes this object before it searches capstone's. */
const char insn_capstone_x86only[] = "x86-64";

/* Hidden: capstone's dispatcher, linked into the same object, binds to them; nothing
 * outside it sees them. */
#define OTHER_ARCH(a)                                                                        \
        __attribute__((visibility("hidden"))) int a##_global_init(void *ud);                 \
        __attribute__((visibility("hidden"))) int a##_option(void *handle, int type, size_t value); \
        int a##_global_init(void *ud) {                                                      \
                (void)ud;                                                                    \
                return CS_ERR_ARCH;                                                         \
        }                                                                                    \
        int a##_option(void *handle, int type, size_t value) {                               \
                (void)handle;                                                                \
                (void)type;                                                                  \
                (void)value;                                                                 \
                return CS_ERR_ARCH;                                                         \
        }

OTHER_ARCH(AArch64)
OTHER_ARCH(ARM)
OTHER_ARCH(EVM)
OTHER_ARCH(M680X)
OTHER_ARCH(M68K)
OTHER_ARCH(Mips)
OTHER_ARCH(PPC)
OTHER_ARCH(Sparc)
OTHER_ARCH(SystemZ)
OTHER_ARCH(TMS320C64x)
OTHER_ARCH(XCore)
