/* Division cores for the EABI helpers in crt0.S (shift-subtract: no divide instruction
 * needed), and the EABI memory helpers clang may call on arm. */
#include "../../lib/guest.h"

unsigned long long ptemu_udivmod64(unsigned long long n, unsigned long long d,
				   unsigned long long *rem);
long long ptemu_sdivmod64(long long n, long long d, long long *rem);
unsigned ptemu_udivmod32(unsigned n, unsigned d, unsigned *rem);
int ptemu_sdivmod32(int n, int d, int *rem);

unsigned long long ptemu_udivmod64(unsigned long long n, unsigned long long d,
				   unsigned long long *rem)
{
	unsigned long long q = 0, r = 0;

	if (d == 0) {		/* Linux's helpers raise SIGFPE; the guest must never do this */
		*rem = n;
		return ~0ull;
	}
	if ((n >> 32) == 0 && (d >> 32) == 0) {
		unsigned r32;
		unsigned q32 = ptemu_udivmod32((unsigned)n, (unsigned)d, &r32);

		*rem = r32;
		return q32;
	}
	for (int i = 63; i >= 0; i--) {
		r = (r << 1) | ((n >> i) & 1);
		if (r >= d) {
			r -= d;
			q |= 1ull << i;
		}
	}
	*rem = r;
	return q;
}

long long ptemu_sdivmod64(long long n, long long d, long long *rem)
{
	unsigned long long un = n < 0 ? 0 - (unsigned long long)n : (unsigned long long)n;
	unsigned long long ud = d < 0 ? 0 - (unsigned long long)d : (unsigned long long)d;
	unsigned long long ur, uq = ptemu_udivmod64(un, ud, &ur);

	*rem = n < 0 ? -(long long)ur : (long long)ur;
	return (n < 0) != (d < 0) ? -(long long)uq : (long long)uq;
}

unsigned ptemu_udivmod32(unsigned n, unsigned d, unsigned *rem)
{
	unsigned q = 0, r = 0;

	if (d == 0) {
		*rem = n;
		return ~0u;
	}
	for (int i = 31; i >= 0; i--) {
		r = (r << 1) | ((n >> i) & 1);
		if (r >= d) {
			r -= d;
			q |= 1u << i;
		}
	}
	*rem = r;
	return q;
}

int ptemu_sdivmod32(int n, int d, int *rem)
{
	unsigned un = n < 0 ? 0 - (unsigned)n : (unsigned)n;
	unsigned ud = d < 0 ? 0 - (unsigned)d : (unsigned)d;
	unsigned ur, uq = ptemu_udivmod32(un, ud, &ur);

	*rem = n < 0 ? -(int)ur : (int)ur;
	return (n < 0) != (d < 0) ? -(int)uq : (int)uq;
}

/* EABI memory helpers (note __aeabi_memset's argument order: dest, n, c). */
void __aeabi_memcpy(void *d, const void *s, size_t n);
void __aeabi_memcpy4(void *d, const void *s, size_t n);
void __aeabi_memcpy8(void *d, const void *s, size_t n);
void __aeabi_memmove(void *d, const void *s, size_t n);
void __aeabi_memmove4(void *d, const void *s, size_t n);
void __aeabi_memmove8(void *d, const void *s, size_t n);
void __aeabi_memset(void *d, size_t n, int c);
void __aeabi_memset4(void *d, size_t n, int c);
void __aeabi_memset8(void *d, size_t n, int c);
void __aeabi_memclr(void *d, size_t n);
void __aeabi_memclr4(void *d, size_t n);
void __aeabi_memclr8(void *d, size_t n);

void __aeabi_memcpy(void *d, const void *s, size_t n) { memcpy(d, s, n); }
void __aeabi_memcpy4(void *d, const void *s, size_t n) { memcpy(d, s, n); }
void __aeabi_memcpy8(void *d, const void *s, size_t n) { memcpy(d, s, n); }
void __aeabi_memmove(void *d, const void *s, size_t n) { memmove(d, s, n); }
void __aeabi_memmove4(void *d, const void *s, size_t n) { memmove(d, s, n); }
void __aeabi_memmove8(void *d, const void *s, size_t n) { memmove(d, s, n); }
void __aeabi_memset(void *d, size_t n, int c) { memset(d, c, n); }
void __aeabi_memset4(void *d, size_t n, int c) { memset(d, c, n); }
void __aeabi_memset8(void *d, size_t n, int c) { memset(d, c, n); }
void __aeabi_memclr(void *d, size_t n) { memset(d, 0, n); }
void __aeabi_memclr4(void *d, size_t n) { memset(d, 0, n); }
void __aeabi_memclr8(void *d, size_t n) { memset(d, 0, n); }
