/*
 * cim_pe.h - PE-image streams: which files Windows' writer stores laid out
 * for image mapping, and how (docs/format.md §10, §14.2).
 *
 * A qualifying PE file is stored as runs: the headers at stored offset 0,
 * then each section's raw data (with any bytes up to the next section) and
 * any trailing data (signature, overlay), each run starting on a 4 KiB page
 * after the previous one.  Readers undo this through the PeImage mappings
 * {FileOffset, Delta}: one per run whose delta (stored - file offset)
 * differs from the run before it.  This reproduces, byte for byte, every PE
 * stream in the images Microsoft's writer made.
 */
#ifndef CIM_PE_H
#define CIM_PE_H

#include <stddef.h>
#include <stdint.h>

#define CIM_PE_MAX_SECTIONS 96               /* the Windows loader's limit */
#define CIM_PE_MAX_RUNS (CIM_PE_MAX_SECTIONS + 2)
#define CIM_PE_PROBE_MAX (64 * 1024)         /* headers must lie in the file's first 64 KiB */
#define CIM_PE_MAX_FILE (UINT64_C(1) << 31)  /* mapping fields are 32-bit */
#define CIM_PE_FLAG_VALID_IMAGE 0x0001       /* PeImage.Flags in every Microsoft-made stream */

typedef struct cim_pe_run {
    uint64_t file_offset;   /* the run covers [file_offset, next run's file_offset or file end) */
    uint64_t stored_offset; /* where it starts in the stored layout */
} cim_pe_run;

typedef struct cim_pe_layout {
    uint32_t image_length;  /* OptionalHeader.SizeOfImage */
    uint32_t nruns;
    uint64_t file_length;
    uint64_t stored_length; /* PeImage.DataLength */
    cim_pe_run runs[CIM_PE_MAX_RUNS];
} cim_pe_layout;

enum cim_pe_verdict { CIM_PE_PLAIN = 0, CIM_PE_IMAGE = 1, CIM_PE_NEED_MORE = 2 };

/*
 * Decides from the first `have` bytes of a file of `file_length` bytes.
 * CIM_PE_NEED_MORE (with *need set, never more than CIM_PE_PROBE_MAX or
 * file_length) when the headers end beyond `have`; CIM_PE_IMAGE with *out
 * filled for a well-formed PE image; CIM_PE_PLAIN for anything else, which
 * is then stored as plain data.  Reads only head[0..have).
 */
enum cim_pe_verdict cim_pe_plan(const uint8_t *head, size_t have, uint64_t file_length, size_t *need,
                                cim_pe_layout *out);

/* The PeImage descriptor (24 bytes + 8 per mapping) for a layout whose
 * stored bytes sit at RegionOffset data_offset; returns its size.  `out`
 * must hold 24 + 8 * CIM_PE_MAX_RUNS bytes. */
size_t cim_pe_descriptor(const cim_pe_layout *layout, uint64_t data_offset, uint8_t *out);

/* Exposed for the test suite: the layout's verdict and sizes for a whole file. */
int CimfsTestPeLayout(const uint8_t *file, size_t length, uint64_t *stored_length, uint32_t *mapping_count);

#endif
