/* The template engine's insides: tokens, the syntax tree the parser builds
 * and the renderer walks, templates and environments, the render state. */
#ifndef VIAL_TEMPLATE_TMPL_H
#define VIAL_TEMPLATE_TMPL_H

#include "template/value.h"

#include <pthread.h>

/* --- lexer ------------------------------------------------------------------ */

enum {
    T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP,
};

typedef struct token {
    int type;
    int line;
    const char *s; /* T_DATA/T_NAME/T_OP: the text; T_STRING: unescaped */
    uint32_t n;
    int64_t i;     /* T_INT (or -1 when it overflows: s holds the digits) */
    double d;
    bool big;
} token;

typedef struct lexer {
    const char *src, *end, *p;
    int line;
    vial_arena *a;
    int in; /* 0 data, T_VAR_BEGIN or T_BLOCK_BEGIN inside a tag */
    bool lstrip_next; /* a '-' closed the previous tag: strip leading space */
    int depth;        /* brackets open inside the tag */
    char err[160];
    int errline;
} lexer;

/* Normalises newlines as Jinja does (\r\n, \r and the other line breaks of
 * str.splitlines become \n; one trailing newline is dropped). */
char *tmpl_normalize(vial_arena *a, const char *src, size_t len, size_t *outlen);
void lex_init(lexer *lx, vial_arena *a, const char *src, size_t len);
int lex_next(lexer *lx, token *t); /* 0, or -1 with lx->err */

/* --- syntax tree ------------------------------------------------------------ */

enum {
    /* statements */
    N_TEXT = 1, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_BLOCK, N_EXTENDS, N_INCLUDE,
    N_IMPORT, N_FROMIMPORT, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_WITH, N_AUTOESCAPE,
    /* expressions */
    N_CONST, N_NAME, N_LIST, N_TUPLE, N_DICT, N_PAIR, N_GETATTR, N_GETITEM, N_SLICE,
    N_CALL, N_KWARG, N_STARARGS, N_STARKW, N_FILTER, N_TEST, N_BINOP, N_NEG, N_POS, N_NOT,
    N_AND, N_OR, N_CMP, N_CMPOP, N_CONDEXPR, N_CONCAT, N_PARAM,
};

enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

typedef struct node node;
typedef struct builtin {
    const char *name;
    void *fn;
} builtin;

struct node {
    uint16_t type;
    uint16_t op; /* operator, or flags */
    int line;
    node *a, *b, *c, *d, *e;
    node *next; /* the next statement / argument / item */
    tv v, w;    /* constants and names */
    const void *fn; /* resolved filter or test */
    struct vial_tmpl *cached; /* extends/include/import of a constant name */
};

/* flags in node.op */
#define F_SCOPED 1        /* block scoped */
#define F_IGNORE_MISSING 1 /* include */
#define F_WITH_CONTEXT 2  /* include/import */
#define F_HAS_WITH 4      /* import: 'with/without context' given */
#define F_RECURSIVE 1     /* for ... recursive */
#define F_ELIF 1          /* an if node that is an elif of the one before */

typedef struct tmpl_block {
    const char *name;
    uint32_t len;
    node *body;
    int scoped;
    struct tmpl_block *next;
} tmpl_block;

struct vial_tmpl {
    vial_tmpl_env *env;
    char *name;
    bool autoescape;
    node *body;
    tmpl_block *blocks;
    vial_arena arena; /* the tree, its strings and the source */
    struct vial_tmpl *next; /* the environment's list */
    char *path;       /* the file it came from (default loader), for reloads */
    int64_t mtime_ns;
    int64_t checked_ns; /* auto reload: when the file was last looked at (monotonic) */
};

struct vial_tmpl_env {
    char **dirs; /* the search path, in order */
    size_t ndirs;
    bool auto_reload;
    int64_t reload_interval_ns; /* auto reload: how often a file is looked at */
    vial_tmpl_loader loader;
    void *loader_data;
    vial_tmpl *templates;
    tv globals; /* dict in arena */
    size_t stack_limit; /* bytes of C stack a render may use */
    vial_arena arena;
    pthread_mutex_t lock;
};

