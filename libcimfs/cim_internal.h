/*
 * cim_internal.h - the portable writer's data model, shared by its modules:
 *
 *   cim_namespace.c  the in-memory tree: file objects (one per File record),
 *                    names (directory entries) and interned metadata blobs
 *   cim_region.c     region files being written, object IDs and dedup
 *   cim_stream.c     stream handles: CimWriteStream / CimCloseStream
 *   cim_commit.c     serialization of the namespace at CimCommitImage
 *   cim_load.c       reading an existing image to fork or extend it
 *   cim_image.c      handles, locking and the API entry points
 */
#ifndef CIM_INTERNAL_H
#define CIM_INTERNAL_H

#include "cimfs.h"
#include "cim_format.h"
#include "cim_path.h"
#include "cim_platform.h"
#include "cim_objid.h"
#include "cim_pe.h"

#include <stdlib.h>

/* Every temporary file of a writer starts with this; see cim_portable_create_image. */
#define CIM_TMP_PREFIX ".cimfs-tmp."

/* ---- namespace ----------------------------------------------------------- */

/* An interned SD, EA buffer or reparse buffer; stored once per image. */
typedef struct cim_blob {
    struct cim_blob *next;  /* hash chain */
    uint64_t offset;        /* RegionOffset once written (or inherited from a parent), else 0 */
    uint32_t hash;
    uint32_t len;
    uint8_t kind;           /* CIM_BLOB_*: the on-disk encoding differs per kind */
    uint8_t data[];
} cim_blob;

#define CIM_BLOB_SD 0       /* stored u16-counted */
#define CIM_BLOB_REPARSE 1  /* stored u16-counted */
#define CIM_BLOB_EA 2       /* stored bare, length in File.EaLength */

/* A Stream as it will be written: RegionOffset and LengthAndType. */
typedef struct cim_dstream {
    uint64_t offset;
    uint64_t len_type;
} cim_dstream;

/* A named (alternate) data stream of a file object. */
typedef struct cim_ads {
    struct cim_ads *next;
    cim_dstream stream;
    uint16_t len;
    WCHAR name[];
} cim_ads;

struct cim_entry;

/* A file object: becomes one File record; shared by all its hard links. */
typedef struct cim_node {
    int64_t times[4];           /* creation, last write, change, last access */
    cim_dstream data;           /* primary stream (files) */
    cim_blob *sd, *ea, *reparse;
    cim_ads *ads;
    struct cim_entry *children; /* directories: first entry of an unsorted list */
    struct cim_node *work_next; /* intrusive work lists (deletion, commit queue) */
    struct cim_node *order_prev, *order_next; /* creation order: FileIDs follow it */
    uint32_t nchildren;
    uint32_t nlink;
    uint32_t id;                /* FileID, assigned at commit */
    uint32_t parent_id;
    uint32_t reparse_tag;
    uint16_t flags;             /* FileFlags */
    uint8_t is_dir;
} cim_node;

/* A name in a directory. */
typedef struct cim_entry {
    struct cim_entry *hnext;        /* hash chain */
    struct cim_entry *next, *prev;  /* siblings */
    cim_node *dir, *node;
    uint32_t hash;
    uint16_t len;
    WCHAR name[];
} cim_entry;

typedef struct cim_namespace {
    const uint16_t *up;         /* upcase table */
    cim_node *root;
    int root_created;           /* CimCreateFile gave the root metadata (else: no SD, as Microsoft) */
    cim_node *first, *last;     /* every live node, oldest first (root first) */
    cim_entry **buckets;        /* (directory, upcased name) -> entry */
    size_t nbuckets, nentries;
    cim_blob **blob_buckets;
    size_t nblob_buckets, nblobs;
    size_t nnodes;
} cim_namespace;

HRESULT cim_ns_init(cim_namespace *ns);
void cim_ns_free(cim_namespace *ns);
cim_node *cim_ns_node_new(cim_namespace *ns, int is_dir);
cim_entry *cim_ns_lookup(const cim_namespace *ns, const cim_node *dir, const WCHAR *name, size_t len);
/* Adds name -> node in dir (name must not exist); node->nlink is incremented.
 * cim_ns_entry_new + cim_ns_insert split it so callers can allocate before
 * changing anything. */
