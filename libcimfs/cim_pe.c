/* cim_pe.c - PE-image stream layout (see cim_pe.h). */
#include "cim_pe.h"
#include "cim_format.h"

#define MZ_LFANEW 0x3C
#define PE_FILE_HEADER 4          /* after the "PE\0\0" signature */
#define PE_OPTIONAL_HEADER 24
#define PE_SECTION_SIZE 40
#define PE32_MAGIC 0x10B
#define PE32PLUS_MAGIC 0x20B

static int power_of_two(uint32_t x) { return x != 0 && (x & (x - 1)) == 0; }

static uint64_t page_up(uint64_t x) { return (x + CIM_PAGE - 1) & ~(uint64_t)(CIM_PAGE - 1); }

typedef struct raw_range {
    uint64_t start, size;
} raw_range;

/* Sections with raw data, sorted by file position; 0 when they overlap or leave the file. */
static uint32_t section_ranges(const uint8_t *table, uint32_t nsec, uint64_t headers_end, uint64_t file_length,
                               raw_range *out)
{
    uint32_t i, n = 0;
    for (i = 0; i < nsec; i++) {
        const uint8_t *s = table + (size_t)i * PE_SECTION_SIZE;
        uint64_t size = cim_get32(s + 16), start = cim_get32(s + 20);
        uint32_t j;
        if (size == 0) continue; /* uninitialized data: nothing in the file */
        if (start < headers_end || size > file_length || start > file_length - size) return 0;
        for (j = n; j > 0 && out[j - 1].start > start; j--) out[j] = out[j - 1]; /* insertion sort */
        out[j].start = start;
        out[j].size = size;
        n++;
    }
    for (i = 1; i < n; i++)
        if (out[i - 1].start + out[i - 1].size > out[i].start) return 0;
    return n;
}

enum cim_pe_verdict cim_pe_plan(const uint8_t *head, size_t have, uint64_t file_length, size_t *need,
                                cim_pe_layout *out)
{
    uint64_t limit = file_length < CIM_PE_PROBE_MAX ? file_length : CIM_PE_PROBE_MAX;
    uint32_t lfanew, nsec, optsz, section_align, file_align, i, n;
    uint64_t table, table_end, last_end;
    raw_range ranges[CIM_PE_MAX_SECTIONS];
    const uint8_t *opt;

    *need = 0;
    if (file_length > CIM_PE_MAX_FILE) return CIM_PE_PLAIN;
    if (have < 2) return limit >= 2 ? (*need = 2, CIM_PE_NEED_MORE) : CIM_PE_PLAIN;
    if (head[0] != 'M' || head[1] != 'Z') return CIM_PE_PLAIN;
    if (have < 0x40) return limit >= 0x40 ? (*need = 0x40, CIM_PE_NEED_MORE) : CIM_PE_PLAIN;
    lfanew = cim_get32(head + MZ_LFANEW);
    if (lfanew < 0x40 || (uint64_t)lfanew + PE_OPTIONAL_HEADER + 64 > limit) return CIM_PE_PLAIN;
    if (have < (uint64_t)lfanew + PE_OPTIONAL_HEADER + 64) {
        *need = (size_t)lfanew + PE_OPTIONAL_HEADER + 64;
        return CIM_PE_NEED_MORE;
    }
    if (head[lfanew] != 'P' || head[lfanew + 1] != 'E' || head[lfanew + 2] != 0 || head[lfanew + 3] != 0)
        return CIM_PE_PLAIN;
    nsec = cim_get16(head + lfanew + PE_FILE_HEADER + 2);
    optsz = cim_get16(head + lfanew + PE_FILE_HEADER + 16);
    opt = head + lfanew + PE_OPTIONAL_HEADER;
    if (nsec == 0 || nsec > CIM_PE_MAX_SECTIONS || optsz < 64) return CIM_PE_PLAIN;
    if (cim_get16(opt) != PE32_MAGIC && cim_get16(opt) != PE32PLUS_MAGIC) return CIM_PE_PLAIN;
    section_align = cim_get32(opt + 32);
    file_align = cim_get32(opt + 36);
    /* Image mapping in 4 KiB pages of a file aligned to at least 512 bytes. */
    if (!power_of_two(section_align) || section_align < CIM_PAGE || !power_of_two(file_align) ||
        file_align < 512 || file_align > section_align)
        return CIM_PE_PLAIN;
    table = (uint64_t)lfanew + PE_OPTIONAL_HEADER + optsz;
    table_end = table + (uint64_t)nsec * PE_SECTION_SIZE;
    if (table_end > limit) return CIM_PE_PLAIN;
    if (have < table_end) {
        *need = (size_t)table_end;
        return CIM_PE_NEED_MORE;
    }
    n = section_ranges(head + table, nsec, table_end, file_length, ranges);
    if (n == 0) return CIM_PE_PLAIN;

    out->image_length = cim_get32(opt + 56);
    out->file_length = file_length;
    out->runs[0].file_offset = 0; /* the headers, in place */
    out->runs[0].stored_offset = 0;
    out->nruns = 1;
    for (i = 0; i < n; i++) {
        const cim_pe_run *prev = &out->runs[out->nruns - 1];
        out->runs[out->nruns].file_offset = ranges[i].start;
        out->runs[out->nruns].stored_offset = page_up(prev->stored_offset + (ranges[i].start - prev->file_offset));
        out->nruns++;
    }
    last_end = ranges[n - 1].start + ranges[n - 1].size;
    if (file_length > last_end) { /* trailing data: certificates, overlays */
        const cim_pe_run *prev = &out->runs[out->nruns - 1];
        out->runs[out->nruns].file_offset = last_end;
        out->runs[out->nruns].stored_offset = page_up(prev->stored_offset + (last_end - prev->file_offset));
        out->nruns++;
        prev = &out->runs[out->nruns - 1];
        out->stored_length = prev->stored_offset + (file_length - prev->file_offset);
    } else {
        const cim_pe_run *prev = &out->runs[out->nruns - 1];
        out->stored_length = page_up(prev->stored_offset + (file_length - prev->file_offset));
    }
    return CIM_PE_IMAGE;
}

