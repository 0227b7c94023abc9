/*
 * fuzz_pe_plan.c - libFuzzer harness for the PE layout planner (libcimfs/cim_pe.c), the parser
 * that decides from a file's first bytes whether it is stored as a PE-image stream.
 * The input is the start of a file; its claimed length is the input's length, and again the
 * value of its last 8 bytes (a file longer than what was read).  See .ci/fuzz.sh.
 */
#include "pe_invariants.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t have = size < CIM_PE_PROBE_MAX ? size : CIM_PE_PROBE_MAX;
    int qualified;
    if (!plan_behaves(data, have, size, &qualified)) abort();
    if (size >= 8) {
        uint64_t claimed = cim_get64(data + size - 8) & ((UINT64_C(1) << 34) - 1);
        if (claimed >= have && !plan_behaves(data, have, claimed, &qualified)) abort();
    }
    return 0;
}
