/* test_program_records.c — rebuilding a program from its LMDB records (daemon/program.c
 * program_from_records), the recovery path, on records a fuzzer found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/program.h"

/* A running sc program of n chains, as certad stores it. */
struct records_fixture {
	Certa__V1__ProgramRecord rec;
	Certa__V1__Program pm;
	Certa__V1__ProgramSpec spec;
	Certa__V1__RequestRecord req[2];
	Certa__V1__ProbePoint probe[2];
	Certa__V1__ProbePoint *probes[2][1];
	Certa__V1__RequestRecord *reqs[2];
};

static void
records_fixture_init(struct records_fixture *f, uint32_t n)
{
	certa__v1__program_record__init(&f->rec);
	certa__v1__program__init(&f->pm);
	certa__v1__program_spec__init(&f->spec);
	f->spec.problem = "What is 2+2?";
	f->spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_SC;
	f->spec.n = n;
	f->spec.token_budget = 1000;
	f->pm.id = "p-1";
	f->pm.tenant = "acme";
	f->pm.spec = &f->spec;
	f->pm.state = CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING;
	f->rec.program = &f->pm;
	f->rec.step_count = 3;
	for (int i = 0; i < 2; i++) {
		certa__v1__request_record__init(&f->req[i]);
		certa__v1__probe_point__init(&f->probe[i]);
		f->probe[i].position = 64;
		f->probe[i].answer = i == 0 ? "4" : "5";
		f->probes[i][0] = &f->probe[i];
		f->req[i].program_id = "p-1";
		f->req[i].index = (uint32_t)i;
		f->req[i].text = i == 0 ? "<think>two and two" : "<think>two plus two";
		f->req[i].tokens = 5;
		f->req[i].answer = (char *)f->probe[i].answer;
		f->req[i].n_probes = 1;
		f->req[i].probes = f->probes[i];
		f->reqs[i] = &f->req[i];
	}
}

static void
test_program_records_restore(void **state)
{
	struct records_fixture f;
	struct program *p;

	(void)state;
	records_fixture_init(&f, 2);
	p = program_from_records(&f.rec, f.reqs, 2);
	assert_non_null(p);
	assert_int_equal(p->n, 2);
	assert_string_equal(p->chains[0].text, "<think>two and two");
	assert_string_equal(p->chains[1].text, "<think>two plus two");
	assert_int_equal(p->chains[1].nprobes, 1);
	assert_string_equal(p->chains[1].probes[0].answer, "5");
	program_free(p);
}

/* Two request records claiming the same chain (a corrupt or misfiled record): the second used
 * to be appended on top of the first (the chain's text doubled) and its probe answers leaked
 * (fuzz_proto, LeakSanitizer).  The program is now refused as inconsistent. */
static void
test_program_records_duplicate_index(void **state)
{
	struct records_fixture f;
	struct program *p;

	(void)state;
	records_fixture_init(&f, 2);
	f.req[1].index = 0;
	p = program_from_records(&f.rec, f.reqs, 2);
	if (p != NULL) {
		fail_msg("duplicate chain index accepted; chain 0 text is \"%s\"", p->chains[0].text);
		program_free(p);
	}
}

/* A request record for a chain the program does not have. */
static void
test_program_records_index_out_of_range(void **state)
{
	struct records_fixture f;

	(void)state;
	records_fixture_init(&f, 2);
	f.req[1].index = 2;
	assert_null(program_from_records(&f.rec, f.reqs, 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_program_records_restore),
		cmocka_unit_test(test_program_records_duplicate_index),
		cmocka_unit_test(test_program_records_index_out_of_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
