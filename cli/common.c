/* What more than one command of the ptemu program uses: the files they write, JSON, and
 * the reports of a machine's run. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ptemu/check.h>
#include <ptemu/stats.h>

#include "cli.h"

void workload_image_path(const struct ptemu_arch *a, const char *workload, char *buf, size_t n)
{
	const char *dir = getenv("PTEMU_WORKLOAD_DIR");

	snprintf(buf, n, "%s/%s/%s.elf", dir ? dir : PTEMU_WORKLOAD_DIR, a->isa.workload_dir, workload);
}

static int cannot_write(const char *path, int err, int status)
{
	fprintf(stderr, "ptemu: cannot write %s: %s\n", path, strerror(err));
	return status;
}

int out_open(struct out_file *o, const char *path, bool keep_open)
{
	struct stat st;
	bool exists = !stat(path, &st);
	mode_t mask;
	int fd;

	*o = (struct out_file){ .path = path };
	if (!strcmp(path, "-")) {
		o->f = stdout;
		return 0;
	}
	if (exists && S_ISDIR(st.st_mode))
		return cannot_write(path, EISDIR, EXIT_USAGE);
	if (exists && !S_ISREG(st.st_mode)) {
		o->f = fopen(path, "w");
		if (!o->f)
			return cannot_write(path, errno, EXIT_USAGE);
		if (!keep_open) {
			fclose(o->f);
			o->f = NULL;
		}
		return 0;
	}
	if (exists && access(path, W_OK))
		return cannot_write(path, errno, EXIT_USAGE);
	if (!(o->tmp = malloc(strlen(path) + 8)))
		return cannot_write(path, ENOMEM, EXIT_INTERNAL);
	sprintf(o->tmp, "%s.XXXXXX", path);
	fd = mkstemp(o->tmp);
	if (fd < 0) {
		int e = errno;

		free(o->tmp);
		o->tmp = NULL;
		return cannot_write(path, e, EXIT_USAGE);
	}
	/* The file it replaces keeps its mode; a new one gets the usual 0666 & ~umask. */
	mask = umask(0);
	umask(mask);
	if (fchmod(fd, exists ? st.st_mode & 07777 : 0666 & ~mask) || !(o->f = fdopen(fd, "w"))) {
		int e = errno;

		close(fd);
		out_discard(o);
		return cannot_write(path, e, EXIT_INTERNAL);
	}
	if (!keep_open) {
		fclose(o->f);
		o->f = NULL;
	}
	return 0;
}

const char *out_write_path(const struct out_file *o)
{
	return o->tmp ? o->tmp : o->path;
}

int out_commit(struct out_file *o)
{
	int err = 0;

	if (o->f) {
		bool failed = ferror(o->f);

		if (o->f == stdout)
			failed |= fflush(stdout) != 0;
		else
			failed |= fclose(o->f) != 0;
		if (failed)
			err = errno ? errno : EIO;
		o->f = NULL;
	}
	if (!err && o->tmp && rename(o->tmp, o->path))
		err = errno;
	if (err) {
		out_discard(o);
		return cannot_write(o->path, err, EXIT_INTERNAL);
	}
	free(o->tmp);
	o->tmp = NULL;
	return 0;
}

void out_discard(struct out_file *o)
{
	if (o->f && o->f != stdout)
		fclose(o->f);
	o->f = NULL;
	if (o->tmp)
		unlink(o->tmp);
	free(o->tmp);
	o->tmp = NULL;
}

FILE *summary_stream(const struct out_file *json)
{
	return json->f == stdout ? stderr : stdout;
}

int json_list_begin(struct out_file *json, const char *path, const char *key, FILE **summary)
{
	int rc;

	if (!path)
		return 0;
	if ((rc = out_open(json, path, true)))
		return rc;
	*summary = summary_stream(json);
	fprintf(json->f, "{\"%s\":[", key);
	return 0;
}

int json_list_end(struct out_file *json, int status)
{
	int rc;

	if (!json->path)
		return status;
	fprintf(json->f, "]}\n");
	rc = out_commit(json);
	return rc ? rc : status;
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void json_run_head(FILE *f, const struct ptemu_machine *m, const char *workload, uint64_t seed,
		   enum ptemu_injection inj)
{
	fprintf(f, "{\"arch\":\"%s\",\"workload\":", m->arch->name);
	json_string(f, workload);
	fprintf(f, ",\"seed\":%" PRIu64 ",\"protocol\":\"%s\",\"reclaim_empty_tables\":%s,\"inject\":",
		seed, ptemu_protocol_name(m->protocol), m->features.reclaim_empty_tables ? "true" : "false");
	json_string(f, injection_name(inj));
	fprintf(f, ",\"result\":\"%s\",\"stats\":{", check_violation_count(m) ? "violation" : "clean");
}

void json_run_tail(FILE *f, const struct ptemu_machine *m)
{
	size_t nv;
	const struct ptemu_violation *v = check_violations(m, &nv);

	for (int k = 0; k < PTEMU_STAT_COUNT; k++)
		fprintf(f, ",\"%s\":%" PRIu64, ptemu_stat_name((enum ptemu_stat)k),
			ptemu_stat_get(&m->stats, (enum ptemu_stat)k));
	fprintf(f, "},\"violation_count\":%" PRIu64 ",\"violations\":[", check_violation_count(m));
	for (size_t i = 0; i < nv; i++) {
		fprintf(f, "%s{\"kind\":\"%s\",\"thread\":", i ? "," : "",
			ptemu_violation_name(v[i].kind));
		json_string(f, v[i].thread_name);
		fprintf(f, ",\"addr\":%" PRIu64 ",\"event\":%" PRIu64 ",\"message\":", v[i].addr,
			v[i].event);
		json_string(f, v[i].message);
		fputc('}', f);
	}
	fprintf(f, "]}");
}

void print_violation_kinds(FILE *out, const struct ptemu_machine *m)
{
	size_t nrec;
	const struct ptemu_violation *rec = check_violations(m, &nrec);
	unsigned kinds_seen = 0;

	for (size_t k = 0; k < nrec; k++) {
		if (kinds_seen & (1u << rec[k].kind))
			continue;
		kinds_seen |= 1u << rec[k].kind;
		fprintf(out, "  %s (x%" PRIu64 ") at event %" PRIu64 " in %s: %s\n",
			ptemu_violation_name(rec[k].kind), check_kind_count(m, rec[k].kind),
			rec[k].event, rec[k].thread_name, rec[k].message);
	}
}

int bench_run(const char *what, const struct ptemu_run_config *cfg, struct ptemu_machine **m,
	      struct ptemu_run_result *r)
{
	enum ptemu_run_error e = ptemu_run(cfg, m, r);

	if (e == PTEMU_RUN_OK && !check_violation_count(*m))
		return 0;
	fprintf(stderr, "ptemu: %s: %s\n", what, e != PTEMU_RUN_OK ? r->message : "violations: the measurement is void");
	if (*m && !r->hung)
		ptemu_machine_destroy(*m);
	return e != PTEMU_RUN_OK ? EXIT_INTERNAL : EXIT_VIOLATIONS;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct spread spread_of(const double *v, unsigned n)
{
	double sorted[BENCH_MAX_REPEAT];

	memcpy(sorted, v, n * sizeof(*v));
	qsort(sorted, n, sizeof(*sorted), cmp_double);
	return (struct spread){
		.median = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
		.lo = sorted[0],
		.hi = sorted[n - 1],
	};
}
