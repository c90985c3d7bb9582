// The guest images, as built: facts the host relies on.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#ifndef PTEMU_WORKLOAD_DIR
#error "PTEMU_WORKLOAD_DIR must name the built images"
#endif

namespace {

const char *const kWorkloads[] = {"shmem-stress", "munmap-race", "mprotect-race",
				  "dontneed-race", "truncate-race", "file-thp", "wild-access",
				  "khugepaged-wait", "early-exit"};

std::string disassemble(const std::string &objdump, const std::string &image)
{
	std::string out, cmd = objdump + " -d " + image + " 2>/dev/null";
	FILE *p = popen(cmd.c_str(), "r");
	char buf[4096];
	if (!p)
		return out;
	while (fgets(buf, sizeof(buf), p))
		out += buf;
	pclose(p);
	return out;
}

} // namespace

// Unicorn 2.1.1 crashes when an s390x storage-to-storage instruction needs a TLB fill
// (workloads/README.md): the images must contain none.
TEST(Workloads, S390xImagesHaveNoStorageToStorageInstructions)
{
	static const char *const banned[] = {"\tmvc\t", "\txc\t", "\tclc\t", "\tnc\t", "\toc\t",
					     "\ttr\t", "\tmvcl\t", "\tmvcle\t", "\tclcle\t",
					     "\tmvst\t", "\tclst\t", "\tmvcin\t", "\tmvn\t", "\tmvz\t"};
	for (const char *w : kWorkloads) {
		std::string image = std::string(PTEMU_WORKLOAD_DIR) + "/s390x/" + w + ".elf";
		std::string text = disassemble("s390x-linux-gnu-objdump", image);
		ASSERT_NE(text.find("<_start>:"), std::string::npos) << "cannot disassemble " << image;
		for (const char *b : banned)
			EXPECT_EQ(text.find(b), std::string::npos) << w << " contains" << b;
	}
}
