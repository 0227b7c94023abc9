/*
 * cim_namespace.c - the in-memory tree of an image being written.
 *
 * Names live in one hash table keyed by (directory, upcased name), so a
 * lookup costs one hash of the name whatever the directory's size; siblings
 * are also kept on an unsorted list that the commit sorts once.
 */
#include "cim_internal.h"
#include "cim_upcase.h"

#define CIM_INITIAL_BUCKETS 1024

static size_t bucket_of(const cim_namespace *ns, const cim_node *dir, uint32_t name_hash)
{
    uint64_t h = (uint64_t)(uintptr_t)dir * UINT64_C(0x9E3779B97F4A7C15) ^ name_hash;
    h ^= h >> 29;
    return (size_t)(h & (ns->nbuckets - 1));
}

HRESULT cim_ns_init(cim_namespace *ns)
{
    memset(ns, 0, sizeof *ns);
    ns->up = cim_upcase_table();
    ns->nbuckets = CIM_INITIAL_BUCKETS;
    ns->buckets = (cim_entry **)calloc(ns->nbuckets, sizeof *ns->buckets);
    ns->nblob_buckets = 64;
    ns->blob_buckets = (cim_blob **)calloc(ns->nblob_buckets, sizeof *ns->blob_buckets);
    ns->root = cim_ns_node_new(ns, 1);
    if (!ns->buckets || !ns->blob_buckets || !ns->root) {
        cim_ns_free(ns);
        return CIMFS_E_OUTOFMEMORY;
    }
    ns->root->nlink = 1;
    return CIMFS_S_OK;
}

cim_node *cim_ns_node_new(cim_namespace *ns, int is_dir)
{
    cim_node *n = (cim_node *)calloc(1, sizeof *n);
    if (!n) return NULL;
    n->is_dir = (uint8_t)(is_dir != 0);
    n->order_prev = ns->last;
    if (ns->last) ns->last->order_next = n;
    else ns->first = n;
    ns->last = n;
    ns->nnodes++;
    return n;
}

void cim_ns_free_ads(cim_node *node)
{
    cim_ads *a = node->ads;
    while (a) {
        cim_ads *next = a->next;
        free(a);
        a = next;
    }
    node->ads = NULL;
}

void cim_ns_free_node(cim_namespace *ns, cim_node *n)
{
    cim_ns_free_ads(n);
    if (n->order_prev) n->order_prev->order_next = n->order_next;
    else ns->first = n->order_next;
    if (n->order_next) n->order_next->order_prev = n->order_prev;
    else ns->last = n->order_prev;
    free(n);
    ns->nnodes--;
}

cim_entry *cim_ns_lookup(const cim_namespace *ns, const cim_node *dir, const WCHAR *name, size_t len)
{
    uint32_t h = cim_name_hash(ns->up, name, len);
    cim_entry *e = ns->buckets[bucket_of(ns, dir, h)];
    for (; e; e = e->hnext)
        if (e->dir == dir && e->hash == h && cim_name_equal(ns->up, e->name, e->len, name, len)) return e;
    return NULL;
}

static void grow_buckets(cim_namespace *ns)
{
    size_t newn = ns->nbuckets * 2, i;
    cim_entry **nb = (cim_entry **)calloc(newn, sizeof *nb);
    cim_entry **old = ns->buckets;
    size_t oldn = ns->nbuckets;
    if (!nb) return; /* keep the smaller table: slower, still correct */
    ns->buckets = nb;
    ns->nbuckets = newn;
    for (i = 0; i < oldn; i++) {
        cim_entry *e = old[i];
        while (e) {
            cim_entry *next = e->hnext;
            size_t b = bucket_of(ns, e->dir, e->hash);
            e->hnext = nb[b];
            nb[b] = e;
            e = next;
        }
    }
    free(old);
}

cim_entry *cim_ns_entry_new(const WCHAR *name, size_t len)
{
    cim_entry *e = (cim_entry *)malloc(sizeof *e + len * sizeof(WCHAR));
    if (!e) return NULL;
    memcpy(e->name, name, len * sizeof(WCHAR));
    e->len = (uint16_t)len;
    return e;
}

void cim_ns_insert(cim_namespace *ns, cim_node *dir, cim_entry *e, cim_node *node)
{
    size_t b;
    e->dir = dir;
    e->node = node;
    e->hash = cim_name_hash(ns->up, e->name, e->len);
    if (ns->nentries >= ns->nbuckets) grow_buckets(ns);
    b = bucket_of(ns, dir, e->hash);
    e->hnext = ns->buckets[b];
    ns->buckets[b] = e;
    e->prev = NULL;
    e->next = dir->children;
    if (dir->children) dir->children->prev = e;
    dir->children = e;
    dir->nchildren++;
    node->nlink++;
    ns->nentries++;
}

HRESULT cim_ns_link(cim_namespace *ns, cim_node *dir, const WCHAR *name, size_t len, cim_node *node)
{
    cim_entry *e = cim_ns_entry_new(name, len);
    if (!e) return CIMFS_E_OUTOFMEMORY;
    cim_ns_insert(ns, dir, e, node);
    return CIMFS_S_OK;
}

