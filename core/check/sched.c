/* The deterministic scheduler: a baton passed between ptemu threads (DESIGN.md section 7);
 * baton.c moves it. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/machine.h>
#include <ptemu/rcu.h>
#include <ptemu/sched.h>
#include <ptemu/sync.h>

#include "internal.h"
#include "baton.h"

#define SCHED_MAX_CHANGE_POINTS 16
/* Random walk: the chance of a switch at a scheduling point is 1 in this; guest blocks,
 * which come every few instructions, switch more rarely. */
#define SCHED_SWITCH_ODDS 8
#define SCHED_BLOCK_SWITCH_ODDS 128
/* Window points (ptemu_sched_point_window): a random walk switches 1 in this there, and
 * PCT preempts 1 in SCHED_WINDOW_ODDS_PCT on top of its change points; 1 in
 * SCHED_LONG_WINDOW_ODDS_PCT (that is, always) at the start of a long window, at a wide
 * window and at a window point on a table that another thread's long window is about to
 * change. Always, because these points are few (a dozen to a hundred per run) and each
 * race needs one of them taken (issue 15's closing note has the catch rates). */
#define SCHED_WINDOW_SWITCH_ODDS 2
#define SCHED_WINDOW_ODDS_PCT 64
#define SCHED_LONG_WINDOW_ODDS_PCT 1
/* PCT hands the baton to a random runnable thread at 1 in this many points, priorities
 * unchanged: races whose window needs another thread's whole operation inside it (a
 * reclaim between a map's pmd read and its lock) need many small preemptions, which PCT's
 * few change points almost never give (no-pmd-recheck: 30% of seeds without, all with). */
#define SCHED_PCT_NOISE_ODDS 512
/* Added to a wide window's sunk_seq: after any other sunk thread, however many sinks. */
#define SCHED_SUNK_WIDE_LATER (UINT64_C(1) << 62)

struct sthread {
	struct ptemu_thread *t;
	struct baton_ctx ctx;
	/* Waits for the baton, suspended: whoever gives it the baton resumes it (mu). */
	bool parked;
	bool live;
	const void *blocked_on;
	const char *blocked_what;
	uint64_t wake_step;		/* asleep until the step count reaches it */
	uint64_t prio;
	/* In a spin-wait (its last scheduling point was a yield): PCT passes over it while
	 * anyone else can run, or two spinners waiting for a third would only ever hand the
	 * baton to each other. */
	bool spinning;
	/* Preempted at a window point: below everyone until it next runs, then back. Among
	 * the sunk, the one preempted first runs first: a thread preempted inside another's
	 * window stays there while the first goes on through it. */
	bool sunk;
	uint64_t sunk_prio;
	uint64_t sunk_seq;
	/* Sunk at a wide window: it waits for someone to change its table, so its long
	 * window, if any, no longer preempts the others' points on that table. */
	bool sunk_wide;
	bool in_long_window;	/* between ptemu_sched_long_window_begin and _end */
	uint64_t lw_tables[PTEMU_SCHED_LONG_WINDOW_TABLES];	/* what that window changes */
	unsigned lw_ntables;
};

/* A thread that was inside an RCU section when a callback was queued, and that section. */
struct rcu_reader {
	int id;
	uint64_t section;
};

struct pending_rcu {
	struct ptemu_rcu_head *head;
	struct rcu_reader *readers;	/* NULL when nobody was inside a section */
	unsigned nreaders;
};

