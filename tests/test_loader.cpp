// The ELF loader: valid images of both classes and byte orders, each malformation it must
// refuse, hostile inputs (every truncation, random byte flips), and the real workloads.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <ptemu/arch.h>
#include <ptemu/loader.h>

#include "scratch.h"

namespace {

constexpr uint32_t PT_LOAD = 1, PT_NOTE = 4;
constexpr uint32_t PF_X = 1, PF_W = 2, PF_R = 4;
constexpr uint16_t ET_REL = 1, ET_EXEC = 2, ET_DYN = 3;
constexpr uint16_t EM_SPARC = 2, EM_PPC64 = 21, EM_S390 = 22, EM_ARM = 40, EM_SPARCV9 = 43,
		   EM_X86_64 = 62, EM_AARCH64 = 183;

struct Seg {
	uint32_t type = PT_LOAD;
	uint64_t vaddr = 0, memsz = 0;
	uint32_t flags = PF_R;
	std::vector<uint8_t> bytes;	// the file data: p_filesz = bytes.size()
};

// Writes an ELF file as ld lays one out: the ELF header, the program headers, then each
// segment's file data in order. The offset helpers let tests corrupt single fields.
struct ElfBuilder {
	bool is64, be;
	uint16_t type = ET_EXEC, machine = EM_X86_64;
	uint64_t entry = 0;
	uint32_t flags = 0;
	unsigned phent_pad = 0;	// extra bytes per program header (a larger e_phentsize)
	std::vector<Seg> segs;

	ElfBuilder(bool is64_, bool be_) : is64(is64_), be(be_) {}

	unsigned word() const { return is64 ? 8 : 4; }
	unsigned ehsize() const { return is64 ? 64 : 52; }
	unsigned phentsize() const { return (is64 ? 56 : 32) + phent_pad; }
	size_t phdr(size_t i) const { return ehsize() + i * phentsize(); }

	size_t e_entry() const { return 24; }
	size_t e_phoff() const { return is64 ? 32 : 28; }
	size_t e_phentsize() const { return is64 ? 54 : 42; }
	size_t e_phnum() const { return is64 ? 56 : 44; }
	size_t p_type(size_t i) const { return phdr(i); }
	size_t p_offset(size_t i) const { return phdr(i) + (is64 ? 8 : 4); }
	size_t p_vaddr(size_t i) const { return phdr(i) + (is64 ? 16 : 8); }
	size_t p_filesz(size_t i) const { return phdr(i) + (is64 ? 32 : 16); }
	size_t p_memsz(size_t i) const { return phdr(i) + (is64 ? 40 : 20); }
	size_t p_flags(size_t i) const { return phdr(i) + (is64 ? 4 : 24); }

	void put(std::vector<uint8_t> &b, size_t off, unsigned width, uint64_t v) const
	{
		for (unsigned i = 0; i < width; i++)
			b.at(off + (be ? width - 1 - i : i)) = uint8_t(v >> (8 * i));
	}
	// An address-sized field (p_offset, p_vaddr, ...).
	void put_word(std::vector<uint8_t> &b, size_t off, uint64_t v) const
	{
		put(b, off, word(), v);
	}

	std::vector<uint8_t> build() const
	{
		std::vector<uint8_t> b(phdr(segs.size()));

		memcpy(b.data(), "\177ELF", 4);
		b[4] = is64 ? 2 : 1;
		b[5] = be ? 2 : 1;
		b[6] = 1;
		put(b, 16, 2, type);
		put(b, 18, 2, machine);
		put(b, 20, 4, 1);
		put_word(b, e_entry(), entry);
		put_word(b, e_phoff(), ehsize());
		put(b, is64 ? 48 : 36, 4, flags);
		put(b, is64 ? 52 : 40, 2, ehsize());
		put(b, e_phentsize(), 2, phentsize());
		put(b, e_phnum(), 2, segs.size());
		for (size_t i = 0; i < segs.size(); i++) {
			const Seg &s = segs[i];

			put(b, p_type(i), 4, s.type);
			put(b, p_flags(i), 4, s.flags);
			put_word(b, p_offset(i), b.size());
			put_word(b, p_vaddr(i), s.vaddr);
			put_word(b, p_filesz(i), s.bytes.size());
			put_word(b, p_memsz(i), s.memsz);
			b.insert(b.end(), s.bytes.begin(), s.bytes.end());
		}
		return b;
	}
};

std::vector<uint8_t> pattern(size_t n, uint8_t seed)
{
	std::vector<uint8_t> v(n);
	for (size_t i = 0; i < n; i++)
		v[i] = uint8_t(seed + 7 * i);
	return v;
}

struct Combo {
	bool is64, be;
	uint16_t machine;
	const char *name;
};

const Combo kCombos[] = {
	{ true, false, EM_AARCH64, "ELF64 LE" },
	{ true, true, EM_S390, "ELF64 BE" },
	{ false, false, EM_ARM, "ELF32 LE" },
	{ false, true, EM_SPARC, "ELF32 BE" },
};

constexpr uint64_t kText = 0x10000, kData = 0x20000, kEntry = 0x10010;

// Program header 0: text (R-X, 64 bytes); 1: a PT_NOTE that must be ignored (its offset
// and size are garbage once standard_image is done); 2: data (RW-, 16 bytes + bss).
ElfBuilder standard(const Combo &c)
{
	ElfBuilder e(c.is64, c.be);
	e.machine = c.machine;
	e.entry = kEntry;
	e.segs.push_back({ PT_LOAD, kText, 64, PF_R | PF_X, pattern(64, 1) });
	e.segs.push_back({ PT_NOTE, 0, 0, PF_R, {} });
	e.segs.push_back({ PT_LOAD, kData, 0x1000, PF_R | PF_W, pattern(16, 100) });
	return e;
}

std::vector<uint8_t> standard_image(const Combo &c)
{
	ElfBuilder e = standard(c);
	std::vector<uint8_t> b = e.build();
	e.put_word(b, e.p_offset(1), c.is64 ? ~0ull : 0xffffffffull);
	e.put_word(b, e.p_filesz(1), c.is64 ? ~0ull : 0xffffffffull);
	return b;
}

uint64_t fnv1a64(const std::vector<uint8_t> &b)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint8_t c : b)
		h = (h ^ c) * 0x100000001b3ull;
	return h;
}