/* Detaches an entry from its directory and the hash table, and frees it. */
static cim_node *detach(cim_namespace *ns, cim_entry *e)
{
    cim_entry **pp = &ns->buckets[bucket_of(ns, e->dir, e->hash)];
    cim_node *n = e->node;
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->prev) e->prev->next = e->next;
    else e->dir->children = e->next;
    if (e->next) e->next->prev = e->prev;
    e->dir->nchildren--;
    ns->nentries--;
    free(e);
    n->nlink--;
    return n;
}

void cim_ns_unlink(cim_namespace *ns, cim_entry *e)
{
    cim_node *n = detach(ns, e), *work;
    if (n->nlink > 0) return;
    if (!n->is_dir) {
        cim_ns_free_node(ns, n);
        return;
    }
    /* Free a directory tree without recursion: a work list of directories
     * whose entries still have to be detached. */
    n->work_next = NULL;
    work = n;
    while (work) {
        cim_node *d = work;
        work = d->work_next;
        while (d->children) {
            cim_node *c = detach(ns, d->children);
            if (c->nlink > 0) continue; /* another name of this file survives elsewhere */
            if (c->is_dir) {
                c->work_next = work;
                work = c;
            } else {
                cim_ns_free_node(ns, c);
            }
        }
        cim_ns_free_node(ns, d);
    }
}

HRESULT cim_ns_intern(cim_namespace *ns, uint8_t kind, const void *data, uint32_t len, cim_blob **out)
{
    const uint8_t *bytes = (const uint8_t *)data;
    uint32_t h = 2166136261u ^ kind; /* FNV-1a: a table hash; memcmp confirms every match */
    cim_blob *b;
    size_t i;
    for (i = 0; i < len; i++) h = (h ^ bytes[i]) * 16777619u;
    for (b = ns->blob_buckets[h & (ns->nblob_buckets - 1)]; b; b = b->next)
        if (b->hash == h && b->kind == kind && b->len == len && memcmp(b->data, data, len) == 0) {
            *out = b;
            return CIMFS_S_OK;
        }
    if (ns->nblobs >= ns->nblob_buckets) {
        size_t newn = ns->nblob_buckets * 2;
        cim_blob **nb = (cim_blob **)calloc(newn, sizeof *nb);
        if (nb) {
            for (i = 0; i < ns->nblob_buckets; i++) {
                cim_blob *x = ns->blob_buckets[i];
                while (x) {
                    cim_blob *next = x->next;
                    x->next = nb[x->hash & (newn - 1)];
                    nb[x->hash & (newn - 1)] = x;
                    x = next;
                }
            }
            free(ns->blob_buckets);
            ns->blob_buckets = nb;
            ns->nblob_buckets = newn;
        }
    }
    b = (cim_blob *)malloc(sizeof *b + len);
    if (!b) return CIMFS_E_OUTOFMEMORY;
    memcpy(b->data, data, len);
    b->len = len;
    b->kind = kind;
    b->hash = h;
    b->offset = 0;
    b->next = ns->blob_buckets[h & (ns->nblob_buckets - 1)];
    ns->blob_buckets[h & (ns->nblob_buckets - 1)] = b;
    ns->nblobs++;
    *out = b;
    return CIMFS_S_OK;
}

HRESULT cim_ns_resolve(cim_namespace *ns, const cim_path *p, cim_node **parent, cim_entry **entry,
                       const WCHAR **last, size_t *last_len)
{
    cim_node *dir = ns->root;
    size_t pos = 0;
    const WCHAR *name;
    size_t len;
    *parent = NULL;
    *entry = NULL;
    *last = NULL;
    *last_len = 0;
    if (p->file_len == 0) return CIMFS_S_OK;
    while (cim_path_next(p, &pos, &name, &len)) {
        cim_entry *e;
        if (pos > p->file_len) { /* last component */
            *parent = dir;
            *entry = cim_ns_lookup(ns, dir, name, len);
            *last = name;
            *last_len = len;
            return CIMFS_S_OK;
        }
        e = cim_ns_lookup(ns, dir, name, len);
        if (!e || !e->node->is_dir) return CIMFS_HR_PATH_NOT_FOUND;
        dir = e->node;
    }
    return CIMFS_E_INVALIDARG; /* not reached for a parsed path */
}

void cim_ns_free(cim_namespace *ns)
{
    size_t i;
    if (ns->buckets) {
        for (i = 0; i < ns->nbuckets; i++) {
            cim_entry *e = ns->buckets[i];
            while (e) {
                cim_entry *next = e->hnext;
                cim_node *n = e->node;
                if (--n->nlink == 0) cim_ns_free_node(ns, n);
                free(e);
                e = next;
            }
        }
        free(ns->buckets);
    }
    if (ns->root) cim_ns_free_node(ns, ns->root);
    if (ns->blob_buckets) {
        for (i = 0; i < ns->nblob_buckets; i++) {
            cim_blob *b = ns->blob_buckets[i];
            while (b) {
                cim_blob *next = b->next;
                free(b);
                b = next;
            }
        }
        free(ns->blob_buckets);
    }
    memset(ns, 0, sizeof *ns);
}