HRESULT cim_ns_link(cim_namespace *ns, cim_node *dir, const WCHAR *name, size_t len, cim_node *node);
cim_entry *cim_ns_entry_new(const WCHAR *name, size_t len);
void cim_ns_insert(cim_namespace *ns, cim_node *dir, cim_entry *e, cim_node *node);
/* Frees a node that has no names left (or never had one). */
void cim_ns_free_node(cim_namespace *ns, cim_node *n);
/* Removes a name; the node goes with its last name, a directory with its whole tree. */
void cim_ns_unlink(cim_namespace *ns, cim_entry *e);
/* Interns a metadata blob; *out is shared by every caller with equal bytes. */
HRESULT cim_ns_intern(cim_namespace *ns, uint8_t kind, const void *data, uint32_t len, cim_blob **out);
void cim_ns_free_ads(cim_node *node);

/*
 * Resolves every component but the last of a parsed path.  On success
 * *parent is the directory that holds (or would hold) the last name, and
 * *entry its entry or NULL; for the root, *parent is NULL and *entry NULL.
 * HR(PATH_NOT_FOUND) when an intermediate component is missing or a file.
 */
HRESULT cim_ns_resolve(cim_namespace *ns, const cim_path *p, cim_node **parent, cim_entry **entry,
                       const WCHAR **last, size_t *last_len);

/* ---- regions and object IDs -------------------------------------------- */

typedef struct cim_objid {
    uint64_t length;
    uint8_t digest[CIM_DIGEST_SIZE];
    uint64_t offset;            /* byte offset in the region file */
} cim_objid;

typedef struct cim_writer cim_writer;
typedef struct cim_bufpool cim_bufpool;

typedef struct cim_region {
    cim_file *file;
    cim_writer *writer;         /* writes the full buffers on a helper thread; NULL: the caller does */
    cim_bufpool *pool;          /* where fresh buffers come from while there is a writer */
    cim_nchar *tmp_path, *final_path;
    cim_nchar *objid_tmp_path, *objid_final_path;
    uint64_t end;               /* logical size of the region */
    uint8_t *buf;               /* write-behind buffer holding [buf_start, end) */
    size_t buf_len, buf_cap;
    uint64_t buf_start;
    uint64_t writeback_from;    /* [0, writeback_from) was handed to the OS's writeback */
    uint32_t global_index;
    uint16_t local_index;
    uint8_t type;
    int renamed;                /* RENAMED_* bits: which final names this commit put in place */
    cim_objid *ids;
    size_t nids, ids_cap;
} cim_region;

/* (length, digest) -> RegionOffset of every object in this image and its parents. */
enum cim_dedup_state {
    CIM_DEDUP_TRUSTED,          /* written by this writer */
    CIM_DEDUP_UNVERIFIED,       /* read from a parent's objectid file: checked on first use */
    CIM_DEDUP_DEAD              /* failed that check: never used */
};

typedef struct cim_dedup_slot {
    uint64_t length;
    uint8_t digest[CIM_DIGEST_SIZE];
    uint64_t offset;            /* RegionOffset; 0 = empty slot */
    uint8_t state;
} cim_dedup_slot;

typedef struct cim_dedup {
    cim_dedup_slot *slots;
    size_t cap, count;
} cim_dedup;

HRESULT cim_region_open(cim_region *r, const cim_nchar *dir, const char *guid_text, uint16_t local_index,
                        uint32_t global_index, uint8_t type);
HRESULT cim_region_write(cim_region *r, const void *p, size_t n);
/* As cim_region_write for a buffer of `cap` bytes (from cim_bufpool_get or
 * malloc) the caller is done with: with a writer, a large one goes to it as
 * it is (*taken set; the writer gives it to the pool once written) instead
 * of being copied or written on this thread. */
HRESULT cim_region_write_owned(cim_region *r, uint8_t *p, size_t cap, size_t n, int *taken);
HRESULT cim_region_zeros(cim_region *r, uint64_t n);
HRESULT cim_region_align(cim_region *r, uint64_t alignment);
void cim_region_rewind(cim_region *r, uint64_t to);
/* Flush, pad (data regions to a page multiple), truncate, sync, close. */
HRESULT cim_region_finish(cim_region *r, uint32_t major);
#define RENAMED_REGION 1
#define RENAMED_OBJID 2
/* Moves the region and objectid files to their final names.  keep_existing (a
 * consistent image, whose names come from the content): a final name that
 * already exists holds the same bytes, another image's; it is left alone and
 * never counted as this commit's, so a failed commit cannot remove it. */
HRESULT cim_region_publish(cim_region *r, int keep_existing);
/* The final names of a region's files under another region-set GUID (before publishing). */
HRESULT cim_region_rename_set(cim_region *r, const cim_nchar *dir, const char *guid_text);
HRESULT cim_region_write_objid_file(cim_region *r, uint32_t major);
/* Closes and deletes whatever this region put on disk. */
void cim_region_discard(cim_region *r);
HRESULT cim_region_add_objid(cim_region *r, uint64_t length, const uint8_t *digest, uint64_t offset);