bool is_zero(const ptemu_elf_image &img)
{
	static const ptemu_elf_image zero{};
	return memcmp(&img, &zero, sizeof(img)) == 0;
}

// Parses a copy of b in a heap block of exactly b.size() bytes, so that ASan sees any read
// past the end.
int parse(const std::vector<uint8_t> &b, ptemu_elf_image *img, std::string *err,
	  unsigned machine = 0, unsigned cls = 0)
{
	std::unique_ptr<uint8_t[]> exact(new uint8_t[b.size()]);
	char buf[256] = "";

	if (!b.empty())
		memcpy(exact.get(), b.data(), b.size());
	int rc = ptemu_elf_parse(exact.get(), b.size(), machine, cls, img, buf, sizeof(buf));
	*err = buf;
	return rc;
}

void expect_rejected(const std::vector<uint8_t> &b, std::initializer_list<const char *> words,
		     unsigned machine = 0, unsigned cls = 0)
{
	ptemu_elf_image img;
	std::string err;

	memset(&img, 0xa5, sizeof(img));
	EXPECT_EQ(parse(b, &img, &err, machine, cls), -1);
	EXPECT_TRUE(is_zero(img)) << "a failed parse must leave the image zeroed";
	for (const char *w : words)
		EXPECT_NE(err.find(w), std::string::npos) << "'" << w << "' not in: " << err;
	ptemu_elf_free(&img);
}

void expect_accepted(const std::vector<uint8_t> &b, ptemu_elf_image *img, unsigned machine = 0,
		     unsigned cls = 0)
{
	std::string err;
	EXPECT_EQ(parse(b, img, &err, machine, cls), 0) << err;
}

} // namespace

TEST(ElfLoader, ParsesEveryClassAndByteOrder)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		std::vector<uint8_t> b = standard_image(c);
		ptemu_elf_image img;

		expect_accepted(b, &img, c.machine, c.is64 ? 64 : 32);
		EXPECT_EQ(img.elf_class, c.is64 ? 64u : 32u);
		EXPECT_EQ(img.big_endian, c.be);
		EXPECT_EQ(img.machine, c.machine);
		EXPECT_EQ(img.entry, kEntry);
		EXPECT_EQ(img.toc, 0u);
		EXPECT_EQ(img.size, b.size());
		EXPECT_EQ(img.hash, fnv1a64(b));
		ASSERT_EQ(img.nsegments, 2u) << "the PT_NOTE must be skipped";

		const ptemu_elf_segment &text = img.segments[0], &data = img.segments[1];
		EXPECT_EQ(text.vaddr, kText);
		EXPECT_EQ(text.memsz, 64u);
		EXPECT_EQ(text.filesz, 64u);
		EXPECT_EQ(text.prot, unsigned(PTEMU_PROT_READ | PTEMU_PROT_EXEC));
		EXPECT_EQ(text.data, img.buf + e.phdr(3));
		EXPECT_EQ(memcmp(text.data, e.segs[0].bytes.data(), 64), 0);
		EXPECT_EQ(data.vaddr, kData);
		EXPECT_EQ(data.memsz, 0x1000u);
		EXPECT_EQ(data.filesz, 16u);
		EXPECT_EQ(data.prot, unsigned(PTEMU_PROT_READ | PTEMU_PROT_WRITE));
		EXPECT_EQ(data.data, img.buf + e.phdr(3) + 64);
		EXPECT_EQ(memcmp(data.data, e.segs[2].bytes.data(), 16), 0);

		// The image owns a copy: the caller's buffer may go away.
		EXPECT_NE(img.buf, b.data());
		std::fill(b.begin(), b.end(), 0);
		EXPECT_EQ(memcmp(text.data, e.segs[0].bytes.data(), 64), 0);
		ptemu_elf_free(&img);
		EXPECT_TRUE(is_zero(img));
	}
}

