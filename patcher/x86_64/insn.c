/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Classification of decoded x86-64 instructions for the relocator (insn.h). */

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/macro.h"
#include "patcher/x86_64/insn.h"

/*
 * capstone's shared library carries 77,000 relative relocations, 65,536 of them one
 * table of its M68K decoder: loading it cost 5 ms (a sixth of the CPU of every ulpctl
 * --direct, docs/performance.md). Where the build found capstone's static archive
 * (ULP_CAPSTONE_STATIC, meson.build), the core links its x86 decoder alone
 * (capstone-x86only.c keeps the other architectures out): 2,000 relocations, paid where
 * the core is loaded. Else capstone is loaded by the first decoding, not by the dynamic
 * loader when a program using the core starts (a revert, a status or a list decodes
 * nothing): once per process, by its soname, from where the dynamic loader finds
 * libraries (never a path from the environment of a set-uid program: the loader
 * ignores LD_LIBRARY_PATH there), and kept.
 */
static struct {
        cs_err (*open)(cs_arch arch, cs_mode mode, csh *handle);
        cs_err (*option)(csh handle, cs_opt_type type, size_t value);
        cs_err (*close)(csh *handle);
        cs_insn *(*malloc)(csh handle);
        void (*free)(cs_insn *insn, size_t count);
        bool (*disasm_iter)(csh handle, const uint8_t **code, size_t *size, uint64_t *address, cs_insn *insn);
        int err;
        char why[200];
} cs;

#ifdef ULP_CAPSTONE_STATIC
static void cs_load(void) {
        /* (names capstone-x86only.c: see there) */
        if (!insn_capstone_x86only[0])
                cs.err = -ELIBBAD;
        cs.open = cs_open;
        cs.option = cs_option;
        cs.close = cs_close;
        cs.malloc = cs_malloc;
        cs.free = cs_free;
        cs.disasm_iter = cs_disasm_iter;
}
#else
static void cs_load(void) {
        void *h = dlopen(ULP_CAPSTONE_SONAME, RTLD_NOW | RTLD_LOCAL);
        const char *e;

        if (!h) {
                e = dlerror();
                snprintf(cs.why, sizeof(cs.why), "%s", e ? e : ULP_CAPSTONE_SONAME);
                cs.err = -ELIBACC;
                return;
        }
        /* dlsym() returns an object pointer; POSIX makes it convertible to a function's. */
        *(void **)&cs.open = dlsym(h, "cs_open");
        *(void **)&cs.option = dlsym(h, "cs_option");
        *(void **)&cs.close = dlsym(h, "cs_close");
        *(void **)&cs.malloc = dlsym(h, "cs_malloc");
        *(void **)&cs.free = dlsym(h, "cs_free");
        *(void **)&cs.disasm_iter = dlsym(h, "cs_disasm_iter");
        if (!cs.open || !cs.option || !cs.close || !cs.malloc || !cs.free || !cs.disasm_iter) {
                snprintf(cs.why, sizeof(cs.why), "%s lacks a function ulp uses", ULP_CAPSTONE_SONAME);
                cs.err = -ELIBBAD;
        }
}
#endif

const char *insn_load_error(void) {
        return cs.why;
}

static pthread_once_t cs_once = PTHREAD_ONCE_INIT;

#ifdef ULP_CAPSTONE_STATIC
void insn_preload(void) {
        /* linked in: nothing to load */
}
#else
static atomic_bool cs_preloading;

static void *preload_thread(void *unused) {
        (void)unused;
        (void)pthread_once(&cs_once, cs_load);
        return NULL;
}