HRESULT cim_dedup_init(cim_dedup *d);
void cim_dedup_free(cim_dedup *d);
/* The live (not dead) slot for a key, or NULL. */
cim_dedup_slot *cim_dedup_find(const cim_dedup *d, uint64_t length, const uint8_t *digest);
HRESULT cim_dedup_add(cim_dedup *d, uint64_t length, const uint8_t *digest, uint64_t region_offset,
                      enum cim_dedup_state state);

/* ---- the image ------------------------------------------------------------ */

enum cim_image_state { CIM_STATE_OPEN, CIM_STATE_COMMITTED, CIM_STATE_FAILED };

/* A closed stream waiting for its object ID (cim_defer.c). */
typedef struct cim_deferred_stream {
    cim_node *node;
    cim_ads *ads;               /* or NULL for the primary stream */
    int large;                  /* data region (else small-data region) */
    uint8_t *bytes;             /* the stored bytes (PE layout applied), owned */
    size_t bytes_cap;           /* their buffer's size, for cim_bufpool_put */
    uint64_t length;            /* how many */
    uint64_t capacity;          /* the stream's logical length */
    cim_pe_layout *pe;          /* owned copy for a PE-image stream, else NULL */
} cim_deferred_stream;

typedef struct cim_defer cim_defer;
typedef struct cim_deferred cim_deferred;

/* Streams up to this size are hashed on helper threads (cim_defer.c). */
#define CIM_DEFER_MAX (32u << 20)

typedef struct cim_stream_state {
    int open;
    uintptr_t token;
    cim_node *node;
    cim_ads *ads;               /* target alternate stream, or NULL for the primary */
    int is_dir;
    int sparse_ok;              /* SPARSE_FILE attribute: never written => sparse */
    uint64_t capacity, written;
    cim_region *region;
    uint64_t pre_align;         /* region end before this stream's alignment padding */
    uint64_t start;             /* byte offset of the data in the region */
    cim_objid_ctx digest;       /* object ID of the bytes stored so far */
    cim_offload *offload;       /* hashes large writes beside the region write; NULL: inline */
    int deferred;               /* stored bytes go to `buf`, hashed and placed later (cim_defer.c) */
    int large;                  /* the data region (else small data) */
    uint8_t *buf;
    size_t buf_len, buf_cap;
    /* PE-image streams (cim_pe.h): a file's first bytes wait in `probe`
     * until its headers say whether it is stored laid out for mapping. */
    int pe_state;               /* CIM_PE_OFF, CIM_PE_PROBING or CIM_PE_ON */
    uint8_t *probe;             /* CIM_PE_PROBE_MAX bytes, allocated on first use */
    size_t probe_len, probe_need;
    uint64_t pe_in;             /* file bytes stored so far (CIM_PE_ON) */
    uint32_t pe_run;            /* the layout run they are in */
    cim_pe_layout pe;
} cim_stream_state;

#define CIM_PE_OFF 0
#define CIM_PE_PROBING 1
#define CIM_PE_ON 2

typedef struct cim_region_set {
    uint8_t guid[16];
    uint16_t count;
} cim_region_set;

typedef struct cim_image {
    cim_mutex *mutex;
    uint32_t refs;              /* guarded by the global lock */
    int user_closed;            /* CimCloseImage was called */
    enum cim_image_state state;
    uintptr_t token;
    cim_nchar *dir;
    cim_nchar *image_path;      /* final .cim path */
    cim_nchar *image_tmp_path;
    cim_dir_lock *lock;
    uint8_t guid[16];
    char guid_text[40];
    cim_namespace ns;
    uint32_t format_major;      /* 1, 2 (default) or 3: docs/format.md §18 */
    int expand_pe;              /* store PE files as PE-image streams (no CIM_CREATE_DO_NOT_EXPAND_PE_IMAGES) */
    int consistent;             /* CIM_CREATE_IMAGE_CONSISTENT_CIM: the region-set GUID comes from the content */
    uint32_t threads;           /* CimfsSetWriterThreads: 1 = the caller's thread only, 0 = default */
    cim_offload *offload;       /* created on the first large stream unless threads == 1 */
    cim_defer *defer;           /* helper threads hashing closed streams; NULL: none yet */
    cim_writer *writer;         /* writes region buffers; started with `defer`, NULL: none */
    cim_bufpool *pool;          /* buffers of queued streams and regions, used again; NULL: malloc */
    cim_region regions[CIM_REGIONS_PER_SET];
    int regions_open;
    cim_region_set *parent_sets;
    uint16_t nparent_sets;
    uint32_t parent_region_count;
    cim_file **parent_files;    /* open read-only for the writer's life (dedup checks) */
    uint64_t *parent_sizes;
    cim_dedup dedup;
    cim_stream_state stream;
    HRESULT io_error;           /* first I/O failure while streaming; commit reports it */
} cim_image;

