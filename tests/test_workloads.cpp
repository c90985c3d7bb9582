// The guest images, as built: facts the host relies on.
#include <gtest/gtest.h>

#include <ptemu/arch.h>
#include <ptemu/loader.h>

#include <string>

#ifndef PTEMU_WORKLOAD_DIR
#error "PTEMU_WORKLOAD_DIR must name the built images"
#endif

namespace {

const char *const kWorkloads[] = {"shmem-stress", "munmap-race", "mprotect-race",
				  "dontneed-race", "truncate-race", "file-thp", "wild-access",
				  "khugepaged-wait", "early-exit", "shared-alias", "deep-calls",
				  "frag-rollover", "tlb-miss"};

} // namespace

// Unicorn 2.1.1 crashes when an s390x storage-to-storage instruction needs a TLB fill
// (workloads/README.md): the images must contain none, by the check that refuses outside
// images.
TEST(Workloads, S390xImagesHaveNoStorageToStorageInstructions)
{
	const ptemu_arch *s390 = ptemu_arch_find("s390");
	ASSERT_NE(s390, nullptr);
	for (const char *w : kWorkloads) {
		std::string image = std::string(PTEMU_WORKLOAD_DIR) + "/s390x/" + w + ".elf";
		ptemu_elf_image img;
		char err[512];
		ASSERT_EQ(ptemu_elf_load_for(s390, image.c_str(), &img, err, sizeof(err)), 0) << err;
		EXPECT_GT(img.ncode, 0u);
		ptemu_elf_free(&img);
	}
}
