/* cim_upcase.h - the upcase table written into every image and used to compare names. */
#ifndef CIM_UPCASE_H
#define CIM_UPCASE_H

#include <stdint.h>

#define CIM_UPCASE_ENTRIES 0x10000

/* The 65536-entry table (built once, thread-safe); never NULL. */
const uint16_t *cim_upcase_table(void);

/* Exposed for tests: the table entry of one code unit, and the Unicode version. */
uint16_t CimfsTestUpcase(uint16_t unit);
const char *CimfsUpcaseUnicodeVersion(void);

#endif
