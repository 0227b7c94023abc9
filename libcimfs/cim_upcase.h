/* cim_upcase.h - the upcase table written into every image and used to compare names. */
#ifndef CIM_UPCASE_H
#define CIM_UPCASE_H

#include <stdint.h>

#define CIM_UPCASE_ENTRIES 0x10000

/* The 65536-entry table (built once, thread-safe); never NULL. */
const uint16_t *cim_upcase_table(void);

/* Exposed to Python: the whole table (65536 entries, host byte order), the entry of one
   code unit (for tests), and what the table is (a constant string). */
const uint16_t *CimfsUpcaseTable(void);
uint16_t CimfsTestUpcase(uint16_t unit);
const char *CimfsUpcaseDescription(void);

#endif
