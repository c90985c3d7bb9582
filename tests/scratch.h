// A scratch directory per test process, for the files tests write (traces, images, campaign
// JSON): ctest runs each test as a process of its own, side by side, so each gets its own
// directory, and it goes with everything in it when the process exits.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace ptemu_test {

class ScratchDir {
public:
	ScratchDir() : path_(testing::TempDir() + "ptemu-test-XXXXXX")
	{
		if (!mkdtemp(path_.data()))
			ADD_FAILURE() << "mkdtemp " << path_;
		path_ += "/";
	}
	~ScratchDir()
	{
		std::error_code ec;
		std::filesystem::remove_all(path_, ec);
	}
	const std::string &path() const { return path_; }

private:
	std::string path_;
};

// The process's scratch directory, with a trailing slash; made at the first call.
inline const std::string &scratch_dir()
{
	static ScratchDir dir;
	return dir.path();
}

} // namespace ptemu_test