struct ptemu_sched {
	struct ptemu_machine *m;
	struct ptemu_sched_config cfg;
	pthread_mutex_t mu;
	pthread_cond_t registered;
	int current;			/* thread holding the baton, -1: nobody yet */
	struct sthread th[PTEMU_SCHED_MAX_THREADS];
	int n;
	uint64_t rng;
	uint64_t steps;
	/* Bumped at every change of what PCT's choice by priority depends on: a thread's
	 * life, block, sleep, spin, priority or sinking. */
	uint64_t gen;
	/* The thread PCT last chose by priority among all runnable ones: the choice stands
	 * while gen is unchanged and steps are below `until` (the next change point or
	 * wake-up), so a plain point of that thread needs no pick, only its noise roll. */
	struct {
		int who;
		uint64_t gen, until;
	} leader;
	uint64_t sinks;			/* window preemptions so far (sunk_seq) */
	unsigned long_windows;		/* threads inside a long window */
	uint64_t change[SCHED_MAX_CHANGE_POINTS];
	unsigned nchange;
	uint64_t digest;
	size_t forced_next;		/* replay: the next recorded decision */
	uint64_t final_steps;		/* steps when the last thread but RCU left, 0 before */
	bool deadlocked;
	bool started;			/* no baton is handed out before ptemu_sched_start */
	/* Deterministic RCU: callbacks wait in order and run in the scheduler's RCU thread. */
	struct pending_rcu *pending;
	size_t npending, cap_pending;
	pthread_t rcu_thread;
	bool stopping;
	int rcu_token;
};

static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1Dull;
}

static struct ptemu_sched *sched_of_current(int *id)
{
	struct ptemu_thread *t = ptemu_current();

	if (!t || !t->machine->sched || t->sched_id < 0)
		return NULL;
	*id = t->sched_id;
	return t->machine->sched;
}

static void fold_locked(struct ptemu_sched *s, uint64_t kind, uint64_t a, uint64_t b)
{
	uint64_t h = s->digest ^ 0xcbf29ce484222325ull;

	if (s->cfg.on_event)
		s->cfg.on_event(s->cfg.event_ctx, kind, a, b);
	for (uint64_t v = kind, i = 0; i < 3; i++, v = i == 1 ? a : b) {
		h ^= v;
		h *= 0x100000001b3ull;
		h ^= h >> 29;
	}
	s->digest = h;
}

bool ptemu_sched_scheduled(void)
{
	int me;

	return sched_of_current(&me) != NULL;
}

bool ptemu_sched_active(const struct ptemu_machine *m)
{
	return m->sched != NULL;
}

uint64_t ptemu_sched_steps(const struct ptemu_machine *m)
{
	uint64_t n = 0;

	if (m->sched) {
		pthread_mutex_lock(&m->sched->mu);
		n = m->sched->final_steps ? m->sched->final_steps : m->sched->steps;
		pthread_mutex_unlock(&m->sched->mu);
	}
	return n;
}

uint64_t ptemu_sched_digest(const struct ptemu_machine *m)
{
	uint64_t d;

	if (!m->sched)
		return 0;
	pthread_mutex_lock(&m->sched->mu);
	d = m->sched->digest;
	pthread_mutex_unlock(&m->sched->mu);
	return d;
}

void ptemu_sched_fold(struct ptemu_machine *m, uint64_t kind, uint64_t a, uint64_t b)
{
	/* Only the baton holder folds, so the order of events is the schedule's. */
	if (!m->sched)
		return;
	pthread_mutex_lock(&m->sched->mu);
	fold_locked(m->sched, kind, a, b);
	pthread_mutex_unlock(&m->sched->mu);
}

bool ptemu_sched_deadlocked(const struct ptemu_machine *m)
{
	return m->sched && __atomic_load_n(&m->sched->deadlocked, __ATOMIC_ACQUIRE);
}

/* Gives the baton to `next` (-1: nobody) and, when `me` is a thread other than `next`,
 * suspends `me` until the baton comes back to it, or, when it is `leaving` the scheduler,
 * until its own host thread takes it back (mu held on entry, released on return). A
 * thread that waits for the baton is parked: the one giving it resumes it, by a switch
 * when it runs a scheduled thread itself, else by waking its host thread. */
static void pass_unlock(struct ptemu_sched *s, int me, int next, bool leaving)
{
	bool resume = next >= 0 && next != me && s->th[next].parked;
	struct baton_ctx *from = me >= 0 ? &s->th[me].ctx : NULL;

	__atomic_store_n(&s->current, next, __ATOMIC_RELEASE);
	if (resume)
		s->th[next].parked = false;
	/* A thread leaving on its own host thread just goes on there. */
	if (from && (next == me || (leaving && baton_at_home(from))))
		from = NULL;
	if (from && !leaving)
		s->th[me].parked = true;
	pthread_mutex_unlock(&s->mu);
	if (!from) {
		if (resume)
			baton_resume_at_home(&s->th[next].ctx);
	} else {
		if (resume)
			baton_switch(from, &s->th[next].ctx, leaving);
		else
			baton_park(from, leaving);
		ptemu_thread_resumed(s->th[me].t);
	}
}