size_t cim_pe_descriptor(const cim_pe_layout *layout, uint64_t data_offset, uint8_t *out)
{
    uint64_t delta = 0;
    uint32_t i;
    uint16_t count = 0;
    for (i = 1; i < layout->nruns; i++) {
        uint64_t d = layout->runs[i].stored_offset - layout->runs[i].file_offset;
        if (d == delta) continue; /* same delta: the reader's run simply goes on */
        cim_put32(out + CIM_PEIMAGE_SIZE + (size_t)count * CIM_PEMAPPING_SIZE, (uint32_t)layout->runs[i].file_offset);
        cim_put32(out + CIM_PEIMAGE_SIZE + (size_t)count * CIM_PEMAPPING_SIZE + 4, (uint32_t)d);
        delta = d;
        count++;
    }
    cim_put64(out, data_offset);
    cim_put64(out + 8, layout->stored_length);
    cim_put32(out + 16, layout->image_length);
    cim_put16(out + 20, count);
    cim_put16(out + 22, CIM_PE_FLAG_VALID_IMAGE);
    return CIM_PEIMAGE_SIZE + (size_t)count * CIM_PEMAPPING_SIZE;
}

int CimfsTestPeLayout(const uint8_t *file, size_t length, uint64_t *stored_length, uint32_t *mapping_count)
{
    uint8_t descriptor[CIM_PEIMAGE_SIZE + CIM_PEMAPPING_SIZE * CIM_PE_MAX_RUNS];
    cim_pe_layout layout;
    size_t need;
    enum cim_pe_verdict v = cim_pe_plan(file, length < CIM_PE_PROBE_MAX ? length : CIM_PE_PROBE_MAX, length, &need,
                                        &layout);
    if (v != CIM_PE_IMAGE) return (int)v;
    *stored_length = layout.stored_length;
    *mapping_count = (uint32_t)((cim_pe_descriptor(&layout, 0, descriptor) - CIM_PEIMAGE_SIZE) / CIM_PEMAPPING_SIZE);
    return (int)v;
}
