/* The out-of-line part of the guest library: mem* (clang may call them), the formatter. */
#include "guest.h"

void *memset(void *dst, int c, size_t n)
{
	unsigned char *d = dst;

	while (n--)
		*d++ = (unsigned char)c;
	return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else {
		while (n) {
			n--;
			d[n] = s[n];
		}
	}
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x < *y ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

void fmt_init(struct fmt *f)
{
	f->n = 0;
}

void fmt_char(struct fmt *f, char c)
{
	if (f->n < FMT_CAP)
		f->b[f->n++] = c;
}

void fmt_str(struct fmt *f, const char *s)
{
	while (*s && f->n < FMT_CAP)
		f->b[f->n++] = *s++;
}

void fmt_u64(struct fmt *f, u64 v)
{
	volatile char t[20];
	int i = 0;

	do {
		t[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i && f->n < FMT_CAP)
		f->b[f->n++] = t[--i];
}

void fmt_i64(struct fmt *f, i64 v)
{
	u64 m = (u64)v;

	if (v < 0) {
		if (f->n < FMT_CAP)
			f->b[f->n++] = '-';
		m = 0 - m;
	}
	/* fmt_u64 inlined by hand: a call here would cost a sparc64 window. */
	{
		volatile char t[20];
		int i = 0;

		do {
			t[i++] = (char)('0' + m % 10);
			m /= 10;
		} while (m);
		while (i && f->n < FMT_CAP)
			f->b[f->n++] = t[--i];
	}
}

void fmt_hex(struct fmt *f, u64 v)
{
	int shift = 60;

	if (f->n + 2 <= FMT_CAP) {
		f->b[f->n++] = '0';
		f->b[f->n++] = 'x';
	}
	while (shift > 0 && ((v >> shift) & 0xf) == 0)
		shift -= 4;
	for (; shift >= 0 && f->n < FMT_CAP; shift -= 4)
		f->b[f->n++] = "0123456789abcdef"[(v >> shift) & 0xf];
}

long fmt_flush(struct fmt *f)
{
	long r = 0;

	if (f->n)
		r = sys_write((const char *)f->b, f->n);
	f->n = 0;
	return r;
}

void die(const char *what, long err)
{
	struct fmt f;

	fmt_init(&f);
	fmt_str(&f, "ptemu guest: fatal: ");
	fmt_str(&f, what);
	fmt_str(&f, " (");
	fmt_i64(&f, err);
	fmt_str(&f, ")\n");
	fmt_flush(&f);
	sys_exit_group(2);
	for (;;)
		sys_exit(2);
}