/* A thread that can never run again: its host thread sleeps for good (mu held). */
_Noreturn static void park_for_good(struct ptemu_sched *s, int me)
{
	s->th[me].parked = false;
	pthread_mutex_unlock(&s->mu);
	for (;;)
		baton_park(&s->th[me].ctx, false);
}

static bool runnable(const struct ptemu_sched *s, int i)
{
	return s->th[i].live && !s->th[i].blocked_on && s->th[i].wake_step <= s->steps;
}

/* Nobody can run, but someone sleeps: the clock jumps to the first wake-up, as an idle
 * machine's does (mu held). Decided before any pick, so that a replay's steps match. */
static void skip_idle_time_locked(struct ptemu_sched *s)
{
	uint64_t first = UINT64_MAX;

	for (int i = 0; i < s->n; i++) {
		if (runnable(s, i))
			return;
		if (s->th[i].live && !s->th[i].blocked_on && s->th[i].wake_step < first)
			first = s->th[i].wake_step;
	}
	if (first != UINT64_MAX)
		s->steps = first;
}

static void report_deadlock_locked(struct ptemu_sched *s)
{
	char buf[600];
	size_t n = 0;

	for (int i = 0; i < s->n && n < sizeof(buf) - 1; i++) {
		if (!s->th[i].live)
			continue;
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s waits for %s", n ? "; " : "",
				      s->th[i].t ? s->th[i].t->name : "?",
				      s->th[i].blocked_what ? s->th[i].blocked_what : "?");
	}
	pthread_mutex_unlock(&s->mu);
	ptemu_report(s->m, VIOLATION_HANG, 0, "deadlock after %" PRIu64 " steps: %s", s->steps, buf);
	pthread_mutex_lock(&s->mu);
	/* Set after the report, so that whoever sees it also sees the violation. */
	__atomic_store_n(&s->deadlocked, true, __ATOMIC_RELEASE);
}

/* PCT's choice by priority among the runnable threads but `except`: the non-spinning
 * first, then the highest priority, then among the sunk the first sunk (mu held). */
static int pct_best_locked(const struct ptemu_sched *s, int except)
{
	int best = -1;

	for (int i = 0; i < s->n; i++) {
		if (!runnable(s, i) || i == except)
			continue;
		const struct sthread *c = &s->th[i], *b = best >= 0 ? &s->th[best] : NULL;

		if (!b || (c->spinning != b->spinning ? b->spinning :
			   c->prio != b->prio	      ? c->prio > b->prio :
						       c->sunk && b->sunk && c->sunk_seq < b->sunk_seq))
			best = i;
	}
	return best;
}

/* The first step at which a choice made now may change by itself: a change point or a
 * sleeper's wake-up (mu held). */
static uint64_t next_event_step_locked(const struct ptemu_sched *s)
{
	uint64_t until = UINT64_MAX;

	for (unsigned c = 0; c < s->nchange; c++)
		if (s->change[c] > s->steps && s->change[c] < until)
			until = s->change[c];
	for (int i = 0; i < s->n; i++)
		if (s->th[i].live && !s->th[i].blocked_on && s->th[i].wake_step > s->steps &&
		    s->th[i].wake_step < until)
			until = s->th[i].wake_step;
	return until;
}

/* PCT's noise roll: hand the baton to a random thread at this point. */
static bool pct_noise_locked(struct ptemu_sched *s)
{
	return next_rand(&s->rng) % SCHED_PCT_NOISE_ODDS == 0;
}

/* The thread that runs next, or -1 when none can (mu held). `noise`: PCT's noise roll of
 * this point when the caller made it already (0 or 1), else -1. */
