/* The ELF loader (see ptemu/loader.h).
 *
 * Every field is read with byte loads in the file's byte order (EI_DATA) at an offset
 * checked against the file size first, so neither the host's byte order nor its alignment
 * rules matter, and the only allocation is the copy of the file itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ptemu/arch.h>
#include <ptemu/loader.h>

/* The ELF constants used here, with their gABI names (no <elf.h>: the host's is not
 * needed and may not match the guest's). */
enum {
	EI_CLASS = 4,
	EI_DATA = 5,
	EI_VERSION = 6,
	EI_NIDENT = 16,
	ELFCLASS32 = 1,
	ELFCLASS64 = 2,
	ELFDATA2LSB = 1,
	ELFDATA2MSB = 2,
	EV_CURRENT = 1,
	ET_EXEC = 2,
	ET_DYN = 3,
	PT_LOAD = 1,
	PF_X = 1,
	PF_W = 2,
	PF_R = 4,
	PN_XNUM = 0xffff,
	SHT_NOBITS = 8,
	SHF_ALLOC = 2,
	SHF_EXECINSTR = 4,
	EM_PPC64 = 21,
	EM_ARM = 40,
	EF_PPC64_ABI = 3,	/* e_flags: 2 = ELFv2, 1 or 0 = ELFv1 (as Linux decides) */
	PPC64_DESC_SIZE = 16,	/* ELFv1 function descriptor: code address, TOC (then env) */
};

/* Where the fields the loader reads sit in each class (e_type, e_machine and e_version
 * have the same offsets in both). */
struct elf_layout {
	unsigned ehdr_size;
	unsigned word;		/* bytes of an address or an offset */
	unsigned e_entry, e_phoff, e_flags, e_phentsize, e_phnum;
	unsigned phdr_size;
	unsigned p_flags, p_offset, p_vaddr, p_filesz, p_memsz;
	unsigned e_shoff, e_shentsize, e_shnum;
	unsigned shdr_size;
	unsigned sh_type, sh_flags, sh_addr, sh_offset, sh_size;	/* sh_flags: a word */
};

static const struct elf_layout layout32 = {
	.ehdr_size = 52, .word = 4,
	.e_entry = 24, .e_phoff = 28, .e_flags = 36, .e_phentsize = 42, .e_phnum = 44,
	.phdr_size = 32,
	.p_offset = 4, .p_vaddr = 8, .p_filesz = 16, .p_memsz = 20, .p_flags = 24,
	.e_shoff = 32, .e_shentsize = 46, .e_shnum = 48,
	.shdr_size = 40,
	.sh_type = 4, .sh_flags = 8, .sh_addr = 12, .sh_offset = 16, .sh_size = 20,
};

static const struct elf_layout layout64 = {
	.ehdr_size = 64, .word = 8,
	.e_entry = 24, .e_phoff = 32, .e_flags = 48, .e_phentsize = 54, .e_phnum = 56,
	.phdr_size = 56,
	.p_flags = 4, .p_offset = 8, .p_vaddr = 16, .p_filesz = 32, .p_memsz = 40,
	.e_shoff = 40, .e_shentsize = 58, .e_shnum = 60,
	.shdr_size = 64,
	.sh_type = 4, .sh_flags = 8, .sh_addr = 16, .sh_offset = 24, .sh_size = 32,
};

static const struct {
	unsigned em;
	const char *macro, *name;
} machines[] = {
	{ 2, "EM_SPARC", "sparc" },
	{ 3, "EM_386", "x86" },
	{ 8, "EM_MIPS", "mips" },
	{ 18, "EM_SPARC32PLUS", "sparc32plus" },
	{ 20, "EM_PPC", "ppc" },
	{ 21, "EM_PPC64", "ppc64" },
	{ 22, "EM_S390", "s390" },
	{ 40, "EM_ARM", "arm" },
	{ 43, "EM_SPARCV9", "sparc64" },
	{ 62, "EM_X86_64", "x86-64" },
	{ 183, "EM_AARCH64", "aarch64" },
	{ 243, "EM_RISCV", "riscv" },
};

