#include <ptemu/stats.h>

static const char *const stat_names[PTEMU_STAT_COUNT] = {
#define PTEMU_STAT_NAME(n) #n,
	PTEMU_STAT_LIST(PTEMU_STAT_NAME)
#undef PTEMU_STAT_NAME
};

const char *ptemu_stat_name(enum ptemu_stat s)
{
	return s < PTEMU_STAT_COUNT ? stat_names[s] : "?";
}
