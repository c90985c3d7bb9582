/* Host access to guest memory, as copy_from_user/copy_to_user: faults pages in. */
#ifndef PTEMU_UACCESS_H
#define PTEMU_UACCESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mm_struct;

/* 0, or -EFAULT when part of the range is not mapped with the needed permission. */
int copy_from_user(struct mm_struct *mm, void *dst, uint64_t src, size_t len);
int copy_to_user(struct mm_struct *mm, uint64_t dst, const void *src, size_t len);

#ifdef __cplusplus
}
#endif
#endif