static int find_machine(unsigned em)
{
	for (unsigned i = 0; i < sizeof(machines) / sizeof(machines[0]); i++)
		if (machines[i].em == em)
			return (int)i;
	return -1;
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static uint64_t load(const uint8_t *p, unsigned width, bool big_endian)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < width; i++) {
		if (big_endian)
			v = v << 8 | p[i];
		else
			v |= (uint64_t)p[i] << (8 * i);
	}
	return v;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static int check_machine(unsigned machine, unsigned expect, char *err, size_t errlen)
{
	int got = find_machine(machine), want = find_machine(expect);
	char model[48];

	if (!expect || machine == expect)
		return 0;
	if (want >= 0)
		snprintf(model, sizeof(model), "%s (%u)", machines[want].macro, expect);
	else
		snprintf(model, sizeof(model), "machine %u", expect);
	return fail(err, errlen, "ELF machine %u (%s) but the model runs %s", machine,
		    got >= 0 ? machines[got].name : "unknown", model);
}

static unsigned prot_of(uint64_t p_flags)
{
	return (p_flags & PF_R ? PTEMU_PROT_READ : 0) | (p_flags & PF_W ? PTEMU_PROT_WRITE : 0) |
	       (p_flags & PF_X ? PTEMU_PROT_EXEC : 0);
}

/* Checks a header table (program or section headers, `kind`) of num entries of entsize
 * bytes at off against the file and the class's entry size. */
static int check_table(uint64_t off, unsigned entsize, unsigned num, uint64_t size, unsigned min_entsize,
		       const struct ptemu_elf_image *img, const char *kind, char *err, size_t errlen)
{
	if (entsize < min_entsize)
		return fail(err, errlen, "e_%sentsize %u smaller than an ELF%u %s header (%u)",
			    kind[0] == 'p' ? "ph" : "sh", entsize, img->elf_class, kind, min_entsize);
	/* Both factors are 16-bit: the product cannot overflow. */
	if (off > size || (uint64_t)num * entsize > size - off)
		return fail(err, errlen,
			    "truncated %s header table: %u entries of %u bytes at offset 0x%" PRIx64
			    " but the file has %" PRIu64 " bytes", kind, num, entsize, off, size);
	return 0;
}

/* Reads the PT_LOAD headers into img; the indices are the program header numbers, for
 * messages. */
static int parse_segments(const uint8_t *p, uint64_t size, const struct elf_layout *l,
			  struct ptemu_elf_image *img, char *err, size_t errlen)
{
	bool be = img->big_endian;
	uint64_t phoff = load(p + l->e_phoff, l->word, be);
	unsigned phentsize = load(p + l->e_phentsize, 2, be);
	unsigned phnum = load(p + l->e_phnum, 2, be);
	uint64_t addr_max = l->word == 4 ? UINT32_MAX : UINT64_MAX;

	/* PN_XNUM moves the count into section header 0: no static workload needs that. */
	if (phnum == PN_XNUM)
		return fail(err, errlen,
			    "extended program header numbering (PN_XNUM) not supported");
	if (phnum == 0)
		return fail(err, errlen, "no loadable segment (no program headers)");
	if (check_table(phoff, phentsize, phnum, size, l->phdr_size, img, "program", err, errlen))
		return -1;

	for (unsigned i = 0; i < phnum; i++) {
		const uint8_t *ph = p + phoff + (uint64_t)i * phentsize;
		uint64_t offset, vaddr, filesz, memsz, last;
		struct ptemu_elf_segment *seg;

		if (load(ph, 4, be) != PT_LOAD)
			continue;
		offset = load(ph + l->p_offset, l->word, be);
		vaddr = load(ph + l->p_vaddr, l->word, be);
		filesz = load(ph + l->p_filesz, l->word, be);
		memsz = load(ph + l->p_memsz, l->word, be);
		if (filesz > memsz)
			return fail(err, errlen,
				    "segment %u: p_filesz 0x%" PRIx64 " larger than p_memsz 0x%"
				    PRIx64, i, filesz, memsz);
		if (offset > size || filesz > size - offset)
			return fail(err, errlen,
				    "segment %u truncated: 0x%" PRIx64 " bytes at offset 0x%" PRIx64
				    " but the file has %" PRIu64 " bytes", i, filesz, offset, size);
		if (memsz == 0)	/* nothing to map */
			continue;
		if (memsz - 1 > addr_max - vaddr)
			return fail(err, errlen,
				    "segment %u: p_vaddr 0x%" PRIx64 " + p_memsz 0x%" PRIx64
				    " wraps around the %u-bit address space",
				    i, vaddr, memsz, img->elf_class);
		if (img->nsegments == PTEMU_ELF_MAX_SEGMENTS)
			return fail(err, errlen, "more than %d PT_LOAD segments",
				    PTEMU_ELF_MAX_SEGMENTS);
		/* Inclusive ends, so that a segment ending at the top of the space fits. */
		last = vaddr + (memsz - 1);
		for (unsigned j = 0; j < img->nsegments; j++) {
			const struct ptemu_elf_segment *o = &img->segments[j];
			uint64_t o_last = o->vaddr + (o->memsz - 1);

			if (vaddr <= o_last && o->vaddr <= last)
				return fail(err, errlen,
					    "segment %u overlaps segment %u (0x%" PRIx64 "-0x%"
					    PRIx64 " and 0x%" PRIx64 "-0x%" PRIx64 ")",
					    i, o->index, vaddr, last, o->vaddr, o_last);
		}
		seg = &img->segments[img->nsegments++];
		seg->vaddr = vaddr;
		seg->memsz = memsz;
		seg->filesz = filesz;
		seg->prot = prot_of(load(ph + l->p_flags, 4, be));
		seg->data = p + offset;
		seg->index = i;
	}
	if (!img->nsegments)
		return fail(err, errlen, "no loadable segment");
	return 0;
}

