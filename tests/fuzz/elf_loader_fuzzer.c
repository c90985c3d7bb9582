/* libFuzzer target for the ELF loader: any bytes must give a clean error or an image whose
 * segments and code ranges lie inside it, never a crash; then every model's own checks
 * (address space, image check) on what was accepted. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ptemu/arch.h>
#include <ptemu/loader.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ptemu_elf_image img;
	char err[256];

	if (ptemu_elf_parse(data, size, 0, 0, &img, err, sizeof(err)))
		return 0;
	/* Reading every byte the image claims lets ASan catch a range outside the copy. */
	volatile uint8_t sink = 0;

	for (unsigned i = 0; i < img.nsegments; i++)
		for (uint64_t k = 0; k < img.segments[i].filesz; k++)
			sink ^= img.segments[i].data[k];
	for (unsigned i = 0; i < img.ncode; i++)
		for (uint64_t k = 0; k < img.code[i].filesz; k++)
			sink ^= img.code[i].data[k];
	(void)sink;
	for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
		ptemu_elf_check_arch(*a, &img, err, sizeof(err));
	ptemu_elf_free(&img);
	return 0;
}
