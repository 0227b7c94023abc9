/* cim_path.c - parsing and comparing image relative paths and names. */
#include "cim_path.h"

static int is_high(uint16_t c) { return c >= 0xD800 && c <= 0xDBFF; }
static int is_low(uint16_t c) { return c >= 0xDC00 && c <= 0xDFFF; }

int cim_name_valid(const WCHAR *name, size_t len)
{
    size_t i;
    if (len == 0 || len > CIM_MAX_NAME_UNITS) return 0;
    if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'))) return 0;
    for (i = 0; i < len; i++) {
        uint16_t c = name[i];
        if (c < 0x20) return 0;
        switch (c) {
        case '\\': case '/': case ':': case '<': case '>': case '"': case '|': case '?': case '*':
            return 0;
        default: break;
        }
        if (is_high(c)) {
            if (i + 1 >= len || !is_low(name[i + 1])) return 0;
            i++;
        } else if (is_low(c)) {
            return 0;
        }
    }
    return 1;
}

static int ascii_ieq(const WCHAR *s, const char *lit, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint16_t c = s[i];
        if (c >= 'a' && c <= 'z') c = (uint16_t)(c - 32);
        if (c != (uint16_t)lit[i]) return 0;
    }
    return 1;
}

HRESULT cim_path_parse(PCWSTR path, unsigned flags, cim_path *out)
{
    size_t n = 0, colon = (size_t)-1, i, start;
    if (!path) return CIMFS_E_INVALIDARG;
    while (n <= CIM_MAX_PATH_UNITS && path[n]) {
        if (path[n] == ':' && colon == (size_t)-1) colon = n;
        n++;
    }
    if (n > CIM_MAX_PATH_UNITS) return CIMFS_E_INVALIDARG;
    start = (n > 0 && path[0] == '\\') ? 1 : 0;
    out->file = path + start;
    out->stream = NULL;
    out->stream_len = 0;
    if (colon != (size_t)-1) {
        const WCHAR *s = path + colon + 1;
        size_t slen = n - colon - 1, second = slen;
        if (!(flags & CIM_PATH_ALLOW_STREAM)) return CIMFS_E_INVALIDARG;
        for (i = 0; i < slen; i++)
            if (s[i] == ':') {
                second = i;
                break;
            }
        if (second != slen) {
            /* Only the data stream type may follow: "name:$DATA". */
            if (slen - second - 1 != 5 || !ascii_ieq(s + second + 1, "$DATA", 5)) return CIMFS_E_INVALIDARG;
        }
        if (!cim_name_valid(s, second)) return CIMFS_E_INVALIDARG;
        out->stream = s;
        out->stream_len = second;
        n = colon;
    } else if (flags & CIM_PATH_REQUIRE_STREAM) {
        return CIMFS_E_INVALIDARG;
    }
    out->file_len = n - start;
    if (out->file_len == 0) {
        /* The root: allowed only where the caller says so, and never with a stream. */
        return (flags & CIM_PATH_ALLOW_ROOT) && !out->stream ? CIMFS_S_OK : CIMFS_E_INVALIDARG;
    }
    /* Every component, including the last (so a trailing '\' fails), must be a valid name. */
    {
        const WCHAR *f = out->file;
        size_t begin = 0;
        for (i = 0; i <= out->file_len; i++) {
            if (i == out->file_len || f[i] == '\\') {
                if (!cim_name_valid(f + begin, i - begin)) return CIMFS_E_INVALIDARG;
                begin = i + 1;
            }
        }
    }
    return CIMFS_S_OK;
}

int cim_path_next(const cim_path *p, size_t *pos, const WCHAR **name, size_t *len)
{
    size_t i = *pos;
    if (i >= p->file_len) return 0;
    *name = p->file + i;
    while (i < p->file_len && p->file[i] != '\\') i++;
    *len = (size_t)(p->file + i - *name);
    *pos = i + 1;
    return 1;
}

uint32_t cim_name_hash(const uint16_t *up, const WCHAR *name, size_t len)
{
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < len; i++) {
        uint16_t c = up[name[i]];
        h = (h ^ (c & 0xFF)) * 16777619u;
        h = (h ^ (c >> 8)) * 16777619u;
    }
    return h;
}

int cim_name_equal(const uint16_t *up, const WCHAR *a, size_t alen, const WCHAR *b, size_t blen)
{
    size_t i;
    if (alen != blen) return 0;
    for (i = 0; i < alen; i++)
        if (a[i] != b[i] && up[a[i]] != up[b[i]]) return 0;
    return 1;
}

/* Next comparison key of a name: an upcased BMP unit or a supplementary code point. */
static uint32_t key_at(const uint16_t *up, const WCHAR *s, size_t len, size_t *i)
{
    uint16_t c = s[*i];
    if (is_high(c) && *i + 1 < len && is_low(s[*i + 1])) {
        uint32_t cp = 0x10000u + ((uint32_t)(c - 0xD800) << 10) + (uint32_t)(s[*i + 1] - 0xDC00);
        *i += 2;
        return cp;
    }
    *i += 1;
    return up[c];
}

int cim_name_compare(const uint16_t *up, const WCHAR *a, size_t alen, const WCHAR *b, size_t blen)
{
    size_t i = 0, j = 0;
    while (i < alen && j < blen) {
        uint32_t x = key_at(up, a, alen, &i), y = key_at(up, b, blen, &j);
        if (x != y) return x < y ? -1 : 1;
    }
    if (i < alen) return 1;
    if (j < blen) return -1;
    return 0;
}