TEST(ElfLoader, RejectsNonElf)
{
	expect_rejected({}, { "not an ELF file" });
	expect_rejected({ 0x7f, 'E', 'L' }, { "not an ELF file" });
	expect_rejected({ 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
			{ "not an ELF file" });
	std::vector<uint8_t> b = standard_image(kCombos[0]);
	b[3] = 'f';
	expect_rejected(b, { "not an ELF file" });
	ptemu_elf_image img;
	EXPECT_EQ(ptemu_elf_parse(nullptr, 64, 0, 0, &img, nullptr, 0), -1)
		<< "NULL data and a NULL err buffer are tolerated";
	EXPECT_TRUE(is_zero(img));
}

TEST(ElfLoader, RejectsInvalidIdent)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		const std::vector<uint8_t> good = standard_image(c);
		for (uint8_t v : { 0, 3, 0xff }) {
			std::vector<uint8_t> b = good;
			b[4] = v;
			expect_rejected(b, { "invalid EI_CLASS" });
			b = good;
			b[5] = v;
			expect_rejected(b, { "invalid EI_DATA" });
		}
		for (uint8_t v : { 0, 2 }) {
			std::vector<uint8_t> b = good;
			b[6] = v;
			expect_rejected(b, { "invalid EI_VERSION" });
		}
		ElfBuilder e = standard(c);
		std::vector<uint8_t> b = good;
		e.put(b, 20, 4, 2);
		expect_rejected(b, { "invalid e_version" });
	}
}

TEST(ElfLoader, RejectsTruncatedElfHeader)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		std::vector<uint8_t> b = standard_image(c);
		b.resize(c.is64 ? 63 : 51);
		expect_rejected(b, { "truncated ELF header" });
		b.resize(10);
		expect_rejected(b, { "truncated ELF header" });
	}
}

TEST(ElfLoader, RejectsAllButStaticExecutables)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		e.type = ET_DYN;
		expect_rejected(e.build(), { "ET_DYN", "not supported", "fixed address" });
		e.type = ET_REL;
		expect_rejected(e.build(), { "ET_REL", "not ET_EXEC" });
		e.type = 0xfe00;
		expect_rejected(e.build(), { "0xfe00", "not ET_EXEC" });
	}
}

TEST(ElfLoader, RejectsWrongMachineNamingBoth)
{
	struct Isa {
		uint16_t em;
		const char *macro, *name;
	};
	static const Isa isas[] = {
		{ EM_AARCH64, "EM_AARCH64", "aarch64" },
		{ EM_ARM, "EM_ARM", "arm" },
		{ EM_S390, "EM_S390", "s390" },
		{ EM_SPARCV9, "EM_SPARCV9", "sparc64" },
		{ EM_PPC64, "EM_PPC64", "ppc64" },
		{ EM_X86_64, "EM_X86_64", "x86-64" },
	};
	ElfBuilder e = standard(kCombos[1]);
	e.machine = EM_X86_64;
	expect_rejected(e.build(), { "ELF machine 62 (x86-64) but the model runs EM_S390 (22)" },
			EM_S390, 64);

	for (const Isa &file : isas) {
		for (const Isa &model : isas) {
			if (file.em == model.em)
				continue;
			e.machine = file.em;
			std::string got =
				"ELF machine " + std::to_string(file.em) + " (" + file.name + ")";
			std::string want =
				std::string(model.macro) + " (" + std::to_string(model.em) + ")";
			expect_rejected(e.build(), { got.c_str(), want.c_str() }, model.em);
		}
	}
	e.machine = 9999;
	expect_rejected(e.build(), { "9999 (unknown)", "machine 7777" }, 7777);
}

TEST(ElfLoader, RejectsWrongClassNamingBoth)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		unsigned mine = c.is64 ? 64 : 32, other = c.is64 ? 32 : 64;
		std::string msg = "ELF" + std::to_string(mine) + " file but the model runs ELF" +
				  std::to_string(other);
		expect_rejected(standard_image(c), { msg.c_str() }, c.machine, other);
	}
}

TEST(ElfLoader, RejectsTruncatedProgramHeaderTable)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		const std::vector<uint8_t> good = e.build();
		std::vector<uint8_t> b;

		// Starts inside the file, ends past it.
		b = good;
		e.put_word(b, e.e_phoff(), good.size() - 10);
		expect_rejected(b, { "truncated program header table" });
		// Starts past the end.
		b = good;
		e.put_word(b, e.e_phoff(), good.size() + 1);
		expect_rejected(b, { "truncated program header table" });
		// phoff + table size wraps around.
		b = good;
		e.put_word(b, e.e_phoff(), (c.is64 ? ~0ull : 0xffffffffull) - 8);
		expect_rejected(b, { "truncated program header table" });
		// phnum * phentsize far beyond the file.
		b = good;
		e.put(b, e.e_phnum(), 2, 0xfffe);
		e.put(b, e.e_phentsize(), 2, 0xffff);
		expect_rejected(b, { "truncated program header table" });
	}
}