void insn_preload(void) {
        pthread_attr_t attr;
        pthread_t th;

        /* once per process: after that, loaded or being loaded */
        if (atomic_exchange(&cs_preloading, true))
                return;
        if (pthread_attr_init(&attr) != 0)
                return;
        (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* No thread: the first decoding loads it, as before. */
        (void)pthread_create(&th, &attr, preload_thread, NULL);
        (void)pthread_attr_destroy(&attr);
}
#endif

int insn_open(csh *ret) {
        csh h;

        /* a load in progress on the preloading thread is waited for here */
        (void)pthread_once(&cs_once, cs_load);
        if (cs.err < 0)
                return cs.err;
        if (cs.open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
                return -ENOMEM;
        if (cs.option(h, CS_OPT_DETAIL, CS_OPT_ON) != CS_ERR_OK) {
                cs.close(&h);
                return -EIO;
        }
        *ret = h;
        return 0;
}

void insn_closep(csh *h) {
        if (*h)
                cs.close(h);
}

cs_insn *insn_malloc(csh h) {
        return cs.malloc(h);
}

void insn_freep(cs_insn **insn) {
        if (*insn)
                cs.free(*insn, 1);
}

bool insn_decode(csh h, const uint8_t **code, size_t *size, uint64_t *address, cs_insn *insn) {
        return cs.disasm_iter(h, code, size, address, insn);
}

bool insn_is_endbr64(const uint8_t *code, uint64_t size) {
        static const uint8_t endbr64[] = { 0xf3, 0x0f, 0x1e, 0xfa };

        return size >= sizeof(endbr64) && memcmp(code, endbr64, sizeof(endbr64)) == 0;
}

static int32_t read_i32(const uint8_t *p) {
        int32_t v;

        memcpy(&v, p, sizeof(v));
        return v;
}

/* Skips legacy prefixes and REX; notes the ones that matter to branches. Returns the
 * offset of the first opcode byte, or size when there is none. */
static size_t skip_prefixes(const uint8_t *b, size_t size, bool *opsize, bool *notrack) {
        size_t i = 0;

        for (; i < size; i++) {
                if (b[i] == 0x66)
                        *opsize = true;
                else if (b[i] == 0x3e)
                        *notrack = true;
                else if (!memchr((const uint8_t[]) { 0x26, 0x2e, 0x36, 0x64, 0x65, 0x67,
                                                     0xf0, 0xf2, 0xf3 }, b[i], 9))
                        break;
        }
        if (i < size && (b[i] & 0xf0) == 0x40)
                i++;
        return i;
}

/* Direct relative branches, recognised by opcode: kind, condition and the length the
 * encoding must have (opcode and displacement). Returns false for anything else. */
static bool classify_relative(const uint8_t *op, size_t left, InsnInfo *info, size_t *len) {
        if (op[0] >= 0x70 && op[0] <= 0x7f) {
                *info = (InsnInfo) { .kind = INSN_JCC_REL, .cc = op[0] & 0xf };
                *len = 2;
        } else if (left >= 2 && op[0] == 0x0f && op[1] >= 0x80 && op[1] <= 0x8f) {
                *info = (InsnInfo) { .kind = INSN_JCC_REL, .cc = op[1] & 0xf };
                *len = 6;
        } else if (op[0] == 0xeb || op[0] == 0xe9) {
                *info = (InsnInfo) { .kind = INSN_JMP_REL };
                *len = op[0] == 0xeb ? 2 : 5;
        } else if (op[0] == 0xe8) {
                *info = (InsnInfo) { .kind = INSN_CALL_REL };
                *len = 5;
        } else if (op[0] >= 0xe0 && op[0] <= 0xe3) {
                *info = (InsnInfo) { .kind = INSN_LOOP_REL };
                *len = 2;
        } else
                return false;
        return true;
}

/*
 * Where the disp32 of a [rip + disp32] operand is. Capstone 4's encoding.disp_offset is
 * wrong for some instructions with a mandatory prefix (66 0f 57 xorpd, ...), so it is
 * only a hint: the disp32 is the 4 bytes right after a ModRM byte of the form mod=00
 * rm=101, equal to the operand's displacement, and followed only by the immediate.
 * Returns the offset, or 0 when the bytes do not show exactly one such place.
 */
static size_t find_rip_disp(const cs_insn *insn, int32_t disp) {
        const cs_x86_encoding *enc = &insn->detail->x86.encoding;
        size_t found = 0, n = 0;

        for (size_t k = 1; k + 4 <= insn->size; k++) {
                if ((insn->bytes[k - 1] & 0xc7) != 0x05 || read_i32(insn->bytes + k) != disp)
                        continue;
                if (k + 4 + enc->imm_size == insn->size)
                        return k;        /* where the encoding says: that one */
                found = k;
                n++;
        }
        return n == 1 ? found : 0;
}

/* Finds a [rip + disp32] operand and its displacement's place in the bytes, and checks
 * that no RIP-relative ModRM escaped capstone's operand list. */
static int classify_rip(const cs_insn *insn, InsnInfo *info) {
        const cs_x86 *x = &insn->detail->x86;

        for (unsigned i = 0; i < x->op_count; i++) {
                const cs_x86_op *o = &x->operands[i];
                size_t off;

                if (o->type != X86_OP_MEM || o->mem.base != X86_REG_RIP)
                        continue;
                if (o->mem.disp < INT32_MIN || o->mem.disp > INT32_MAX)
                        return -ENOTSUP;
                off = find_rip_disp(insn, (int32_t)o->mem.disp);
                if (off == 0)
                        return -ENOTSUP;
                info->rip_relative = true;
                info->disp_offset = (uint8_t)off;
                info->rip_target = insn->address + insn->size + o->mem.disp;
                info->rip_no_index = o->mem.index == X86_REG_INVALID;
                return 0;
        }
        /* mod=00 rm=101 is [rip + disp32] in 64-bit mode whatever the opcode. */
        if (x->encoding.modrm_offset != 0 && x->encoding.modrm_offset < insn->size &&
            (insn->bytes[x->encoding.modrm_offset] & 0xc7) == 0x05)
                return -ENOTSUP;
        return 0;
}

static bool has_group(const cs_insn *insn, uint8_t group) {
        for (unsigned i = 0; i < insn->detail->groups_count; i++)
                if (insn->detail->groups[i] == group)
                        return true;
        return false;
}

/* See insn.h. Relative targets are computed from the bytes, not taken from capstone,
 * and must agree with capstone's immediate operand. */
int insn_classify(const cs_insn *insn, InsnInfo *ret) {
        const uint8_t *b = insn->bytes;
        bool opsize = false, notrack = false;
        InsnInfo info = { .kind = INSN_PLAIN };
        size_t i, len;
        int r;

        i = skip_prefixes(b, insn->size, &opsize, &notrack);
        if (i >= insn->size)
                return -ENOTSUP;

        if (classify_relative(b + i, insn->size - i, &info, &len)) {
                int64_t rel = len == 2 ? (int8_t)b[insn->size - 1] : read_i32(b + insn->size - 4);
                const cs_x86 *x = &insn->detail->x86;

                if (i + len != insn->size || x->op_count < 1 || x->operands[0].type != X86_OP_IMM)
                        return -ENOTSUP;
                info.has_target = true;
                info.target = insn->address + insn->size + rel;
                if ((uint64_t)x->operands[0].imm != info.target)
                        return -ENOTSUP;
                if (opsize) /* truncates RIP to 16 bits: never in real code */
                        info.kind = INSN_UNSUPPORTED;
        } else if (b[i] == 0xff && i + 1 < insn->size && ((b[i + 1] >> 3) & 7) == 2)
                info.kind = INSN_CALL_INDIRECT;
        else if (b[i] == 0xff && i + 1 < insn->size && ((b[i + 1] >> 3) & 7) == 4)
                info.kind = INSN_JMP_INDIRECT;
        else if (b[i] == 0xc3 || b[i] == 0xc2)
                info.kind = INSN_RET;
        else if (has_group(insn, CS_GRP_JUMP) || has_group(insn, CS_GRP_CALL) ||
                 has_group(insn, CS_GRP_RET) || has_group(insn, CS_GRP_IRET) ||
                 has_group(insn, CS_GRP_BRANCH_RELATIVE) || insn->id == X86_INS_XBEGIN) {
                const cs_x86 *x = &insn->detail->x86;

                info.kind = INSN_UNSUPPORTED;
                if (x->op_count >= 1 && x->operands[0].type == X86_OP_IMM) {
                        info.has_target = true;
                        info.target = x->operands[0].imm;
                }
        }
        info.opcode_off = i;
        info.notrack = notrack;

        r = classify_rip(insn, &info);
        if (r < 0)
                return r;
        *ret = info;
        return 0;
}
