/* The deterministic scheduler's baton pass alone, for `ptemu bench determinism`: scheduled
 * threads that do nothing but yield to each other. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>

#include <ptemu/arch.h>
#include <ptemu/bench.h>
#include <ptemu/clock.h>
#include <ptemu/machine.h>
#include <ptemu/sched.h>
#include <ptemu/sync.h>

struct yielder {
	struct ptemu_machine *m;
	uint64_t yields;
};

static void *yielder_main(void *arg)
{
	struct yielder *y = arg;

	ptemu_thread_register(y->m, "yielder");
	for (uint64_t i = 0; i < y->yields; i++)
		ptemu_sched_yield();
	ptemu_thread_unregister();
	return NULL;
}

static double process_cpu_seconds(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec +
	       (double)u.ru_stime.tv_usec / 1e6;
}

int ptemu_bench_baton(const struct ptemu_arch *arch, unsigned threads, uint64_t yields,
		      struct ptemu_bench_baton_result *res)
{
	struct ptemu_machine_config mc = { .arch = arch, .phys_bytes = 16 * ptemu_pmd_size(arch) };
	struct ptemu_sched_config sc = { .seed = 1, .strategy = PTEMU_SCHED_RANDOM,
					 .max_steps = 2 * threads * yields };
	struct yielder y;
	pthread_t tid[PTEMU_BENCH_BATON_MAX_THREADS];
	unsigned started = 0;
	struct ptemu_machine *m;
	double cpu, wall;

	*res = (struct ptemu_bench_baton_result){ 0 };
	if (threads < 2 || threads > PTEMU_BENCH_BATON_MAX_THREADS) {
		snprintf(res->error, sizeof(res->error), "2 to %d threads", PTEMU_BENCH_BATON_MAX_THREADS);
		return -1;
	}
	if (!(m = ptemu_machine_create(&mc, res->error, sizeof(res->error))))
		return -1;
	if (ptemu_sched_create(m, &sc)) {
		snprintf(res->error, sizeof(res->error), "cannot start the scheduler");
		ptemu_machine_destroy(m);
		return -1;
	}
	y = (struct yielder){ m, yields };
	for (; started < threads; started++) {
		if (pthread_create(&tid[started], NULL, yielder_main, &y))
			break;
		ptemu_sched_wait_threads(m, 2 + started);	/* the RCU thread too */
	}
	cpu = process_cpu_seconds();
	wall = ptemu_now();
	ptemu_sched_start(m);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	res->cpu_seconds = process_cpu_seconds() - cpu;
	res->elapsed = ptemu_now() - wall;
	ptemu_sched_destroy(m, NULL, &res->steps);
	ptemu_machine_destroy(m);
	if (started < threads) {
		snprintf(res->error, sizeof(res->error), "cannot start thread %u", started + 1);
		return -1;
	}
	res->passes = (uint64_t)threads * yields;
	return 0;
}
