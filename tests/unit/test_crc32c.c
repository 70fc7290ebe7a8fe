/* test_crc32c.c — unit tests of lib/crc32c: standard check values, chaining, the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/crc32c.h"

/* The check value of the CRC catalogue (CRC-32/ISCSI) and RFC 3720 B.4 test vectors. */
static void
test_check_values(void **state)
{
	unsigned char buf[32];
	size_t i;

	(void)state;
	assert_int_equal(crc32c_update(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_update(0, NULL, 0), 0);
	memset(buf, 0, sizeof buf);
	assert_int_equal(crc32c_update(0, buf, sizeof buf), 0x8A9136AAu);
	memset(buf, 0xff, sizeof buf);
	assert_int_equal(crc32c_update(0, buf, sizeof buf), 0x62A8AB43u);
	for (i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)i;
	assert_int_equal(crc32c_update(0, buf, sizeof buf), 0x46DD794Eu);
}

/* Feeding the bytes in pieces gives the CRC of the whole, at every split point. */
static void
test_chaining(void **state)
{
	const char *s = "The quick brown fox jumps over the lazy dog";
	size_t n = strlen(s), i;
	uint32_t whole = crc32c_update(0, s, n);

	(void)state;
	assert_int_equal(whole, 0x22620404u);
	for (i = 0; i <= n; i++)
		assert_int_equal(crc32c_update(crc32c_update(0, s, i), s + i, n - i), whole);
}

/* Every single-bit flip of a record-sized buffer changes the CRC. */
static void
test_single_bit_flips_detected(void **state)
{
	unsigned char buf[256];
	uint32_t ref;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 37u + 11u);
	ref = crc32c_update(0, buf, sizeof buf);
	for (i = 0; i < sizeof buf * 8; i++) {
		buf[i / 8] ^= (unsigned char)(1u << (i % 8));
		assert_int_not_equal(crc32c_update(0, buf, sizeof buf), ref);
		buf[i / 8] ^= (unsigned char)(1u << (i % 8));
	}
}

/* The hardware path (when this CPU has one) equals the table at every length and alignment,
 * chained or not. */
static void
test_hw_matches_table(void **state)
{
	unsigned char buf[300];
	size_t off, len;

	(void)state;
	print_message("crc32c: sse4.2 path %s\n", crc32c_hw_available() ? "in use" : "absent");
	for (off = 0; off < sizeof buf; off++)
		buf[off] = (unsigned char)(off * 151u + 7u);
	assert_int_equal(crc32c_update_sw(0, "123456789", 9), 0xE3069283u);
	for (off = 0; off < 9; off++)
		for (len = 0; off + len <= 280; len++) {
			uint32_t sw = crc32c_update_sw(0x12345678u, buf + off, len);
			assert_int_equal(crc32c_update(0x12345678u, buf + off, len), sw);
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_values),
		cmocka_unit_test(test_chaining),
		cmocka_unit_test(test_single_bit_flips_detected),
		cmocka_unit_test(test_hw_matches_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