TEST(ElfLoader, RejectsSmallPhentsizeAndHonoursLargerOnes)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		const std::vector<uint8_t> good = e.build();
		for (unsigned v : { 0u, 1u, e.phentsize() - 1 }) {
			std::vector<uint8_t> b = good;
			e.put(b, e.e_phentsize(), 2, v);
			expect_rejected(b, { "e_phentsize", "smaller than" });
		}
		// A larger stride must be followed, not assumed to be the struct size.
		e.phent_pad = 24;
		ptemu_elf_image img;
		expect_accepted(e.build(), &img);
		ASSERT_EQ(img.nsegments, 2u);
		EXPECT_EQ(img.segments[1].vaddr, kData);
		EXPECT_EQ(memcmp(img.segments[1].data, e.segs[2].bytes.data(), 16), 0);
		ptemu_elf_free(&img);
	}
}

TEST(ElfLoader, RejectsExtendedPhnum)
{
	ElfBuilder e = standard(kCombos[0]);
	std::vector<uint8_t> b = e.build();
	e.put(b, e.e_phnum(), 2, 0xffff);
	expect_rejected(b, { "PN_XNUM" });
}

TEST(ElfLoader, RejectsNoLoadableSegment)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		e.segs.clear();
		expect_rejected(e.build(), { "no loadable segment" });

		e = standard(c);
		e.segs[0].type = PT_NOTE;
		e.segs[2].type = 0x6474e551;	// PT_GNU_STACK
		expect_rejected(e.build(), { "no loadable segment" });

		// PT_LOADs that map nothing do not count.
		e = standard(c);
		std::vector<uint8_t> b = e.build();
		for (size_t i : { 0, 2 }) {
			e.put_word(b, e.p_filesz(i), 0);
			e.put_word(b, e.p_memsz(i), 0);
		}
		expect_rejected(b, { "no loadable segment" });
	}
}

TEST(ElfLoader, SkipsEmptyLoadSegments)
{
	ElfBuilder e = standard(kCombos[0]);
	// memsz 0 at the text's address: neither overlaps nor counts.
	e.segs.insert(e.segs.begin() + 1, Seg{ PT_LOAD, kText, 0, PF_R, {} });
	ptemu_elf_image img;
	expect_accepted(e.build(), &img);
	EXPECT_EQ(img.nsegments, 2u);
	ptemu_elf_free(&img);
}

TEST(ElfLoader, RejectsFileszAboveMemsz)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		e.segs[2].memsz = 15;
		expect_rejected(e.build(),
				{ "segment 2", "p_filesz 0x10 larger than p_memsz 0xf" });
	}
}

TEST(ElfLoader, RejectsSegmentDataOutsideTheFile)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		const std::vector<uint8_t> good = e.build();
		const uint64_t all = c.is64 ? ~0ull : 0xffffffffull;
		std::vector<uint8_t> b;

		b = good;
		e.put_word(b, e.p_offset(2), good.size() - 8);
		expect_rejected(b, { "segment 2 truncated" });
		b = good;
		e.put_word(b, e.p_offset(0), good.size() + 1);
		expect_rejected(b, { "segment 0 truncated" });
		// offset + filesz wraps around to a small number.
		b = good;
		e.put_word(b, e.p_offset(2), all - 3);
		expect_rejected(b, { "segment 2 truncated" });
		// A huge filesz (and memsz, so that filesz <= memsz holds).
		b = good;
		e.put_word(b, e.p_filesz(2), all);
		e.put_word(b, e.p_memsz(2), all);
		expect_rejected(b, { "segment 2 truncated" });
	}
}

TEST(ElfLoader, RejectsAddressWrapAndAcceptsTheTopOfTheSpace)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		const uint64_t top = c.is64 ? ~0ull : 0xffffffffull;
		ElfBuilder e = standard(c);
		e.segs[2].vaddr = top - 0xfff;
		e.segs[2].memsz = 0x2000;
		expect_rejected(e.build(),
				{ "segment 2", "wraps around",
				  c.is64 ? "64-bit address space" : "32-bit address space" });
		// Ending exactly at the top is fine.
		e.segs[2].memsz = 0x1000;
		ptemu_elf_image img;
		expect_accepted(e.build(), &img);
		EXPECT_EQ(img.segments[1].vaddr + img.segments[1].memsz - 1, top);
		ptemu_elf_free(&img);
	}
}

TEST(ElfLoader, AcceptsSixteenLoadSegmentsRejectsSeventeen)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e(c.is64, c.be);
		e.machine = c.machine;
		e.entry = kText;
		for (unsigned i = 0; i < PTEMU_ELF_MAX_SEGMENTS; i++)
			e.segs.push_back({ PT_LOAD, kText + i * 0x1000, 0x1000, PF_R | PF_X,
					   pattern(4, uint8_t(i)) });
		ptemu_elf_image img;
		expect_accepted(e.build(), &img);
		EXPECT_EQ(img.nsegments, unsigned(PTEMU_ELF_MAX_SEGMENTS));
		ptemu_elf_free(&img);

		e.segs.push_back({ PT_LOAD, kText + 16 * 0x1000, 0x1000, PF_R, {} });
		expect_rejected(e.build(), { "more than 16 PT_LOAD segments" });
	}
}

