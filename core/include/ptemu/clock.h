/* The host's monotonic clock, for time bounds and measurements (never inside a
 * deterministic run's decisions). */
#ifndef PTEMU_CLOCK_H
#define PTEMU_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t ptemu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* In seconds. */
static inline double ptemu_now(void)
{
	return (double)ptemu_now_ns() * 1e-9;
}

#endif