static int pick_locked(struct ptemu_sched *s, int me, bool force_switch, uint64_t odds, int noise)
{
	int candidates[PTEMU_SCHED_MAX_THREADS], nc = 0;

	skip_idle_time_locked(s);
	/* Replay: follow the recording. Where it has no decision, the running thread goes on;
	 * where it must switch and the recording says nothing, the strategy decides (the
	 * replay then diverges, and says where). */
	if (s->cfg.forced) {
		while (s->forced_next < s->cfg.nforced && s->cfg.forced[s->forced_next].step < s->steps)
			s->forced_next++;
		if (s->forced_next < s->cfg.nforced && s->cfg.forced[s->forced_next].step == s->steps) {
			int to = (int)s->cfg.forced[s->forced_next++].to;

			if (to >= 0 && to < s->n && runnable(s, to))
				return to;
		} else if (!force_switch && me >= 0 && runnable(s, me)) {
			return me;
		}
	}

	for (int i = 0; i < s->n; i++)
		if (runnable(s, i) && !(force_switch && i == me))
			candidates[nc++] = i;
	if (!nc)
		return force_switch && me >= 0 && runnable(s, me) ? me : -1;
	if (s->cfg.strategy == PTEMU_SCHED_PCT && (noise >= 0 ? noise : pct_noise_locked(s))) {
		/* Noise among those not sunk: a sunk thread resumed by noise closes its window
		 * before the racing side came (a khugepaged sunk in a retract's window would
		 * come back after a few hundred points of a zap). */
		int awake[PTEMU_SCHED_MAX_THREADS], na = 0;

		for (int k = 0; k < nc; k++)
			if (!s->th[candidates[k]].sunk)
				awake[na++] = candidates[k];
		if (na)
			return awake[next_rand(&s->rng) % (uint64_t)na];
		return candidates[next_rand(&s->rng) % (uint64_t)nc];
	}
	if (s->cfg.strategy == PTEMU_SCHED_PCT) {
		int best = pct_best_locked(s, force_switch ? me : -1);

		s->leader.who = force_switch ? -1 : best;
		s->leader.gen = s->gen;
		s->leader.until = next_event_step_locked(s);
		return best;
	}
	if (!force_switch && me >= 0 && runnable(s, me) && next_rand(&s->rng) % odds)
		return me;
	return candidates[next_rand(&s->rng) % (uint64_t)nc];
}

/* Thread 0 is the scheduler's RCU thread. */
static bool only_rcu_thread_left(const struct ptemu_sched *s)
{
	for (int i = 1; i < s->n; i++)
		if (s->th[i].live)
			return false;
	return true;
}

enum point_kind { POINT_PLAIN, POINT_WINDOW, POINT_LONG_WINDOW, POINT_WIDE_WINDOW };

static bool in_others_long_window_locked(const struct ptemu_sched *s, int me, uint64_t table)
{
	if (s->long_windows <= (s->th[me].in_long_window ? 1u : 0u))
		return false;
	for (int i = 0; i < s->n; i++) {
		if (i == me || !s->th[i].in_long_window || s->th[i].sunk_wide)
			continue;
		for (unsigned k = 0; k < s->th[i].lw_ntables; k++)
			if (s->th[i].lw_tables[k] == table)
				return true;
	}
	return false;
}

/* PCT's odds of preempting at a point: 0 for none. */
static uint64_t pct_window_odds_locked(const struct ptemu_sched *s, int me, enum point_kind kind,
				       uint64_t table)
{
	if (kind == POINT_PLAIN)
		return 0;
	if (kind != POINT_WINDOW || in_others_long_window_locked(s, me, table))
		return SCHED_LONG_WINDOW_ODDS_PCT;
	return SCHED_WINDOW_ODDS_PCT;
}

static void schedule(struct ptemu_sched *s, int me, bool force_switch, bool spinning, uint64_t odds,
		     enum point_kind kind, uint64_t table)
{
	uint64_t pct_window_odds;
	int next, noise = -1;