TEST(ElfLoader, RejectsOverlappingSegments)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e(c.is64, c.be);
		e.machine = c.machine;
		e.entry = kText;
		e.segs.push_back({ PT_LOAD, kText, 0x1000, PF_R | PF_X, pattern(16, 1) });
		e.segs.push_back({ PT_LOAD, kData, 0x1000, PF_R | PF_W, pattern(16, 2) });
		e.segs.push_back({ PT_LOAD, kData + 0x1000, 0x1000, PF_R | PF_W, pattern(16, 3) });
		ptemu_elf_image img;
		expect_accepted(e.build(), &img);	// adjacent is not overlapping
		ptemu_elf_free(&img);

		e.segs[2].vaddr = kData + 0xfff;	// last byte shared
		expect_rejected(e.build(), { "segment 2 overlaps segment 1" });
		e.segs[2].vaddr = kData + 0x10;	// inside
		e.segs[2].memsz = 0x10;
		expect_rejected(e.build(), { "segment 2 overlaps segment 1" });
		e.segs[2].vaddr = kData - 0x1000;	// encloses
		e.segs[2].memsz = 0x3000;
		expect_rejected(e.build(), { "segment 2 overlaps segment 1" });
		e.segs[2].vaddr = kText - 0x10;	// overlaps the first one from below
		e.segs[2].memsz = 0x11;
		expect_rejected(e.build(), { "segment 2 overlaps segment 0" });
	}
}

TEST(ElfLoader, RejectsEntryOutsideExecutableSegments)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		ElfBuilder e = standard(c);
		e.entry = kData;	// mapped, but not executable
		expect_rejected(e.build(),
				{ "entry point 0x20000 outside every executable segment" });
		e.entry = kText + 64;	// one past the end of the text
		expect_rejected(e.build(),
				{ "entry point 0x10040 outside every executable segment" });
		e.entry = 0;
		expect_rejected(e.build(), { "entry point 0x0 outside every executable segment" });
		e.entry = kText + 63;
		ptemu_elf_image img;
		expect_accepted(e.build(), &img);
		ptemu_elf_free(&img);
	}
}

TEST(ElfLoader, ArmThumbEntryBitIsKept)
{
	ElfBuilder e = standard(kCombos[2]);
	e.entry = kText + 64 - 2 + 1;	// Thumb instruction at the last halfword
	ptemu_elf_image img;
	expect_accepted(e.build(), &img, EM_ARM, 32);
	EXPECT_EQ(img.entry, kText + 63);
	ptemu_elf_free(&img);
	// Elsewhere bit 0 is part of the address.
	e.machine = EM_SPARC;
	e.entry = kText + 64 + 1;
	expect_rejected(e.build(), { "outside every executable segment" });
}

TEST(ElfLoader, Ppc64ElfV1EntryGoesThroughTheFunctionDescriptor)
{
	ElfBuilder e(true, true);
	e.machine = EM_PPC64;
	std::vector<uint8_t> desc(24);
	for (int i = 0; i < 8; i++) {
		desc[7 - i] = uint8_t((kEntry) >> (8 * i));
		desc[15 - i] = uint8_t(0x28000ull >> (8 * i));
	}
	e.segs.push_back({ PT_LOAD, kText, 64, PF_R | PF_X, pattern(64, 1) });
	e.segs.push_back({ PT_LOAD, kData, 0x1000, PF_R | PF_W, desc });

	for (uint32_t flags : { 0u, 1u }) {	// unspecified and explicit ELFv1
		SCOPED_TRACE(flags);
		e.flags = flags;
		e.entry = kData;
		ptemu_elf_image img;
		expect_accepted(e.build(), &img, EM_PPC64, 64);
		EXPECT_EQ(img.entry, kEntry);
		EXPECT_EQ(img.toc, 0x28000u);
		ptemu_elf_free(&img);

		e.entry = kData + 16;	// descriptor runs past the file data
		expect_rejected(e.build(), { "function descriptor", "outside the file data" });
		e.entry = kText;	// a code address is not a descriptor
		expect_rejected(e.build(), { "(from the function descriptor at 0x10000) "
					     "outside every executable segment" });
	}

	e.flags = 2;	// ELFv2: e_entry is the code address
	e.entry = kEntry;
	ptemu_elf_image img;
	expect_accepted(e.build(), &img, EM_PPC64, 64);
	EXPECT_EQ(img.entry, kEntry);
	EXPECT_EQ(img.toc, 0u);
	ptemu_elf_free(&img);
	e.entry = kData;
	expect_rejected(e.build(), { "entry point 0x20000 outside every executable segment" });
}

TEST(ElfLoader, EveryTruncationIsRejected)
{
	for (const Combo &c : kCombos) {
		SCOPED_TRACE(c.name);
		const std::vector<uint8_t> good = standard_image(c);
		// The last byte belongs to the data segment, so every prefix is invalid.
		for (size_t n = 0; n < good.size(); n++) {
			SCOPED_TRACE(n);
			std::vector<uint8_t> b(good.begin(), good.begin() + n);
			ptemu_elf_image img;
			std::string err;
			ASSERT_EQ(parse(b, &img, &err), -1);
			EXPECT_FALSE(err.empty());
			EXPECT_TRUE(is_zero(img));
		}
	}
}