/* The segment whose file data holds [addr, addr + len), or NULL. */
static const struct ptemu_elf_segment *file_data_at(const struct ptemu_elf_image *img,
						   uint64_t addr, uint64_t len)
{
	for (unsigned i = 0; i < img->nsegments; i++) {
		const struct ptemu_elf_segment *s = &img->segments[i];

		if (addr >= s->vaddr && addr - s->vaddr <= s->filesz &&
		    s->filesz - (addr - s->vaddr) >= len)
			return s;
	}
	return NULL;
}

/* The executable segments' file data, as the code ranges. */
static void code_is_segments(struct ptemu_elf_image *img)
{
	img->ncode = 0;
	for (unsigned i = 0; i < img->nsegments; i++)
		if (img->segments[i].prot & PTEMU_PROT_EXEC && img->segments[i].filesz) {
			img->code[img->ncode] = img->segments[i];
			img->code[img->ncode++].memsz = img->segments[i].filesz;
		}
}

/* Fills img's code ranges from the section table (see loader.h). A section table is not
 * needed to load, but one that is there must be sound. */
static int parse_code(const uint8_t *p, uint64_t size, const struct elf_layout *l,
		      struct ptemu_elf_image *img, char *err, size_t errlen)
{
	bool be = img->big_endian;
	uint64_t shoff = load(p + l->e_shoff, l->word, be);
	unsigned shentsize = load(p + l->e_shentsize, 2, be);
	unsigned shnum = load(p + l->e_shnum, 2, be);

	code_is_segments(img);
	/* shnum 0 with an offset is extended numbering: the count is elsewhere, and the
	 * segments serve. */
	if (!shoff || !shnum)
		return 0;
	if (check_table(shoff, shentsize, shnum, size, l->shdr_size, img, "section", err, errlen))
		return -1;
	img->ncode = 0;
	for (unsigned i = 0; i < shnum; i++) {
		const uint8_t *sh = p + shoff + (uint64_t)i * shentsize;
		uint64_t flags = load(sh + l->sh_flags, l->word, be);
		uint64_t addr = load(sh + l->sh_addr, l->word, be);
		uint64_t len = load(sh + l->sh_size, l->word, be);
		const struct ptemu_elf_segment *s;

		if ((flags & (SHF_ALLOC | SHF_EXECINSTR)) != (SHF_ALLOC | SHF_EXECINSTR) || !len ||
		    load(sh + l->sh_type, 4, be) == SHT_NOBITS)
			continue;
		s = file_data_at(img, addr, len);
		if (!s || !(s->prot & PTEMU_PROT_EXEC))
			return fail(err, errlen, "executable section %u (0x%" PRIx64 ", 0x%" PRIx64
				    " bytes) outside the file data of every executable segment",
				    i, addr, len);
		if (img->ncode == PTEMU_ELF_MAX_SEGMENTS)
			return fail(err, errlen, "more than %d executable sections", PTEMU_ELF_MAX_SEGMENTS);
		img->code[img->ncode++] = (struct ptemu_elf_segment){
			.vaddr = addr, .memsz = len, .filesz = len, .prot = s->prot,
			.data = s->data + (addr - s->vaddr), .index = i,
		};
	}
	if (!img->ncode)
		code_is_segments(img);
	return 0;
}

