/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* A shared object without ulp metadata. */

int not_a_patch(int x);

int not_a_patch(int x) {
        return x + 1;
}
