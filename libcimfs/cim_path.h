/*
 * cim_path.h - image relative paths and names: parsing, validation and the
 * case-insensitive comparison the format uses (docs/format.md §11.3).
 */
#ifndef CIM_PATH_H
#define CIM_PATH_H

#include "cimfs.h"

#define CIM_MAX_PATH_UNITS 32767
#define CIM_MAX_NAME_UNITS 255

/* Flags for cim_path_parse. */
#define CIM_PATH_ALLOW_ROOT      0x1u /* "" and "\" name the root directory */
#define CIM_PATH_ALLOW_STREAM    0x2u /* "path:name[:$DATA]" is accepted */
#define CIM_PATH_REQUIRE_STREAM  0x4u /* ... and required */

typedef struct cim_path {
    const WCHAR *file;        /* the file part, leading '\' stripped */
    size_t file_len;          /* units; 0 = root */
    const WCHAR *stream;      /* stream name (no ':' and no ":$DATA"), or NULL */
    size_t stream_len;
} cim_path;

/* Validates `path` completely (never reads past its NUL or past 32768 units).
 * Returns S_OK or E_INVALIDARG. */
HRESULT cim_path_parse(PCWSTR path, unsigned flags, cim_path *out);

/* Iterates components: *pos starts at 0; returns 0 when done. */
int cim_path_next(const cim_path *p, size_t *pos, const WCHAR **name, size_t *len);

/* 1 when `name` is a valid file or stream name (1..255 units, no '\', '/',
 * ':', < > " | ? *, controls or unpaired surrogates, not "." or ".."). */
int cim_name_valid(const WCHAR *name, size_t len);

/* Case-insensitive hash, equality and order under upcase table `up`. */
uint32_t cim_name_hash(const uint16_t *up, const WCHAR *name, size_t len);
int cim_name_equal(const uint16_t *up, const WCHAR *a, size_t alen, const WCHAR *b, size_t blen);
/* docs/format.md §11.3: upcased BMP units and whole supplementary code points, in order. */
int cim_name_compare(const uint16_t *up, const WCHAR *a, size_t alen, const WCHAR *b, size_t blen);

#endif