static int parse_entry(const uint8_t *p, const struct elf_layout *l, struct ptemu_elf_image *img,
		       char *err, size_t errlen)
{
	uint64_t e_entry = load(p + l->e_entry, l->word, img->big_endian);
	unsigned e_flags = load(p + l->e_flags, 4, img->big_endian);
	bool descriptor = img->machine == EM_PPC64 && (e_flags & EF_PPC64_ABI) != 2;
	uint64_t pc = e_entry;

	img->entry = e_entry;
	/* ELFv1 (the big-endian default) points e_entry at a descriptor in a data
	 * segment; Linux's start_thread loads the PC and r2 from it, and so must we. */
	if (descriptor) {
		const struct ptemu_elf_segment *s = file_data_at(img, e_entry, PPC64_DESC_SIZE);
		const uint8_t *desc;

		if (!s)
			return fail(err, errlen,
				    "entry point 0x%" PRIx64 " (a ppc64 ELFv1 function descriptor)"
				    " outside the file data of every segment", e_entry);
		desc = s->data + (e_entry - s->vaddr);
		img->entry = pc = load(desc, 8, img->big_endian);
		img->toc = load(desc + 8, 8, img->big_endian);
	}
	/* Bit 0 of an arm entry selects Thumb; the instruction is at the even address. */
	if (img->machine == EM_ARM)
		pc &= ~(uint64_t)1;
	for (unsigned i = 0; i < img->nsegments; i++) {
		const struct ptemu_elf_segment *s = &img->segments[i];

		if ((s->prot & PTEMU_PROT_EXEC) && pc >= s->vaddr && pc - s->vaddr < s->memsz)
			return 0;
	}
	if (descriptor)
		return fail(err, errlen,
			    "entry point 0x%" PRIx64 " (from the function descriptor at 0x%" PRIx64
			    ") outside every executable segment", pc, e_entry);
	return fail(err, errlen, "entry point 0x%" PRIx64 " outside every executable segment",
		    e_entry);
}

/* Validates p[0, size) and fills img, with segment data pointing into p (img->buf, size
 * and hash are the caller's). */
static int parse_image(const uint8_t *p, uint64_t size, unsigned expect_machine,
		       unsigned expect_class, struct ptemu_elf_image *img, char *err, size_t errlen)
{
	static const char *const types[] = { "ET_NONE", "ET_REL", "ET_EXEC", "ET_DYN", "ET_CORE" };
	const struct elf_layout *l;
	unsigned type, version;
	bool be;

	if (size < 4 || memcmp(p, "\177ELF", 4))
		return fail(err, errlen, "not an ELF file (no \\177ELF magic)");
	if (size < EI_NIDENT)
		return fail(err, errlen, "truncated ELF header (%" PRIu64 " bytes)", size);
	switch (p[EI_CLASS]) {
	case ELFCLASS32:
		l = &layout32;
		break;
	case ELFCLASS64:
		l = &layout64;
		break;
	default:
		return fail(err, errlen, "invalid EI_CLASS %u (neither ELFCLASS32 nor ELFCLASS64)",
			    p[EI_CLASS]);
	}
	if (p[EI_DATA] != ELFDATA2LSB && p[EI_DATA] != ELFDATA2MSB)
		return fail(err, errlen, "invalid EI_DATA %u (neither ELFDATA2LSB nor ELFDATA2MSB)",
			    p[EI_DATA]);
	if (p[EI_VERSION] != EV_CURRENT)
		return fail(err, errlen, "invalid EI_VERSION %u (expected EV_CURRENT, 1)",
			    p[EI_VERSION]);
	if (size < l->ehdr_size)
		return fail(err, errlen, "truncated ELF header (%" PRIu64 " bytes, ELF%u needs %u)",
			    size, l == &layout32 ? 32 : 64, l->ehdr_size);

	be = p[EI_DATA] == ELFDATA2MSB;
	img->elf_class = l == &layout32 ? 32 : 64;
	img->big_endian = be;
	type = load(p + 16, 2, be);
	img->machine = load(p + 18, 2, be);
	version = load(p + 20, 4, be);
	if (type == ET_DYN)
		return fail(err, errlen, "ELF type ET_DYN (position-independent) not supported: "
			    "ptemu loads static executables linked at a fixed address (ET_EXEC)");
	if (type != ET_EXEC) {
		if (type < sizeof(types) / sizeof(types[0]))
			return fail(err, errlen, "ELF type %s is not ET_EXEC", types[type]);
		return fail(err, errlen, "ELF type 0x%x is not ET_EXEC", type);
	}
	if (check_machine(img->machine, expect_machine, err, errlen))
		return -1;
	if (expect_class && img->elf_class != expect_class)
		return fail(err, errlen, "ELF%u file but the model runs ELF%u", img->elf_class,
			    expect_class);
	if (version != EV_CURRENT)
		return fail(err, errlen, "invalid e_version %u (expected EV_CURRENT, 1)", version);
	if (parse_segments(p, size, l, img, err, errlen) || parse_code(p, size, l, img, err, errlen))
		return -1;
	return parse_entry(p, l, img, err, errlen);
}

