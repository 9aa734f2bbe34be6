/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* C++ names: demangling (docs/symbols.md) and the spelling-insensitive comparison of
 * demangled names. */

#include <stdbool.h>
#include <stddef.h>

/* Whether name reads as a demangled C++ name ("ns::f(int) const") rather than a
 * symbol: it has "::", a parenthesis, a template bracket or a space. */
bool demangle_looks_demangled(const char *name);

/* The demangled form of a mangled C++ symbol ("_Z..."), normalized as demangle_normalize()
 * does, into buf. -EINVAL not a mangled name, -ENOTSUP no demangler available,
 * -ENOBUFS too long. */
int demangle(const char *sym, char *buf, size_t len);

/* Copies name into buf without the spaces that do not separate two words: "f(int)const"
 * for "f(int) const", "unsigned long" kept. -ENOBUFS when it does not fit. */
int demangle_normalize(const char *name, char *buf, size_t len);
