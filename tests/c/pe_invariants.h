/*
 * pe_invariants.h - what every PE layout the planner returns must satisfy (shared by the
 * mutation loop tests/c/fuzz_pe.c and the libFuzzer harness tests/fuzz/fuzz_pe_plan.c):
 * runs ascending in both file and stored offsets, stored runs on page boundaries, no run
 * overlapping the next, a stored length covering the file, a descriptor that fits.
 */
#ifndef PE_INVARIANTS_H
#define PE_INVARIANTS_H

#include "cim_format.h"
#include "cim_pe.h"

static int check_layout(const cim_pe_layout *L, uint64_t file_length)
{
    uint8_t descriptor[CIM_PEIMAGE_SIZE + CIM_PEMAPPING_SIZE * CIM_PE_MAX_RUNS];
    uint32_t i;
    size_t size;
    if (L->nruns < 2 || L->nruns > CIM_PE_MAX_RUNS || L->runs[0].file_offset != 0 || L->runs[0].stored_offset != 0)
        return 0;
    for (i = 1; i < L->nruns; i++) {
        const cim_pe_run *a = &L->runs[i - 1], *b = &L->runs[i];
        if (b->file_offset <= a->file_offset || b->file_offset > file_length) return 0;
        if (b->stored_offset % CIM_PAGE != 0) return 0;
        if (b->stored_offset < a->stored_offset + (b->file_offset - a->file_offset)) return 0; /* overlap */
    }
    if (L->stored_length < L->runs[L->nruns - 1].stored_offset + (file_length - L->runs[L->nruns - 1].file_offset))
        return 0;
    size = cim_pe_descriptor(L, CIM_OFFSET(1, CIM_PAGE), descriptor);
    return size >= CIM_PEIMAGE_SIZE && size <= sizeof descriptor && cim_get64(descriptor + 8) == L->stored_length;
}

/* Offers the planner growing prefixes of `file`, as the writer does while a file streams in;
 * returns 1 if it behaved (need within bounds, layouts consistent), 0 if not. */
static int plan_behaves(const uint8_t *file, size_t len, uint64_t file_length, int *qualified)
{
    size_t have = 0, need = 0;
    cim_pe_layout layout;
    *qualified = 0;
    for (;;) {
        enum cim_pe_verdict v = cim_pe_plan(file, have, file_length, &need, &layout);
        if (v == CIM_PE_NEED_MORE) {
            if (need <= have || need > CIM_PE_PROBE_MAX || need > file_length) return 0;
            if (need > len) return 1; /* the file ends first: stored plain */
            have = need;
            continue;
        }
        if (v == CIM_PE_IMAGE) {
            *qualified = 1;
            return check_layout(&layout, file_length);
        }
        return 1;
    }
}

#endif