TEST(ElfLoader, RandomByteFlipsNeverCrash)
{
	std::mt19937_64 rng(20240611);
	unsigned accepted = 0, rejected = 0;

	for (unsigned iter = 0; iter < 4000; iter++) {
		const Combo &c = kCombos[iter % 4];
		ElfBuilder e = standard(c);
		std::vector<uint8_t> b = standard_image(c);
		// Mostly in the headers: flips in segment data are valid and uninteresting.
		const size_t headers = e.phdr(e.segs.size());
		unsigned flips = 1 + rng() % 4;
		for (unsigned f = 0; f < flips; f++) {
			size_t at = rng() % 4 ? rng() % headers : rng() % b.size();
			b[at] ^= uint8_t(1 + rng() % 255);
		}

		ptemu_elf_image img;
		std::string err;
		if (parse(b, &img, &err) == 0) {
			accepted++;
			ASSERT_GE(img.nsegments, 1u);
			ASSERT_LE(img.nsegments, unsigned(PTEMU_ELF_MAX_SEGMENTS));
			for (unsigned i = 0; i < img.nsegments; i++) {
				const ptemu_elf_segment &s = img.segments[i];
				ASSERT_LE(s.filesz, s.memsz);
				ASSERT_GE(s.data, img.buf);
				ASSERT_LE(uint64_t(s.data - img.buf), img.size);
				ASSERT_LE(s.filesz, img.size - uint64_t(s.data - img.buf));
			}
			EXPECT_EQ(img.hash, fnv1a64(b));
			ptemu_elf_free(&img);
		} else {
			rejected++;
			ASSERT_FALSE(err.empty());
			ASSERT_TRUE(is_zero(img));
		}
	}
	// Both paths were exercised.
	EXPECT_GT(accepted, 100u);
	EXPECT_GT(rejected, 100u);
}

TEST(ElfLoader, HashIdentifiesTheImage)
{
	std::vector<uint8_t> b = standard_image(kCombos[0]);
	ptemu_elf_image a, same, other;

	expect_accepted(b, &a);
	expect_accepted(b, &same);
	b.back() ^= 1;	// a byte of the data segment: still a valid image
	expect_accepted(b, &other);
	EXPECT_EQ(a.hash, same.hash);
	EXPECT_NE(a.hash, other.hash);
	EXPECT_EQ(other.hash, fnv1a64(b));
	ptemu_elf_free(&a);
	ptemu_elf_free(&same);
	ptemu_elf_free(&other);
}

TEST(ElfLoader, LoadsFilesAndNamesThePathInErrors)
{
	std::string tmpl = ptemu_test::scratch_dir() + "loader-XXXXXX";
	char *path = tmpl.data();
	int fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	const std::vector<uint8_t> good = standard_image(kCombos[1]);
	ASSERT_EQ(write(fd, good.data(), good.size()), ssize_t(good.size()));
	close(fd);

	ptemu_elf_image img, mem;
	char err[512] = "";
	ASSERT_EQ(ptemu_elf_load(path, EM_S390, 64, &img, err, sizeof(err)), 0) << err;
	expect_accepted(good, &mem);
	EXPECT_EQ(img.hash, mem.hash);
	EXPECT_EQ(img.entry, kEntry);
	ASSERT_EQ(img.nsegments, 2u);
	EXPECT_EQ(img.segments[0].data, img.buf + (mem.segments[0].data - mem.buf));
	ptemu_elf_free(&img);
	ptemu_elf_free(&mem);

	// Parse errors are prefixed with the path.
	ASSERT_EQ(ptemu_elf_load(path, EM_AARCH64, 64, &img, err, sizeof(err)), -1);
	EXPECT_EQ(std::string(err), std::string(path) + ": ELF machine 22 (s390) but the model "
						      "runs EM_AARCH64 (183)");
	EXPECT_TRUE(is_zero(img));
	unlink(path);

	ASSERT_EQ(ptemu_elf_load(path, 0, 0, &img, err, sizeof(err)), -1);
	EXPECT_EQ(std::string(err), std::string(path) + ": " + strerror(ENOENT));
	ASSERT_EQ(ptemu_elf_load("/tmp", 0, 0, &img, err, sizeof(err)), -1);
	EXPECT_STREQ(err, "/tmp: not a regular file");
	EXPECT_TRUE(is_zero(img));
}