/* Gives img the buffer buf (a copy of, or the same as, the parsed bytes src). */
static void adopt(struct ptemu_elf_image *img, const uint8_t *src, uint8_t *buf, size_t size)
{
	for (unsigned i = 0; i < img->nsegments; i++)
		img->segments[i].data = buf + (img->segments[i].data - src);
	for (unsigned i = 0; i < img->ncode; i++)
		img->code[i].data = buf + (img->code[i].data - src);
	img->buf = buf;
	img->size = size;
	img->hash = fnv1a64(buf, size);
}

int ptemu_elf_parse(const void *data, size_t size, unsigned expect_machine, unsigned expect_class,
		    struct ptemu_elf_image *img, char *err, size_t errlen)
{
	uint8_t *buf;

	memset(img, 0, sizeof(*img));
	if (!data)
		size = 0;
	/* Validate before copying: garbage never costs an allocation. */
	if (parse_image(data, size, expect_machine, expect_class, img, err, errlen))
		goto fail;
	buf = malloc(size);
	if (!buf) {
		fail(err, errlen, "out of host memory for a %zu-byte ELF image", size);
		goto fail;
	}
	memcpy(buf, data, size);
	adopt(img, data, buf, size);
	return 0;
fail:
	memset(img, 0, sizeof(*img));
	return -1;
}

int ptemu_elf_load(const char *path, unsigned expect_machine, unsigned expect_class,
		   struct ptemu_elf_image *img, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	char msg[256];
	struct stat st;
	size_t size, got = 0;
	int fd;

	memset(img, 0, sizeof(*img));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st)) {
		fail(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* A FIFO or device has no size to bound the read by. */
	if (!S_ISREG(st.st_mode)) {
		fail(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	size = st.st_size;
	buf = malloc(size ? size : 1);
	if (!buf) {
		fail(err, errlen, "%s: out of host memory for %zu bytes", path, size);
		goto out;
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0) {
			fail(err, errlen, "%s: file shrank while being read", path);
			goto out;
		}
		got += n;
	}
	if (parse_image(buf, size, expect_machine, expect_class, img, msg, sizeof(msg))) {
		fail(err, errlen, "%s: %s", path, msg);
		memset(img, 0, sizeof(*img));
		goto out;
	}
	adopt(img, buf, buf, size);
	buf = NULL;
out:
	free(buf);
	close(fd);
	return img->buf ? 0 : -1;
}

int ptemu_elf_check_arch(const struct ptemu_arch *arch, const struct ptemu_elf_image *img, char *err,
			 size_t errlen)
{
	uint64_t page = ptemu_page_size(arch);

	for (unsigned i = 0; i < img->nsegments; i++) {
		const struct ptemu_elf_segment *s = &img->segments[i];
		/* The pages the segment maps: its end rounded up, without overflow. */
		uint64_t last_page = (s->vaddr + (s->memsz - 1)) | (page - 1);

		if (arch->va_bits < 64 && last_page > ptemu_task_size(arch) - 1)
			return fail(err, errlen,
				    "segment %u (p_vaddr 0x%" PRIx64 ", p_memsz 0x%" PRIx64
				    ") beyond the user address space of model %s (below 0x%" PRIx64 ")",
				    s->index, s->vaddr, s->memsz, arch->name, ptemu_task_size(arch));
	}
	return arch->check_image ? arch->check_image(img, err, errlen) : 0;
}

int ptemu_elf_load_for(const struct ptemu_arch *arch, const char *path, struct ptemu_elf_image *img,
		       char *err, size_t errlen)
{
	char msg[256];

	if (ptemu_elf_load(path, arch->isa.elf_machine, arch->isa.elf_class, img, err, errlen))
		return -1;
	if (ptemu_elf_check_arch(arch, img, msg, sizeof(msg))) {
		ptemu_elf_free(img);
		return fail(err, errlen, "%s: %s", path, msg);
	}
	return 0;
}

void ptemu_elf_free(struct ptemu_elf_image *img)
{
	free(img->buf);
	memset(img, 0, sizeof(*img));
}
