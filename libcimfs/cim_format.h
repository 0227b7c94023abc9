/*
 * cim_format.h - constants and little-endian helpers for the classic CIM
 * on-disk format, versions 1.0-3.0 (docs/format.md).  Sizes and offsets
 * here are facts of the format; the writer layout we chose is in cim_commit.c.
 */
#ifndef CIM_FORMAT_H
#define CIM_FORMAT_H

#include <stdint.h>
#include <string.h>

#define CIM_MAGIC "cimfile0"           /* 8 bytes, no NUL on disk */
#define CIM_VERSION_MAJOR 2            /* what we write by default (docs/format.md §18) */
#define CIM_VERSION_MINOR 0
#define CIM_VERSION_MAJOR_MIN 1        /* 1.0: 88-byte File records, no sparse streams */
#define CIM_VERSION_MAJOR_MAX 3

/* Values Microsoft's writer puts in fields older readers call reserved
 * (docs/format.md §17; their meaning is unknown, 7 may be a mask of the
 * three region types).  Only the .cim carries them. */
#define CIM_IMAGE_RESERVED_0D 1        /* u8 at 0x0D: 1 or 2 in Microsoft's images */
#define CIM_IMAGE_RESERVED_18 7        /* u64 at 0x18 */
#define CIM_IMAGE_RESERVED_40 7        /* u32 at 0x40 */

/* CommonHeader.Type */
#define CIM_FT_IMAGE 0
#define CIM_FT_REGION 1
#define CIM_FT_OBJECTID 2

/* RegionHeader.Type; our three regions use local indexes in this order. */
#define CIM_RT_METADATA 0
#define CIM_RT_DATA 1
#define CIM_RT_SMALL_DATA 2
#define CIM_REGIONS_PER_SET 3

#define CIM_COMMON_HEADER_SIZE 32
#define CIM_REGION_HEADER_SIZE 40
#define CIM_OBJID_HEADER_SIZE 48
#define CIM_OBJID_ENTRY_SIZE 40
#define CIM_FS_HEADER_SIZE 72
#define CIM_REGION_SET_SIZE 24
#define CIM_FILESYSTEM_SIZE 24
#define CIM_FTDE_SIZE 16              /* FileTableDirectoryEntry */
#define CIM_STREAM_SIZE 16
#define CIM_FILE_SIZE 96              /* File record, v2/v3 */
#define CIM_FILE_SIZE_V1 88
#define CIM_PEIMAGE_SIZE 24
#define CIM_PEMAPPING_SIZE 8
#define CIM_FILES_PER_TABLE 1024
#define CIM_UPCASE_TABLE_SIZE (0x10000 * 2)
#define CIM_PAGE 4096

/* RegionOffset: region index in bits 48..63, byte offset in bits 0..47; 0 is null. */
#define CIM_OFFSET_BITS 48
#define CIM_OFFSET_MASK ((UINT64_C(1) << CIM_OFFSET_BITS) - 1)
#define CIM_MAX_STREAM_LENGTH CIM_OFFSET_MASK
#define CIM_OFFSET(index, bytes) (((uint64_t)(index) << CIM_OFFSET_BITS) | (uint64_t)(bytes))
#define CIM_OFFSET_INDEX(o) ((uint32_t)((o) >> CIM_OFFSET_BITS))
#define CIM_OFFSET_BYTES(o) ((o) & CIM_OFFSET_MASK)

/* Stream.LengthAndType */
#define CIM_STREAM_DATA 0
#define CIM_STREAM_LINK_TABLE 1
#define CIM_STREAM_PE_IMAGE 2
#define CIM_STREAM_SPARSE (UINT64_C(1) << 56)
#define CIM_STREAM_LEN(lt) ((lt) & CIM_OFFSET_MASK)
#define CIM_STREAM_TYPE(lt) ((unsigned)(((lt) >> 48) & 0xFF))
#define CIM_STREAM_LT(len, type) ((uint64_t)(len) | ((uint64_t)(type) << 48))

/* File.Flags */
#define CIM_FF_READONLY 0x0001
#define CIM_FF_HIDDEN 0x0002
#define CIM_FF_SYSTEM 0x0004
#define CIM_FF_ARCHIVE 0x0008
#define CIM_FF_SPARSE 0x0010

/* Limits that bound valid API arguments (docs/api.md §2.8). */
#define CIM_MAX_COUNTED_BLOB 0xFFFF   /* SD, reparse buffer, whole EA buffer */
#define CIM_MAX_EA_NAME 254

static inline void cim_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void cim_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void cim_put64(uint8_t *p, uint64_t v)
{
    cim_put32(p, (uint32_t)v);
    cim_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t cim_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t cim_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t cim_get64(const uint8_t *p) { return cim_get32(p) | (uint64_t)cim_get32(p + 4) << 32; }

/* CommonHeader (32 bytes) at p. */
static inline void cim_put_common_header(uint8_t *p, uint32_t header_length, uint8_t type, uint32_t major)
{
    memset(p, 0, CIM_COMMON_HEADER_SIZE);
    memcpy(p, CIM_MAGIC, 8);
    cim_put32(p + 8, header_length);
    p[12] = type;
    cim_put32(p + 16, major);
    cim_put32(p + 20, CIM_VERSION_MINOR);
}

/* File record size of a format version. */
static inline uint32_t cim_file_record_size(uint32_t major) { return major == 1 ? CIM_FILE_SIZE_V1 : CIM_FILE_SIZE; }

/* GUID (16 bytes) in Windows in-memory layout. */
static inline void cim_put_guid(uint8_t *p, const uint8_t guid_bytes[16]) { memcpy(p, guid_bytes, 16); }

#endif