// The workloads another build step produces: <dir>/<isa>/.../*.elf, found next to the test
// binary's build directory (build/<preset>/workloads) or in $PTEMU_WORKLOADS_DIR.
TEST(ElfLoader, LoadsTheBuiltWorkloads)
{
	namespace fs = std::filesystem;
	struct Isa {
		const char *dir;
		unsigned machine, cls;
		bool be;
	};
	static const Isa isas[] = {
		{ "aarch64", EM_AARCH64, 64, false }, { "arm", EM_ARM, 32, false },
		{ "s390x", EM_S390, 64, true },	      { "sparc64", EM_SPARCV9, 64, true },
		{ "ppc64", EM_PPC64, 64, true },
	};
	std::error_code ec;
	fs::path dir;
	if (const char *env = getenv("PTEMU_WORKLOADS_DIR"))
		dir = env;
	else
		dir = fs::read_symlink("/proc/self/exe", ec).parent_path().parent_path() /
		      "workloads";
	if (ec || !fs::is_directory(dir, ec))
		GTEST_SKIP() << "no workloads directory at " << dir;

	unsigned loaded = 0;
	for (const fs::directory_entry &f : fs::recursive_directory_iterator(dir, ec)) {
		if (!f.is_regular_file(ec) || f.path().extension() != ".elf")
			continue;
		SCOPED_TRACE(f.path().string());
		const Isa *isa = nullptr;
		for (const fs::path &part : f.path().lexically_relative(dir))
			for (const Isa &i : isas)
				if (!isa && part == i.dir)
					isa = &i;
		ptemu_elf_image img;
		char err[512] = "";
		ASSERT_EQ(ptemu_elf_load(f.path().c_str(), isa ? isa->machine : 0,
					 isa ? isa->cls : 0, &img, err, sizeof(err)), 0) << err;
		if (isa) {
			EXPECT_EQ(img.machine, isa->machine);
			EXPECT_EQ(img.elf_class, isa->cls);
			EXPECT_EQ(img.big_endian, isa->be);
		}
		ptemu_elf_free(&img);
		loaded++;
	}
	if (!loaded)
		GTEST_SKIP() << "no .elf files under " << dir;
}

namespace {

// An s390x image whose text holds `code` at kText, with the entry at its start.
ElfBuilder s390_with_code(std::vector<uint8_t> code)
{
	ElfBuilder e(true, true);
	e.machine = EM_S390;
	e.entry = kText;
	e.segs.push_back({ PT_LOAD, kText, code.size(), PF_R | PF_X, code });
	return e;
}

// Appends a section table of a null section and one SHF_ALLOC|SHF_EXECINSTR section.
void add_code_section(const ElfBuilder &e, std::vector<uint8_t> &b, uint64_t addr, uint64_t size)
{
	size_t shoff = b.size();
	b.resize(b.size() + 2 * 64);
	size_t sh = shoff + 64;
	e.put(b, sh + 4, 4, 1);			// SHT_PROGBITS
	e.put_word(b, sh + 8, 6);		// SHF_ALLOC | SHF_EXECINSTR
	e.put_word(b, sh + 16, addr);
	e.put_word(b, sh + 24, e.phdr(1) + (addr - kText));
	e.put_word(b, sh + 32, size);
	e.put_word(b, 40, shoff);
	e.put(b, 58, 2, 64);
	e.put(b, 60, 2, 2);
}

int check_for(const char *arch, const std::vector<uint8_t> &b, std::string *err)
{
	ptemu_elf_image img;
	char buf[512] = "";
	int rc = ptemu_elf_parse(b.data(), b.size(), 0, 0, &img, buf, sizeof(buf));
	if (rc == 0)
		rc = ptemu_elf_check_arch(ptemu_arch_find(arch), &img, buf, sizeof(buf));
	ptemu_elf_free(&img);
	*err = buf;
	return rc;
}

// What `ptemu run` says of image b: its exit status, and its output in *out.
int run_image(const char *arch, const std::vector<uint8_t> &b, std::string *out)
{
	std::string path = ptemu_test::scratch_dir() + "ptemu-image-" + std::to_string(getpid()) + ".elf";
	std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char *>(b.data()), (std::streamsize)b.size());
	std::string cmd = std::string(PTEMU_CLI) + " run --arch " + arch + " --image " + path + " --seconds 1 2>&1";
	FILE *p = popen(cmd.c_str(), "r");
	char buf[4096];
	out->clear();
	while (p && fgets(buf, sizeof(buf), p))
		*out += buf;
	int st = p ? pclose(p) : -1;
	std::remove(path.c_str());
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

} // namespace

TEST(ElfLoader, ASegmentBeyondTheModelsAddressSpaceIsBadInput)
{
	struct Case {
		const char *arch;
		bool be;
		uint16_t machine;
		uint64_t top;	// TASK_SIZE
		bool is64;
	};
	for (const Case &c : { Case{ "arm64", false, EM_AARCH64, 1ull << 48, true },
			       Case{ "arm64-39", false, EM_AARCH64, 1ull << 39, true },
			       Case{ "s390", true, EM_S390, 1ull << 53, true },
			       Case{ "arm-lpae", false, EM_ARM, 0xbf000000ull, false } }) {
		SCOPED_TRACE(c.arch);
		ElfBuilder e(c.is64, c.be);
		e.machine = c.machine;
		e.entry = kText;
		e.segs.push_back({ PT_LOAD, kText, 64, PF_R | PF_X, std::vector<uint8_t>(64, 0x07) });
		// Its last byte is the first beyond the space.
		e.segs.push_back({ PT_LOAD, c.top - 0x1000, 0x1001, PF_R | PF_W, {} });
		std::vector<uint8_t> b = e.build();
		std::string err, out;
		ASSERT_EQ(check_for(c.arch, b, &err), -1);
		char want[200];
		snprintf(want, sizeof(want),
			 "segment 1 (p_vaddr 0x%llx, p_memsz 0x1001) beyond the user address space of "
			 "model %s (below 0x%llx)",
			 (unsigned long long)(c.top - 0x1000), c.arch, (unsigned long long)c.top);
		EXPECT_NE(err.find(want), std::string::npos) << err;
		EXPECT_EQ(run_image(c.arch, b, &out), 2) << out;
		EXPECT_NE(out.find(want), std::string::npos) << out;
		// One byte less fits.
		e.segs[1].memsz = 0x1000;
		EXPECT_EQ(check_for(c.arch, e.build(), &err), 0) << err;
	}
}

