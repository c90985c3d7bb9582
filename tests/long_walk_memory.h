// Simulated physical memory for the long-descriptor walk tests (arm64, arm-lpae): 8-byte
// little-endian entries in a plain buffer, reachable by the walker only through read_entry,
// which logs every read and checks the index against the level's table size.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include <ptemu/arch.h>

class LongWalkMemory {
protected:
	using Read = std::tuple<unsigned, uint64_t, unsigned>;	// level, table_pa, index

	LongWalkMemory(const ptemu_arch &a, size_t bytes) : arch_(a), mem(bytes) {}

	void set(uint64_t table_pa, unsigned index, uint64_t v)
	{
		for (unsigned i = 0; i < 8; i++)
			mem[table_pa + 8ull * index + i] = uint8_t(v >> (8 * i));
	}

	const ptemu_arch &arch_;
	std::vector<uint8_t> mem;
	std::vector<Read> reads;
	ptemu_walk_ctx ctx{ read_entry, this, nullptr };

private:
	static uint64_t read_entry(const ptemu_walk_ctx *c, unsigned level, uint64_t table_pa,
				   unsigned index)
	{
		auto *self = static_cast<LongWalkMemory *>(c->opaque);
		uint64_t pa = table_pa + 8ull * index, v = 0;

		self->reads.emplace_back(level, table_pa, index);
		EXPECT_LT(index, 1u << self->arch_.level_bits[level]);
		if (pa + 8 > self->mem.size()) {
			ADD_FAILURE() << "read outside the tables at " << std::hex << pa;
			return 0;
		}
		for (int i = 7; i >= 0; i--)
			v = v << 8 | self->mem[pa + i];
		return v;
	}
};