	pthread_mutex_lock(&s->mu);
	if (__atomic_load_n(&s->deadlocked, __ATOMIC_ACQUIRE))
		park_for_good(s, me);	/* nothing can finish any more */
	s->steps++;
	if (s->th[me].spinning != spinning) {
		s->th[me].spinning = spinning;
		s->gen++;
	}
	/* A plain point of PCT's standing choice: the same decision as a pick, which would
	 * choose `me` again unless its noise roll says otherwise (most guest blocks). */
	if (kind == POINT_PLAIN && !force_switch && s->cfg.strategy == PTEMU_SCHED_PCT && !s->cfg.forced &&
	    s->leader.who == me && s->leader.gen == s->gen && s->steps < s->leader.until) {
		noise = pct_noise_locked(s);
		if (!noise) {
#ifndef NDEBUG
			if (pct_best_locked(s, -1) != me)
				ptemu_bug("scheduler: PCT's standing choice %d is stale at step %" PRIu64, me, s->steps);
#endif
			pthread_mutex_unlock(&s->mu);
			return;
		}
	}
	pct_window_odds = pct_window_odds_locked(s, me, kind, table);
	for (unsigned c = 0; c < s->nchange; c++)
		if (s->change[c] == s->steps) {
			s->th[me].prio = s->cfg.pct_depth - 1 - c;	/* PCT: demote */
			s->gen++;
		}
	if (pct_window_odds && s->cfg.strategy == PTEMU_SCHED_PCT && !s->cfg.forced &&
	    next_rand(&s->rng) % pct_window_odds == 0) {
		s->th[me].sunk_prio = s->th[me].prio;
		s->th[me].sunk = true;
		s->th[me].sunk_wide = kind == POINT_WIDE_WINDOW;
		/* A wide window waits for a whole operation of another thread (a zap that
		 * reclaims the table): it resumes after every thread sunk before it, not
		 * first, or the zap it needs stays sunk behind it. */
		s->th[me].sunk_seq = s->sinks++ + (s->th[me].sunk_wide ? SCHED_SUNK_WIDE_LATER : 0);
		s->th[me].prio = 0;
		s->gen++;
		force_switch = true;
	}
	next = pick_locked(s, me, force_switch, odds, noise);
	if (next >= 0 && s->th[next].sunk) {
		s->th[next].prio = s->th[next].sunk_prio;
		s->th[next].sunk = false;
		s->th[next].sunk_wide = false;
		s->gen++;
	}
	if (next < 0 && !only_rcu_thread_left(s)) {
		report_deadlock_locked(s);
		park_for_good(s, me);
	}
	/* next < 0: idle, the RCU thread waits for work; the next thread to come takes the
	 * baton. */
	if (next >= 0 && next != me)
		fold_locked(s, PTEMU_EV_SWITCH, ((uint64_t)(me & 0xffff) << 16) | (uint64_t)next, s->steps);
	pass_unlock(s, me, next, false);
}

void ptemu_sched_point(void)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		schedule(s, me, false, false, SCHED_SWITCH_ODDS, POINT_PLAIN, 0);
}

void ptemu_sched_point_window(uint64_t table_pa)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		schedule(s, me, false, false, SCHED_WINDOW_SWITCH_ODDS, POINT_WINDOW, table_pa);
}

void ptemu_sched_point_wide_window(uint64_t table_pa)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		schedule(s, me, false, false, SCHED_WINDOW_SWITCH_ODDS, POINT_WIDE_WINDOW, table_pa);
}

void ptemu_sched_long_window_begin(const uint64_t *tables, unsigned n)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->th[me].in_long_window = true;
	s->th[me].lw_ntables = n < PTEMU_SCHED_LONG_WINDOW_TABLES ? n : PTEMU_SCHED_LONG_WINDOW_TABLES;
	memcpy(s->th[me].lw_tables, tables, s->th[me].lw_ntables * sizeof(*tables));
	s->long_windows++;
	pthread_mutex_unlock(&s->mu);
	schedule(s, me, false, false, SCHED_WINDOW_SWITCH_ODDS, POINT_LONG_WINDOW, 0);
}

void ptemu_sched_long_window_point(void)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		schedule(s, me, false, false, SCHED_WINDOW_SWITCH_ODDS,
			 s->th[me].in_long_window ? POINT_LONG_WINDOW : POINT_PLAIN, 0);
}

void ptemu_sched_long_window_end(void)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	if (s->th[me].in_long_window) {
		s->th[me].in_long_window = false;
		s->long_windows--;
	}
	pthread_mutex_unlock(&s->mu);
}

void ptemu_sched_point_guest(void)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		schedule(s, me, false, false, SCHED_BLOCK_SWITCH_ODDS, POINT_PLAIN, 0);
}