TEST(ElfLoader, S390xStorageToStorageInstructionsAreRefused)
{
	// nopr (2 bytes), ahi (4), then the instruction under test (6 bytes for the SS ones).
	const std::vector<uint8_t> prefix = { 0x07, 0x07, 0xa7, 0x1a, 0x00, 0x01 };
	struct Insn {
		std::vector<uint8_t> bytes;
		const char *name;
	};
	for (const Insn &i : { Insn{ { 0xd2, 0x07, 0xf0, 0x00, 0xf0, 0x08 }, "mvc" },
			       Insn{ { 0xd7, 0x07, 0xf0, 0x00, 0xf0, 0x00 }, "xc" },
			       Insn{ { 0xd5, 0x07, 0xf0, 0x00, 0xf0, 0x08 }, "clc" },
			       Insn{ { 0x0e, 0x24 }, "mvcl" },
			       Insn{ { 0xb2, 0x55, 0x00, 0x12 }, "mvst" } }) {
		SCOPED_TRACE(i.name);
		std::vector<uint8_t> code = prefix;
		code.insert(code.end(), i.bytes.begin(), i.bytes.end());
		std::vector<uint8_t> b = s390_with_code(code).build();
		std::string err, out;
		ASSERT_EQ(check_for("s390", b, &err), -1);
		std::string want = std::string(i.name) + " at 0x10006: s390x storage-to-storage";
		EXPECT_NE(err.find(want), std::string::npos) << err;
		EXPECT_NE(err.find("Unicorn"), std::string::npos) << err;
		EXPECT_EQ(run_image("s390", b, &out), 2) << out;
		EXPECT_NE(out.find(want), std::string::npos) << out;
		// The other model has no such check.
		EXPECT_EQ(check_for("arm64", b, &err), 0) << err;
	}
	// The same bytes as an operand (ahi's immediate) are no instruction.
	std::string err;
	EXPECT_EQ(check_for("s390", s390_with_code({ 0x07, 0x07, 0xa7, 0x1a, 0xd2, 0x07 }).build(), &err), 0) << err;
}

TEST(ElfLoader, TheSectionTableSaysWhichBytesAreCode)
{
	// An mvc at 0x10008, in the segment but after the 8-byte code section: data.
	std::vector<uint8_t> code = { 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0xd2, 0x07, 0xf0, 0x00, 0xf0, 0x08 };
	ElfBuilder e = s390_with_code(code);
	std::vector<uint8_t> b = e.build();
	std::string err;
	EXPECT_EQ(check_for("s390", b, &err), -1) << "without sections, the whole segment is code";
	add_code_section(e, b, kText, 8);
	EXPECT_EQ(check_for("s390", b, &err), 0) << err;
	// A code section covering it: refused.
	b = e.build();
	add_code_section(e, b, kText, code.size());
	EXPECT_EQ(check_for("s390", b, &err), -1);
	EXPECT_NE(err.find("mvc at 0x10008"), std::string::npos) << err;
	// A code section outside every executable segment's file data is malformed.
	b = e.build();
	add_code_section(e, b, kText + 8, 64);
	EXPECT_EQ(check_for("s390", b, &err), -1);
	EXPECT_NE(err.find("executable section 1"), std::string::npos) << err;
	// And a section table beyond the file.
	b = e.build();
	add_code_section(e, b, kText, 8);
	e.put(b, 60, 2, 200);
	EXPECT_EQ(check_for("s390", b, &err), -1);
	EXPECT_NE(err.find("truncated section header table"), std::string::npos) << err;
}

// A guest process that exits with a failure status (its runtime's die(), say) is a guest
// error, not a clean run.
TEST(ElfLoader, AGuestThatExitsWithAFailureStatusIsAGuestError)
{
	const uint32_t insns[] = {
		0xd28000a0,	// movz x0, #5
		0xd2800028,	// movz x8, #1 (PTEMU_SYS_exit_group)
		0xd4000001,	// svc #0
	};
	std::vector<uint8_t> code(sizeof(insns));
	memcpy(code.data(), insns, sizeof(insns));
	ElfBuilder e(true, false);
	e.machine = EM_AARCH64;
	e.entry = kText;
	e.segs.push_back({ PT_LOAD, kText, code.size(), PF_R | PF_X, code });
	std::string out;
	EXPECT_EQ(run_image("arm64", e.build(), &out), 3) << out;
	EXPECT_NE(out.find("exited with status 5"), std::string::npos) << out;
}
