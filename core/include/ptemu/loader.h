/* The ELF loader: parses and validates a guest workload (DESIGN.md section 6).
 *
 * Workloads are static executables linked at a fixed address (ET_EXEC), ELF32 or ELF64,
 * either byte order. The loader only parses: it copies the file, checks every field it
 * uses against the file's size, and describes the PT_LOAD segments; mapping them into a
 * guest mm is the caller's job. No libelf: fields are read byte by byte in the file's
 * byte order, so a hostile file can neither crash it nor make it read out of bounds.
 */
#ifndef PTEMU_LOADER_H
#define PTEMU_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_elf_segment {
	uint64_t vaddr;		/* p_vaddr */
	uint64_t memsz, filesz;	/* filesz <= memsz; the rest is zero-filled (bss) */
	unsigned prot;		/* PTEMU_PROT_READ|WRITE|EXEC from arch.h, from p_flags */
	const uint8_t *data;	/* filesz bytes inside the image buffer */
	unsigned index;		/* the program (or section) header's number, for messages */
};

#define PTEMU_ELF_MAX_SEGMENTS 16

struct ptemu_elf_image {
	uint8_t *buf;
	size_t size;		/* owned copy of the file */
	unsigned elf_class;	/* 32 or 64 */
	bool big_endian;
	unsigned machine;	/* e_machine */
	/* Where vCPUs start: e_entry (on arm, bit 0 set means Thumb), except on ppc64
	 * ELFv1, where e_entry is a function descriptor and this is the code address it
	 * holds. */
	uint64_t entry;
	uint64_t toc;		/* ppc64 ELFv1: r2 from that descriptor; 0 otherwise */
	/* PT_LOAD segments with a non-zero p_memsz, in file order, pairwise disjoint. */
	unsigned nsegments;
	struct ptemu_elf_segment segments[PTEMU_ELF_MAX_SEGMENTS];
	/* The bytes that hold code, for a model's image check: the executable sections
	 * (SHF_EXECINSTR) of the section table, each inside an executable segment's file
	 * data; or, without a section table (or one naming no such section), the file data
	 * of every executable segment. vaddr, filesz (= memsz) and data as for segments. */
	unsigned ncode;
	struct ptemu_elf_segment code[PTEMU_ELF_MAX_SEGMENTS];
	uint64_t hash;		/* FNV-1a 64 over the whole file: names the image in traces */
};

struct ptemu_arch;

/* Parse and validate an in-memory image (copied). expect_machine/expect_class: what the model
 * runs (0 = accept any). Returns 0, or -1 with a one-line message in err naming what is wrong
 * (e.g. "not an ELF file", "truncated program header table", "ELF machine 62 (x86-64) but the
 * model runs EM_S390 (22)", "segment 2 overlaps segment 1" (program header indices, as
 * readelf -l numbers them), "entry point 0x.. outside every executable segment", "no
 * loadable segment"). On failure *img is zeroed, so ptemu_elf_free is always safe. */
int ptemu_elf_parse(const void *data, size_t size, unsigned expect_machine, unsigned expect_class,
		    struct ptemu_elf_image *img, char *err, size_t errlen);

/* Read a regular file then ptemu_elf_parse; errors include the path and strerror for I/O. */
int ptemu_elf_load(const char *path, unsigned expect_machine, unsigned expect_class,
		   struct ptemu_elf_image *img, char *err, size_t errlen);

/* What a model adds to the checks of a parsed image: every segment inside its virtual
 * address space (2^va_bits), and the model's own check_image if it has one. 0, or -1 with
 * a one-line message. */
int ptemu_elf_check_arch(const struct ptemu_arch *arch, const struct ptemu_elf_image *img, char *err,
			 size_t errlen);

/* ptemu_elf_load for the model's ISA, then ptemu_elf_check_arch: an image the model can run.
 * On failure *img is zeroed. */
int ptemu_elf_load_for(const struct ptemu_arch *arch, const char *path, struct ptemu_elf_image *img,
		       char *err, size_t errlen);

void ptemu_elf_free(struct ptemu_elf_image *img);

#ifdef __cplusplus
}
#endif

#endif /* PTEMU_LOADER_H */
