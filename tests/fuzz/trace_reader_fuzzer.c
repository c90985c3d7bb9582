/* libFuzzer target for the trace reader: any bytes must give a clean error or a trace
 * whose every field was validated, never a crash or an allocation beyond the input. */
#include <stddef.h>
#include <stdint.h>

#include <ptemu/trace.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ptemu_trace t;
	char err[256];

	if (ptemu_trace_parse(data, size, &t, err, sizeof(err)) == 0)
		ptemu_trace_free(&t);
	return 0;
}