void ptemu_sched_yield(void)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		schedule(s, me, true, false, SCHED_SWITCH_ODDS, POINT_PLAIN, 0);
}

void ptemu_sched_spin_wait(void)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		schedule(s, me, true, true, SCHED_SWITCH_ODDS, POINT_PLAIN, 0);
}

void ptemu_sched_sleep(uint64_t steps)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->th[me].wake_step = s->steps + 1 + steps;	/* schedule() counts one step first */
	s->gen++;
	pthread_mutex_unlock(&s->mu);
	schedule(s, me, true, false, SCHED_SWITCH_ODDS, POINT_PLAIN, 0);
}

/* Blocks `me` on token, unless *unless (read under mu) is set. */
static void block(struct ptemu_sched *s, int me, const void *token, const char *what, const bool *unless)
{
	bool skip;

	pthread_mutex_lock(&s->mu);
	skip = unless && *unless;
	if (!skip) {
		s->th[me].blocked_on = token;
		s->th[me].blocked_what = what;
		s->gen++;
	}
	pthread_mutex_unlock(&s->mu);
	if (!skip)
		schedule(s, me, true, false, SCHED_SWITCH_ODDS, POINT_PLAIN, 0);
}

void ptemu_sched_block(const void *token, const char *what)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (s)
		block(s, me, token, what, NULL);
}

void ptemu_sched_wake(const void *token)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->n; i++)
		if (s->th[i].blocked_on == token) {
			s->th[i].blocked_on = NULL;
			s->gen++;
		}
	pthread_mutex_unlock(&s->mu);
}

/* ---- threads ---------------------------------------------------------------------------- */

static void attach(struct ptemu_thread *t, bool wait_for_baton)
{
	struct ptemu_sched *s = t->machine->sched;
	int id;

	pthread_mutex_lock(&s->mu);
	if (s->n == PTEMU_SCHED_MAX_THREADS)
		ptemu_bug("more than %d scheduled threads", PTEMU_SCHED_MAX_THREADS);
	id = s->n++;
	s->th[id].t = t;
	s->th[id].live = true;
	s->th[id].blocked_on = NULL;
	s->th[id].wake_step = 0;
	/* PCT: random distinct priorities above every change point's. */
	s->th[id].prio = s->cfg.pct_depth + 1 + (next_rand(&s->rng) % 1000000) * PTEMU_SCHED_MAX_THREADS + (uint64_t)id;
	s->gen++;
	baton_ctx_init(&s->th[id].ctx);
	t->sched_id = id;
	pthread_cond_broadcast(&s->registered);
	/* After the start, a newcomer to an idle scheduler takes the baton. */
	if (s->started && s->current < 0)
		__atomic_store_n(&s->current, id, __ATOMIC_RELEASE);
	bool park = wait_for_baton && s->current != id;

	s->th[id].parked = park;
	pthread_mutex_unlock(&s->mu);
	if (park) {
		baton_park(&s->th[id].ctx, false);
		ptemu_thread_resumed(t);
	}
}

void ptemu_sched_attach(struct ptemu_thread *t)
{
	attach(t, true);
}

void ptemu_sched_detach(struct ptemu_thread *t)
{
	struct ptemu_sched *s = t->machine->sched;
	int me = t->sched_id, next;

	pthread_mutex_lock(&s->mu);
	s->th[me].live = false;
	s->gen++;
	t->sched_id = -1;
	/* A step of its own, so that a replay meets this decision where it was made. */
	s->steps++;
	/* The last thread of the run is gone: what the RCU thread does after is not part
	 * of it, so the count the run reports is frozen here. */
	if (me != 0 && only_rcu_thread_left(s))
		s->final_steps = s->steps;
	next = pick_locked(s, me, true, SCHED_SWITCH_ODDS, -1);
	if (next >= 0)
		fold_locked(s, PTEMU_EV_SWITCH, ((uint64_t)(me & 0xffff) << 16) | (uint64_t)next, s->steps);
	/* It ends on its own host thread, after the baton has gone on. */
	pass_unlock(s, me, next, true);
	baton_ctx_done(&s->th[me].ctx);
}

