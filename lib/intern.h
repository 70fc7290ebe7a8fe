/*
 * intern.h — process-wide interned strings: one copy per distinct value, so equal strings
 * compare equal by pointer.
 *
 * For the few distinct values that hot loops compare many times (a program's tenant name:
 * the dispatch pass groups thousands of ready programs by tenant).  The copies live until
 * intern_free (at exit; tests): distinct values are never forgotten, so intern only what is
 * bounded (tenant names, model names), never ids.  Any thread (one lock).
 */
#ifndef CERTA_LIB_INTERN_H
#define CERTA_LIB_INTERN_H

/* The interned copy of s (equal strings give the same pointer); NULL on ENOMEM. */
const char *intern_str(const char *s);

/* Distinct strings interned so far. */
unsigned long intern_count(void);

/* Frees every interned copy (pointers from intern_str become invalid).  Only when nothing
 * uses them any more: at exit, between tests. */
void intern_free(void);

#endif
