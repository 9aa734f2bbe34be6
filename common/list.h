/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Intrusive doubly linked lists: an element type with "next" and "prev" pointers, and
 * a head pointer that is NULL when the list is empty. */

#define LIST_PREPEND(head, x) do {                      \
                (x)->prev = NULL;                       \
                (x)->next = (head);                     \
                if (head)                               \
                        (head)->prev = (x);             \
                (head) = (x);                           \
        } while (0)

#define LIST_REMOVE(head, x) do {                       \
                if ((x)->prev)                          \
                        (x)->prev->next = (x)->next;    \
                else                                    \
                        (head) = (x)->next;             \
                if ((x)->next)                          \
                        (x)->next->prev = (x)->prev;    \
                (x)->next = (x)->prev = NULL;           \
        } while (0)

/* For each element i of the list at head; i may not be removed meanwhile. */
#define LIST_FOREACH(i, head) for (__typeof__(head) i = (head); i; i = i->next)