void ptemu_sched_start(struct ptemu_machine *m)
{
	struct ptemu_sched *s = m->sched;
	int first;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->started = true;
	first = pick_locked(s, -1, false, SCHED_SWITCH_ODDS, -1);
	if (first >= 0)
		fold_locked(s, PTEMU_EV_SWITCH, (0xffffull << 16) | (uint64_t)first, s->steps);
	/* A scheduled starter (the creator of the others) waits for its turn. */
	struct ptemu_thread *t = ptemu_current();

	pass_unlock(s, t && t->machine == m ? t->sched_id : -1, first, false);
}

void ptemu_sched_attach_current(void)
{
	struct ptemu_thread *t = ptemu_current();

	if (t && t->machine->sched && t->sched_id < 0)
		attach(t, false);	/* runs on until ptemu_sched_start */
}

void ptemu_sched_detach_current(void)
{
	struct ptemu_thread *t = ptemu_current();

	if (t && t->machine->sched && t->sched_id >= 0)
		ptemu_sched_detach(t);
}

void ptemu_sched_wait_threads(struct ptemu_machine *m, unsigned count)
{
	struct ptemu_sched *s = m->sched;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	while ((unsigned)s->n < count)
		pthread_cond_wait(&s->registered, &s->mu);
	pthread_mutex_unlock(&s->mu);
}

/* ---- deterministic RCU -------------------------------------------------------------------- */

/* Has every reader that was in a section when p was queued left it? (mu held) */
static bool grace_period_over_locked(struct ptemu_sched *s, const struct pending_rcu *p)
{
	for (unsigned k = 0; k < p->nreaders; k++) {
		const struct sthread *th = &s->th[p->readers[k].id];

		if (th->live && __atomic_load_n(&th->t->rcu_depth, __ATOMIC_RELAXED) &&
		    __atomic_load_n(&th->t->rcu_section, __ATOMIC_RELAXED) == p->readers[k].section)
			return false;
	}
	return true;
}

/* Wakes the RCU thread when the oldest callback's grace period is over: it runs callbacks
 * in order, and a wake-up for nothing costs two switches. (mu held) */
static void wake_rcu_thread_if_ready_locked(struct ptemu_sched *s)
{
	if (s->npending && grace_period_over_locked(s, &s->pending[0]) && s->th[0].blocked_on == &s->rcu_token) {
		s->th[0].blocked_on = NULL;
		s->gen++;
	}
}

void ptemu_sched_call_rcu(struct ptemu_machine *m, struct ptemu_rcu_head *head)
{
	struct ptemu_sched *s = m->sched;

	pthread_mutex_lock(&s->mu);
	s->pending = ptemu_array_reserve(s->pending, &s->cap_pending, s->npending, sizeof(*s->pending),
					 64, "RCU callbacks");
	struct pending_rcu *p = &s->pending[s->npending++];

	*p = (struct pending_rcu){ .head = head };
	size_t cap = 0;

	for (int i = 0; i < s->n; i++) {
		struct ptemu_thread *t = s->th[i].live ? s->th[i].t : NULL;

		if (!t || !__atomic_load_n(&t->rcu_depth, __ATOMIC_RELAXED))
			continue;
		p->readers = ptemu_array_reserve(p->readers, &cap, p->nreaders, sizeof(*p->readers), 4,
						 "RCU readers");
		p->readers[p->nreaders++] = (struct rcu_reader){
			.id = i,
			.section = __atomic_load_n(&t->rcu_section, __ATOMIC_RELAXED),
		};
	}
	fold_locked(s, PTEMU_EV_CALL_RCU, s->npending, s->steps);
	wake_rcu_thread_if_ready_locked(s);
	pthread_mutex_unlock(&s->mu);
}

void ptemu_sched_rcu_reader_left(void)
{
	int me;
	struct ptemu_sched *s = sched_of_current(&me);

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	wake_rcu_thread_if_ready_locked(s);
	pthread_mutex_unlock(&s->mu);
}

/* The scheduler's RCU thread: when it holds the baton, it ends the grace period of every
 * callback whose readers are gone and runs them, in order; else it waits. */