void *tmpl_locale_enter(void);  /* the thread's locale becomes "C"; returns the old */
void tmpl_locale_leave(void *old);
int tmpl_parse(vial_tmpl *t, const char *src, size_t len, vial_tmpl_error *err);
int tmpl_get(vial_tmpl_env *env, const char *name, size_t len, vial_tmpl **out, vial_tmpl_error *err);
void tmpl_set_error(vial_tmpl_error *err, const char *name, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --- rendering -------------------------------------------------------------- */

typedef struct frame {
    struct frame *parent;
    bool hides_loop; /* an include's root: the includer's loop is not seen */
    uint32_t n, cap;
    tv *k, *v;
} frame;

typedef struct blockchain {
    const char *name;
    uint32_t len;
    uint32_t n, cap;
    tmpl_block **lv;     /* child-most first */
    vial_tmpl **owner;
    struct blockchain *next;
} blockchain;

/* One template being rendered (with the templates it extends). */
typedef struct tctx {
    vial_tmpl *t;
    frame *root;     /* the template's context: top-level sets, exports */
    blockchain *blocks;
    vial_tmpl *parent; /* set by extends */
    tv ctx;            /* the caller's context (UNDEF: imported without) */
} tctx;

typedef struct rstate {
    vial_tmpl_env *env;
    const char *stack_base; /* the frame address where the render began */
    vial_arena *a;
    vial_tmpl_out *out;
    int depth;
    bool discard;    /* after extends: top-level output is dropped */
    int8_t ae;       /* inside {% autoescape %}: 0/1, else -1 */
    blockchain *blk; /* the block being rendered (for super()) */
    uint32_t blk_level;
    struct frame *blk_frame; /* the frame the current block was given */
    long steps;      /* guards runaway loops */
    tctx *tc;
    frame *fr;
    node *cur;       /* for error lines */
    vial_tmpl *curt;
    vial_tmpl_error *err;
    bool failed;
    int code;
} rstate;

typedef struct tmacro {
    node *def;      /* N_MACRO (or the caller block) */
    frame *closure;
    tctx *tc;
    bool is_caller;
    int8_t ae;      /* the {% autoescape %} setting where it was defined */
    tv caller;      /* for call blocks: the caller macro */
} tmacro;

typedef struct tloop {
    tlist *items;
    int64_t i;
    int64_t len;
    node *def;       /* the for statement (recursive loops call it again) */
    int depth;
    struct frame *outer;
    bool changed_set;
    tv changed_last; /* loop.changed(): the previous arguments */
} tloop;

typedef struct tblockref {
    blockchain *bc;
    uint32_t level;
    tctx *tc;
} tblockref;

typedef struct tmethod {
    int id;
    tv self;
} tmethod;

int rs_fail(rstate *st, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int eval(rstate *st, node *n, tv *out);
int call_value(rstate *st, tv f, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out);
int iter_list(rstate *st, tv v, tlist **out); /* anything iterable as a list */
int get_attr(rstate *st, tv obj, const char *name, size_t n, tv *out);
int get_item(rstate *st, tv obj, tv key, tv *out);
int write_value(rstate *st, vial_tmpl_out *o, tv v, bool autoescape);
bool cur_autoescape(rstate *st);
bool ctx_autoescape(rstate *st);
tv markup_escape(rstate *st, tv v); /* escape(v): safe string */

const builtin *find_filter(const char *name, size_t n);
const builtin *find_test(const char *name, size_t n);
typedef int (*test_fn)(rstate *st, tv v, int nargs, tv *args, bool *res);
typedef int (*filt_fn)(rstate *st, tv v, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out);
int str_method(rstate *st, tv self, const char *name, size_t n, tv *out);
int call_method(rstate *st, tmethod *m, int nargs, tv *args, tv *kwn, tv *kwv, int nkw, tv *out);
int py_format(rstate *st, tv fmt, int nargs, tv *args, tv *out); /* fmt % args */
int arith(rstate *st, int op, tv a, tv b, tv *out);                /* a OP b, Python's rules */

/* Guards against runaway templates: nesting of macro calls, includes,
 * blocks and extends; statements plus loop iterations per render; bytes a
 * single string repetition or list may build. The fuzzer lowers them. */
#ifndef VIAL_TMPL_MAX_DEPTH
#define VIAL_TMPL_MAX_DEPTH 100
#endif
#ifndef VIAL_TMPL_MAX_STEPS
#define VIAL_TMPL_MAX_STEPS 50000000L
#endif
#ifndef VIAL_TMPL_MAX_BUILD
#define VIAL_TMPL_MAX_BUILD (64L << 20)
#endif
/* C stack a render may use by default: half of vial's 128 KiB coroutine
 * stacks, leaving room for the handler that renders. */
#define VIAL_TMPL_DEFAULT_STACK (64u * 1024)
#define MAX_DEPTH VIAL_TMPL_MAX_DEPTH
#define MAX_STEPS VIAL_TMPL_MAX_STEPS

#endif
