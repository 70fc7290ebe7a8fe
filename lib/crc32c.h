/*
 * crc32c.h — CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the checksum of
 * iSCSI, ext4 metadata and LevelDB/RocksDB blocks.  zlib only has the IEEE CRC-32; store/ uses
 * this one beside every stored record because it detects more error patterns in short messages.
 *
 * On x86-64 CPUs with SSE4.2 (checked at run time) the crc32 instruction does 8 bytes per
 * step; elsewhere a portable table (one byte per step, a constant 256-entry table).  Check value: crc32c_update(0, "123456789", 9) == 0xE3069283.
 * Threads: pure, any thread.
 */
#ifndef CERTA_LIB_CRC32C_H
#define CERTA_LIB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Returns the CRC-32C of `len` bytes at `buf` continued from `crc`, the value returned for the
 * bytes before (0 to start), like zlib's crc32(): crc32c_update(crc32c_update(0, a, n), b, m)
 * equals the CRC of a followed by b.  `buf` may be NULL when len is 0.
 */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);

/* The portable table path alone (same result), for tests and machines without SSE4.2. */
uint32_t crc32c_update_sw(uint32_t crc, const void *buf, size_t len);

/* 1 when crc32c_update uses the SSE4.2 instruction on this CPU, else 0. */
int crc32c_hw_available(void);

#endif