static void *rcu_main(void *arg)
{
	struct ptemu_sched *s = arg;

	ptemu_thread_register(s->m, "rcu");
	for (;;) {
		struct ptemu_rcu_head *ready[64];
		size_t nready = 0;

		pthread_mutex_lock(&s->mu);
		if (s->stopping && !s->npending) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		while (nready < s->npending && nready < 64 &&
		       grace_period_over_locked(s, &s->pending[nready])) {
			ready[nready] = s->pending[nready].head;
			free(s->pending[nready].readers);
			nready++;
		}
		if (nready) {
			memmove(s->pending, s->pending + nready, (s->npending - nready) * sizeof(*s->pending));
			s->npending -= nready;
			fold_locked(s, PTEMU_EV_GP_END, nready, s->steps);
		}
		pthread_mutex_unlock(&s->mu);
		for (size_t i = 0; i < nready; i++) {
			uint64_t outer = check_rcu_callback_enter(ready[i]->queued_stamp);

			ready[i]->func(ready[i]);
			check_rcu_callback_leave(outer);
		}
		if (nready) {
			ptemu_sched_wake(&s->rcu_token);	/* rcu_barrier waiters */
			continue;	/* more may be ready */
		}
		/* Readers leaving their sections wake us; so do new callbacks. Unless the
		 * teardown has begun, decided under mu: ptemu_sched_destroy wakes this thread
		 * once, and a block after that wake-up would wait for a baton nobody passes. */
		block(s, 0, &s->rcu_token, "a grace period", &s->stopping);
	}
	ptemu_thread_unregister();
	return NULL;
}

void ptemu_sched_rcu_barrier(struct ptemu_machine *m)
{
	struct ptemu_sched *s = m->sched;

	for (;;) {
		pthread_mutex_lock(&s->mu);
		bool empty = !s->npending;

		pthread_mutex_unlock(&s->mu);
		if (empty)
			return;
		ptemu_sched_wake(&s->rcu_token);
		ptemu_sched_block(&s->rcu_token, "rcu_barrier");
	}
}

/* ---- life ------------------------------------------------------------------------------------ */

int ptemu_sched_create(struct ptemu_machine *m, const struct ptemu_sched_config *cfg)
{
	struct ptemu_sched *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->m = m;
	s->cfg = *cfg;
	if (!s->cfg.pct_depth)
		s->cfg.pct_depth = 3;
	if (s->cfg.pct_depth > SCHED_MAX_CHANGE_POINTS)
		s->cfg.pct_depth = SCHED_MAX_CHANGE_POINTS;
	s->rng = cfg->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
	__atomic_store_n(&s->current, -1, __ATOMIC_RELEASE);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->registered, NULL);
	/* PCT: d - 1 change points, uniform over the horizon. */
	if (s->cfg.strategy == PTEMU_SCHED_PCT)
		for (unsigned i = 0; i + 1 < s->cfg.pct_depth; i++)
			s->change[s->nchange++] = 1 + next_rand(&s->rng) % (cfg->max_steps ? cfg->max_steps : 1000000);
	m->sched = s;
	/* The RCU thread is the first scheduled thread, so its id never depends on timing. */
	if (pthread_create(&s->rcu_thread, NULL, rcu_main, s)) {
		m->sched = NULL;
		free(s);
		return -EAGAIN;
	}
	ptemu_sched_wait_threads(m, 1);
	return 0;
}

void ptemu_sched_destroy(struct ptemu_machine *m, uint64_t *digest, uint64_t *steps)
{
	struct ptemu_sched *s = m->sched;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	s->started = true;
	s->th[0].blocked_on = NULL;
	s->gen++;
	/* Nobody else is left: the RCU thread gets the baton to finish. */
	if (s->current < 0 || !s->th[s->current].live)
		pass_unlock(s, -1, 0, false);
	else
		pthread_mutex_unlock(&s->mu);
	pthread_join(s->rcu_thread, NULL);
	/* Only now: the RCU thread may have run callbacks (and folded their events) after
	 * every other thread had gone. The step count stays the one frozen then. */
	if (digest)
		*digest = s->digest;
	if (steps)
		*steps = s->final_steps ? s->final_steps : s->steps;
	m->sched = NULL;
	free(s->pending);
	free(s);
}