/* cim_stream.c */
HRESULT cim_stream_begin(cim_image *img, cim_node *node, cim_ads *ads, uint64_t capacity, int sparse_ok);
HRESULT cim_stream_write(cim_image *img, const void *buf, uint32_t n);
/* Finishes the open stream (zero fill, dedup) and stores it in its node/ADS. */
HRESULT cim_stream_finish(cim_image *img);
/* Drops the open stream's data (it reads as zeros) without writing anything. */
void cim_stream_abort(cim_image *img);
/* A deferred stream's region effects, now that its digest is known; or, after a failure, none. */
HRESULT cim_stream_place(cim_image *img, cim_deferred_stream *s, const uint8_t *digest); /* may take s->bytes */
void cim_stream_store_empty(cim_image *img, const cim_deferred_stream *s);

/* cim_writer.c: region writes on a helper thread.  submit takes over
 * `bytes` (back to the pool once written, or at once after a failure); wait returns
 * once everything submitted is written, with the first failure; stop also
 * ends the thread and detaches it from the regions. */
cim_writer *cim_writer_new(cim_bufpool *pool);
HRESULT cim_writer_submit(cim_writer *w, cim_file *f, uint8_t *bytes, size_t cap, size_t length, uint64_t offset,
                          uint64_t writeback_from, uint64_t writeback_length);
HRESULT cim_writer_wait(cim_writer *w);
HRESULT cim_writer_free(cim_writer *w);
void cim_writer_start(cim_image *img);            /* unless threads == 1; without threads, no-op */
HRESULT cim_writer_stop(cim_image *img);

/* cim_bufpool.c: large buffers used again (thread-safe).  get returns at
 * least n bytes and their buffer's size in *cap; put takes a buffer from
 * get, malloc or realloc with its size.  A NULL pool is plain malloc/free. */
cim_bufpool *cim_bufpool_new(void);
void cim_bufpool_free(cim_bufpool *p);
uint8_t *cim_bufpool_get(cim_bufpool *p, size_t n, size_t *cap);
void cim_bufpool_put(cim_bufpool *p, uint8_t *b, size_t cap);

/* cim_defer.c */
int cim_defer_enabled(cim_image *img);           /* starts the helpers if the image may use them */
HRESULT cim_defer_stream(cim_image *img, const cim_deferred_stream *s); /* takes over its buffers */
HRESULT cim_defer_blob(cim_image *img, cim_blob *b);  /* cim_put_blob, in turn behind queued streams */
int cim_defer_pending(const cim_image *img);
void cim_defer_drain(cim_image *img);            /* everything queued is placed on return */
void cim_defer_free(cim_image *img);             /* stops the helpers; drops what is queued */
uint64_t cim_empty_stream_offset(const cim_image *img);

/*
 * RegionOffset of an object with this length and digest already in the image
 * or a parent, or 0.  Entries inherited from a parent's objectid file are
 * trusted only after their bytes were read back and hashed (once): the
 * driver never reads objectid files, so they may be stale or damaged, and
 * trusting a wrong one would silently give new content someone else's bytes.
 */
uint64_t cim_dedup_lookup(cim_image *img, uint64_t length, const uint8_t *digest);
/* Records an object just written at byte offset `start` of region r: its
 * objectid entry, and its place in the dedup index. */
HRESULT cim_dedup_remember(cim_image *img, cim_region *r, uint64_t length, const uint8_t *digest, uint64_t start);

/* cim_commit.c */
HRESULT cim_commit(cim_image *img);
/* Writes one object (deduplicated) and returns its RegionOffset. */
HRESULT cim_put_object(cim_image *img, cim_region *r, const void *p, size_t n, uint64_t alignment,
                       uint64_t *out);

/* Writes an interned SD, EA or reparse buffer (once; deduplicated) and returns its RegionOffset (0 for NULL). */
HRESULT cim_put_blob(cim_image *img, cim_blob *b, uint64_t *out);
#define CIM_NULL_DACL_SD_SIZE 20
extern const uint8_t cim_null_dacl_sd[CIM_NULL_DACL_SD_SIZE];

/* cim_load.c: fills img->ns, parent sets and dedup from the committed image `name`. */
HRESULT cim_load_image(cim_image *img, const cim_nchar *image_path);

void cim_guid_text(const uint8_t guid[16], char out[40]);

#endif
