/* The template parser: tokens to a syntax tree, following Jinja's grammar
 * (operator precedence, filters and tests binding to the unary operand,
 * tuples without parentheses). Filters and tests are resolved here, so an
 * unknown one is a load-time error as in Jinja. */
#include "template/tmpl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEST 120

typedef struct parser {
    vial_tmpl *t;
    vial_arena *a;
    token *tk;
    int n, pos;
    int nest;
    bool failed;
    vial_tmpl_error *err;
    const char *const *ends; /* the end tags the innermost body waits for */
    const char *tag;         /* and the tag it belongs to */
} parser;

void tmpl_set_error(vial_tmpl_error *err, const char *name, int line, const char *fmt, ...)
{
    if (!err)
        return;
    snprintf(err->name, sizeof err->name, "%s", name ? name : "<template>");
    err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static token *cur(parser *p) { return &p->tk[p->pos]; }
static token *peek(parser *p, int k) { return &p->tk[p->pos + k < p->n ? p->pos + k : p->n - 1]; }
static void adv(parser *p) { if (p->pos < p->n - 1) p->pos++; }

static void *perr(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *perr(parser *p, const char *fmt, ...)
{
    if (p->failed)
        return NULL;
    p->failed = true;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tmpl_set_error(p->err, p->t->name, cur(p)->line, "%s", msg);
    return NULL;
}

static bool is_op(token *t, const char *op)
{
    size_t n = strlen(op);
    return t->type == T_OP && t->n == n && memcmp(t->s, op, n) == 0;
}
static bool is_name(token *t, const char *nm)
{
    size_t n = strlen(nm);
    return t->type == T_NAME && t->n == n && memcmp(t->s, nm, n) == 0;
}

static const char *tok_desc(token *t, char *buf, size_t cap)
{
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_END: return "end of statement block";
    case T_VAR_BEGIN: return "begin of print statement";
    case T_BLOCK_BEGIN: return "begin of statement block";
    case T_DATA: return "template data";
    case T_STRING: return "string";
    default:
        snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
        return buf;
    }
}

static void *unexpected(parser *p)
{
    char b[64];
    return perr(p, "unexpected %s", tok_desc(cur(p), b, sizeof b));
}

static bool expect_op(parser *p, const char *op)
{
    if (is_op(cur(p), op)) {
        adv(p);
        return true;
    }
    char b[64];
    perr(p, "expected token '%s', got %s", op, tok_desc(cur(p), b, sizeof b));
    return false;
}

static bool expect_type(parser *p, int type)
{
    if (cur(p)->type == type) {
        adv(p);
        return true;
    }
    char b[64];
    perr(p, "expected token '%s', got %s",
         type == T_BLOCK_END ? "end of statement block" : type == T_VAR_END ? "end of print statement" : "name",
         tok_desc(cur(p), b, sizeof b));
    return false;
}

static node *mk(parser *p, int type, int line)
{
    node *n = vial_arena_alloc(p->a, sizeof *n);
    if (!n)
        return perr(p, "out of memory");
    memset(n, 0, sizeof *n);
    n->type = (uint16_t)type;
    n->line = line;
    return n;
}

static node *expr(parser *p);
static node *expr_nocond(parser *p);
static node *unary(parser *p, bool with_filter);
static node *tuple_expr(parser *p, bool with_condexpr, const char *extra_end, bool explicit_paren);

static bool tuple_end(parser *p, const char *extra)
{
    token *t = cur(p);
    if (t->type == T_VAR_END || t->type == T_BLOCK_END || is_op(t, ")") || t->type == T_EOF)
        return true;
    return extra && is_name(t, extra);
}

/* call arguments after '(' up to ')' into a list (KWARG, STARARGS, STARKW) */
static node *call_args(parser *p)
{
    node *head = NULL, **tail = &head;
    if (!expect_op(p, "("))
        return NULL;
    bool first = true;
    while (!is_op(cur(p), ")")) {
        if (!first && !expect_op(p, ","))
            return NULL;
        if (is_op(cur(p), ")"))
            break;
        first = false;
        node *a;
        int line = cur(p)->line;
        if (is_op(cur(p), "*") || is_op(cur(p), "**")) {
            int ty = cur(p)->n == 1 ? N_STARARGS : N_STARKW;
            adv(p);
            if (!(a = mk(p, ty, line)) || !(a->a = expr(p)))
                return NULL;
        } else if (cur(p)->type == T_NAME && is_op(peek(p, 1), "=")) {
            if (!(a = mk(p, N_KWARG, line)))
                return NULL;
            a->v = tv_str(cur(p)->s, cur(p)->n);
            adv(p);
            adv(p);
            if (!(a->a = expr(p)))
                return NULL;
        } else if (!(a = expr(p))) {
            return NULL;
        }
        *tail = a;
        tail = &a->next;
    }
    adv(p);
    return head ? head : (p->failed ? NULL : head);
}

static node *make_call(parser *p, node *callee)
{
    node *c = mk(p, N_CALL, cur(p)->line);
    if (!c)
        return NULL;
    c->a = callee;
    c->b = call_args(p);
    return p->failed ? NULL : c;
}

static node *subscript_item(parser *p)
{
    int line = cur(p)->line;
    node *args[3] = {0};
    bool slice = false;
    if (!is_op(cur(p), ":")) {
        if (!(args[0] = expr(p)))
            return NULL;
        if (!is_op(cur(p), ":"))
            return args[0];
    }
    slice = true;
    adv(p); /* ':' */
    if (!is_op(cur(p), "]") && !is_op(cur(p), ",") && !is_op(cur(p), ":"))
        if (!(args[1] = expr(p)))
            return NULL;
    if (is_op(cur(p), ":")) {
        adv(p);
        if (!is_op(cur(p), "]") && !is_op(cur(p), ","))
            if (!(args[2] = expr(p)))
                return NULL;
    }
    node *s = mk(p, N_SLICE, line);
    if (!s)
        return NULL;
    s->b = args[0];
    s->c = args[1];
    s->d = args[2];
    (void)slice;
    return s;
}

static node *postfix(parser *p, node *n)
{
    for (;;) {
        token *t = cur(p);
        int line = t->line;
        if (is_op(t, ".")) {
            adv(p);
            token *k = cur(p);
            node *g;
            if (k->type == T_NAME) {
                if (!(g = mk(p, N_GETATTR, line)))
                    return NULL;
                g->v = tv_str(k->s, k->n);
            } else if (k->type == T_INT) {
                if (!(g = mk(p, N_GETITEM, line)) || !(g->b = mk(p, N_CONST, line)))
                    return NULL;
                g->b->v = tv_int(k->i);
            } else {
                return perr(p, "expected name or number");
            }
            adv(p);
            g->a = n;
            n = g;
        } else if (is_op(t, "[")) {
            adv(p);
            node *items = NULL, **tail = &items;
            int cnt = 0;
            while (!is_op(cur(p), "]")) {
                if (cnt && !expect_op(p, ","))
                    return NULL;
                if (is_op(cur(p), "]"))
                    break;
                node *it = subscript_item(p);
                if (!it)
                    return NULL;
                *tail = it;
                tail = &it->next;
                cnt++;
            }
            adv(p);
            if (cnt == 0)
                return perr(p, "expected subscript expression");
            node *g;
            if (items->type == N_SLICE && cnt == 1) {
                g = items;
                g->a = n;
            } else {
                if (!(g = mk(p, N_GETITEM, line)))
                    return NULL;
                g->a = n;
                if (cnt == 1) {
                    g->b = items;
                } else {
                    if (!(g->b = mk(p, N_TUPLE, line)))
                        return NULL;
                    g->b->a = items;
                }
            }
            n = g;
        } else if (is_op(t, "(")) {
            if (!(n = make_call(p, n)))
                return NULL;
        } else {
            return n;
        }
    }
}

static node *filter_one(parser *p, node *subject)
{
    /* at the name after '|' */
    token *t = cur(p);
    if (t->type != T_NAME)
        return unexpected(p);
    node *f = mk(p, N_FILTER, t->line);
    if (!f)
        return NULL;
    f->v = tv_str(t->s, t->n);
    const builtin *b = find_filter(t->s, t->n);
    if (!b)
        return perr(p, "No filter named '%.*s'.", (int)t->n, t->s);
    f->fn = b;
    adv(p);
    f->a = subject;
    if (is_op(cur(p), "(")) {
        f->b = call_args(p);
        if (p->failed)
            return NULL;
    }
    return f;
}

static node *filter_expr(parser *p, node *n)
{
    for (;;) {
        token *t = cur(p);
        if (is_op(t, "|")) {
            adv(p);
            if (!(n = filter_one(p, n)))
                return NULL;
        } else if (is_name(t, "is")) {
            int line = t->line;
            adv(p);
            bool neg = false;
            if (is_name(cur(p), "not"))
                neg = true, adv(p);
            token *nm = cur(p);
            if (nm->type != T_NAME)
                return unexpected(p);
            node *tst = mk(p, N_TEST, line);
            if (!tst)
                return NULL;
            tst->v = tv_str(nm->s, nm->n);
            const builtin *b = find_test(nm->s, nm->n);
            if (!b)
                return perr(p, "No test named '%.*s'.", (int)nm->n, nm->s);
            tst->fn = b;
            tst->a = n;
            adv(p);
            token *k = cur(p);
            if (is_op(k, "(")) {
                tst->b = call_args(p);
                if (p->failed)
                    return NULL;
            } else if ((k->type == T_NAME || k->type == T_STRING || k->type == T_INT ||
                        k->type == T_FLOAT || is_op(k, "[") || is_op(k, "{")) &&
                       !is_name(k, "else") && !is_name(k, "or") && !is_name(k, "and")) {
                if (is_name(k, "is"))
                    return perr(p, "You cannot chain multiple tests with is");
                node *arg = unary(p, false);
                if (!arg)
                    return NULL;
                tst->b = arg;
            }
            n = tst;
            if (neg) {
                node *nt = mk(p, N_NOT, line);
                if (!nt)
                    return NULL;
                nt->a = n;
                n = nt;
            }
        } else if (is_op(t, "(")) {
            if (!(n = make_call(p, n)))
                return NULL;
        } else {
            return n;
        }
    }
}

static node *primary(parser *p)
{
    token *t = cur(p);
    int line = t->line;
    node *n;
    if (t->type == T_NAME) {
        if (!(n = mk(p, N_CONST, line)))
            return NULL;
        if (is_name(t, "true") || is_name(t, "True"))
            n->v = tv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False"))
            n->v = tv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None"))
            n->v = TV(TV_NONE);
        else {
            n->type = N_NAME;
            n->v = tv_str(t->s, t->n);
        }
        adv(p);
        return n;
    }
    if (t->type == T_STRING) {
        if (!(n = mk(p, N_CONST, line)))
            return NULL;
        n->v = tv_str(t->s, t->n);
        adv(p);
        while (cur(p)->type == T_STRING) {
            size_t a = n->v.len, b = cur(p)->n;
            char *s = vial_arena_alloc(p->a, a + b + 1);
            if (!s)
                return perr(p, "out of memory");
            if (a)
                memcpy(s, n->v.u.s, a);
            if (b)
                memcpy(s + a, cur(p)->s, b);
            n->v = tv_str(s, a + b);
            adv(p);
        }
        return n;
    }
    if (t->type == T_INT || t->type == T_FLOAT) {
        if (!(n = mk(p, N_CONST, line)))
            return NULL;
        if (t->type == T_FLOAT)
            n->v = tv_float(t->d);
        else if (t->big)
            n->v = (tv){.kind = TV_BIGINT, .len = t->n, .u.s = t->s};
        else
            n->v = tv_int(t->i);
        adv(p);
        return n;
    }
    if (is_op(t, "(")) {
        adv(p);
        n = tuple_expr(p, true, NULL, true);
        if (!n || !expect_op(p, ")"))
            return NULL;
        return n;
    }
    if (is_op(t, "[") || is_op(t, "{")) {
        bool dict = t->s[0] == '{';
        const char *close = dict ? "}" : "]";
        adv(p);
        if (!(n = mk(p, dict ? N_DICT : N_LIST, line)))
            return NULL;
        node **tail = &n->a;
        bool first = true;
        while (!is_op(cur(p), close)) {
            if (!first && !expect_op(p, ","))
                return NULL;
            if (is_op(cur(p), close))
                break;
            first = false;
            node *it;
            if (dict) {
                if (!(it = mk(p, N_PAIR, cur(p)->line)) || !(it->a = expr(p)) || !expect_op(p, ":") ||
                    !(it->b = expr(p)))
                    return NULL;
            } else if (!(it = expr(p))) {
                return NULL;
            }
            *tail = it;
            tail = &it->next;
        }
        adv(p);
        return n;
    }
    return unexpected(p);
}

static node *unary(parser *p, bool with_filter)
{
    if (++p->nest > MAX_NEST)
        return perr(p, "expression nested too deeply");
    token *t = cur(p);
    node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        int ty = t->s[0] == '-' ? N_NEG : N_POS;
        adv(p);
        if (!(n = mk(p, ty, t->line)) || !(n->a = unary(p, false)))
            return NULL;
    } else if (!(n = primary(p))) {
        return NULL;
    }
    if (!(n = postfix(p, n)))
        return NULL;
    if (with_filter && !(n = filter_expr(p, n)))
        return NULL;
    p->nest--;
    return n;
}

static node *binop(parser *p, int op, node *l, node *r, int line)
{
    node *n = mk(p, op == 0 ? N_CONCAT : N_BINOP, line);
    if (!n)
        return NULL;
    n->op = (uint16_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static node *pow_expr(parser *p)
{
    node *l = unary(p, true);
    while (l && is_op(cur(p), "**")) {
        int line = cur(p)->line;
        adv(p);
        node *r = unary(p, true);
        if (!r)
            return NULL;
        l = binop(p, OP_POW, l, r, line);
    }
    return l;
}

static node *math2(parser *p)
{
    node *l = pow_expr(p);
    for (;;) {
        if (!l)
            return NULL;
        token *t = cur(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
               : is_op(t, "%") ? OP_MOD : 0;
        if (!op)
            return l;
        adv(p);
        node *r = pow_expr(p);
        if (!r)
            return NULL;
        l = binop(p, op, l, r, t->line);
    }
}

static node *concat(parser *p)
{
    node *l = math2(p);
    while (l && is_op(cur(p), "~")) {
        int line = cur(p)->line;
        adv(p);
        node *r = math2(p);
        if (!r)
            return NULL;
        l = binop(p, 0, l, r, line);
    }
    return l;
}

static node *math1(parser *p)
{
    node *l = concat(p);
    for (;;) {
        if (!l)
            return NULL;
        token *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op)
            return l;
        adv(p);
        node *r = concat(p);
        if (!r)
            return NULL;
        l = binop(p, op, l, r, t->line);
    }
}

static node *compare(parser *p)
{
    int line = cur(p)->line;
    node *first = math1(p);
    if (!first)
        return NULL;
    node *ops = NULL, **tail = &ops;
    for (;;) {
        token *t = cur(p);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT
               : is_op(t, "<=") ? OP_LE : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE : 0;
        if (op) {
            adv(p);
        } else if (is_name(t, "in")) {
            op = OP_IN;
            adv(p);
        } else if (is_name(t, "not") && is_name(peek(p, 1), "in")) {
            op = OP_NOTIN;
            adv(p);
            adv(p);
        } else {
            break;
        }
        node *c = mk(p, N_CMPOP, t->line);
        if (!c || !(c->a = math1(p)))
            return NULL;
        c->op = (uint16_t)op;
        *tail = c;
        tail = &c->next;
    }
    if (!ops)
        return first;
    node *n = mk(p, N_CMP, line);
    if (!n)
        return NULL;
    n->a = first;
    n->b = ops;
    return n;
}

static node *not_expr(parser *p)
{
    if (is_name(cur(p), "not")) {
        int line = cur(p)->line;
        adv(p);
        if (++p->nest > MAX_NEST)
            return perr(p, "expression nested too deeply");
        node *n = mk(p, N_NOT, line);
        if (!n || !(n->a = not_expr(p)))
            return NULL;
        p->nest--;
        return n;
    }
    return compare(p);
}

/* A left-associative chain of operands joined by the keyword word. */
static node *keyword_chain(parser *p, node *(*operand)(parser *), const char *word, int kind)
{
    node *l = operand(p);
    while (l && is_name(cur(p), word)) {
        int line = cur(p)->line;
        adv(p);
        node *r = operand(p);
        node *n = mk(p, kind, line);
        if (!r || !n)
            return NULL;
        n->a = l, n->b = r, l = n;
    }
    return l;
}

static node *and_expr(parser *p)
{
    return keyword_chain(p, not_expr, "and", N_AND);
}

static node *or_expr(parser *p)
{
    return keyword_chain(p, and_expr, "or", N_OR);
}

static node *expr(parser *p)
{
    if (++p->nest > MAX_NEST)
        return perr(p, "expression nested too deeply");
    node *l = or_expr(p);
    while (l && is_name(cur(p), "if")) {
        int line = cur(p)->line;
        adv(p);
        node *c = mk(p, N_CONDEXPR, line);
        if (!c || !(c->b = or_expr(p)))
            return NULL;
        c->a = l;
        if (is_name(cur(p), "else")) {
            adv(p);
            if (!(c->c = expr(p)))
                return NULL;
        }
        l = c;
    }
    p->nest--;
    return l;
}

static node *expr_nocond(parser *p) { return or_expr(p); }

static node *tuple_expr(parser *p, bool with_condexpr, const char *extra_end, bool explicit_paren)
{
    int line = cur(p)->line;
    node *items = NULL, **tail = &items;
    int cnt = 0;
    bool is_tuple = false;
    for (;;) {
        if (cnt && !expect_op(p, ","))
            return NULL;
        if (tuple_end(p, extra_end))
            break;
        node *e = with_condexpr ? expr(p) : expr_nocond(p);
        if (!e)
            return NULL;
        *tail = e;
        tail = &e->next;
        cnt++;
        if (is_op(cur(p), ","))
            is_tuple = true;
        else
            break;
    }
    if (!is_tuple) {
        if (cnt)
            return items;
        if (!explicit_paren) {
            char b[64];
            return perr(p, "Expected an expression, got %s", tok_desc(cur(p), b, sizeof b));
        }
    }
    node *t = mk(p, N_TUPLE, line);
    if (t)
        t->a = items;
    return t;
}

/* an assignment target: a name or a tuple of names (parenthesised or not) */
static node *assign_target(parser *p, const char *extra_end)
{
    int line = cur(p)->line;
    node *items = NULL, **tail = &items;
    int cnt = 0;
    bool paren = false;
    if (is_op(cur(p), "("))
        paren = true, adv(p);
    for (;;) {
        if (cur(p)->type != T_NAME) {
            if (cnt && (is_op(cur(p), ")") || is_name(cur(p), extra_end ? extra_end : "")))
                break;
            char b[64];
            return perr(p, "expected token 'name', got %s", tok_desc(cur(p), b, sizeof b));
        }
        node *n = mk(p, N_NAME, cur(p)->line);
        if (!n)
            return NULL;
        n->v = tv_str(cur(p)->s, cur(p)->n);
        adv(p);
        *tail = n;
        tail = &n->next;
        cnt++;
        if (!is_op(cur(p), ","))
            break;
        adv(p);
    }
    if (paren && !expect_op(p, ")"))
        return NULL;
    if (cnt == 1 && !paren && items->next == NULL && !is_op(&p->tk[p->pos - 1], ","))
        return items;
    node *t = mk(p, N_TUPLE, line);
    if (t)
        t->a = items;
    return t;
}

static node *body(parser *p, const char *const *ends);

static void describe_ends(parser *p, char *want, size_t cap)
{
    want[0] = 0;
    for (int i = 0; p->ends && p->ends[i]; i++)
        snprintf(want + strlen(want), cap - strlen(want), "%s'%s'", i ? " or " : "", p->ends[i]);
}

static bool end_tag(parser *p)
{
    return expect_type(p, T_BLOCK_END);
}

/* A block's body up to its one closing tag (ends: {"endNAME", NULL}, kept
 * alive by the caller while body() reads it) and that tag: {% endNAME %}.
 * false when either fails (p->failed says why). */
static bool closed_body(parser *p, const char *const *ends, node **out)
{
    *out = body(p, ends);
    if (p->failed)
        return false;
    adv(p); /* {% */
    adv(p); /* endNAME */
    return end_tag(p);
}

/* at "{%" NAME where NAME is one of ends: returns the index, leaves pos at NAME+1 */
static int at_end(parser *p, const char *const *ends)
{
    if (cur(p)->type != T_BLOCK_BEGIN)
        return -1;
    token *nm = peek(p, 1);
    for (int i = 0; ends && ends[i]; i++)
        if (is_name(nm, ends[i]))
            return i;
    return -1;
}

static void add_block(parser *p, node *b)
{
    for (tmpl_block *x = p->t->blocks; x; x = x->next)
        if (x->len == b->v.len && memcmp(x->name, b->v.u.s, b->v.len) == 0) {
            perr(p, "block '%.*s' defined twice", (int)b->v.len, b->v.u.s);
            return;
        }
    tmpl_block *nb = vial_arena_alloc(p->a, sizeof *nb);
    if (!nb) {
        perr(p, "out of memory");
        return;
    }
    nb->name = b->v.u.s;
    nb->len = b->v.len;
    nb->body = b->b;
    nb->scoped = b->op & F_SCOPED;
    nb->next = p->t->blocks;
    p->t->blocks = nb;
}

static node *params(parser *p)
{
    node *head = NULL, **tail = &head;
    if (!expect_op(p, "("))
        return NULL;
    bool first = true;
    while (!is_op(cur(p), ")")) {
        if (!first && !expect_op(p, ","))
            return NULL;
        first = false;
        if (cur(p)->type != T_NAME)
            return unexpected(p);
        node *a = mk(p, N_PARAM, cur(p)->line);
        if (!a)
            return NULL;
        a->v = tv_str(cur(p)->s, cur(p)->n);
        adv(p);
        if (is_op(cur(p), "=")) {
            adv(p);
            if (!(a->a = expr(p)))
                return NULL;
        } else if (head) {
            for (node *q = head; q; q = q->next)
                if (q->a)
                    return perr(p, "non-default argument follows default argument");
        }
        *tail = a;
        tail = &a->next;
    }
    adv(p);
    return p->failed ? NULL : (head ? head : NULL);
}

static bool context_mod(parser *p, node *n, bool dflt)
{
    if ((is_name(cur(p), "with") || is_name(cur(p), "without")) && is_name(peek(p, 1), "context")) {
        bool w = is_name(cur(p), "with");
        adv(p);
        adv(p);
        if (w)
            n->op |= F_WITH_CONTEXT;
        n->op |= F_HAS_WITH;
        return true;
    }
    if (dflt)
        n->op |= F_WITH_CONTEXT;
    return false;
}

static bool close_tag(parser *p, const char *name, node *named)
{
    /* at NAME after "{%" (the end word) */
    adv(p);
    if (named && cur(p)->type == T_NAME) {
        if (cur(p)->n != named->v.len || memcmp(cur(p)->s, named->v.u.s, named->v.len) != 0) {
            perr(p, "mismatching name in end%s", name);
            return false;
        }
        adv(p);
    }
    return end_tag(p);
}

static node *statement(parser *p)
{
    token *kw = cur(p);
    int line = kw->line;
    if (kw->type != T_NAME)
        return perr(p, "tag name expected");
    if (++p->nest > MAX_NEST)
        return perr(p, "template nested too deeply");
    node *n = NULL;
    if (is_name(kw, "if")) {
        adv(p);
        if (!(n = mk(p, N_IF, line)) || !(n->a = tuple_expr(p, true, NULL, false)) || !end_tag(p))
            return NULL;
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        node *cur_if = n;
        for (;;) {
            cur_if->b = body(p, ends);
            if (p->failed)
                return NULL;
            int which = at_end(p, ends);
            adv(p);
            adv(p);
            if (which == 0) {
                node *e = mk(p, N_IF, cur(p)->line);
                if (!e || !(e->a = tuple_expr(p, true, NULL, false)) || !end_tag(p))
                    return NULL;
                e->op |= F_ELIF;
                cur_if->c = e;
                cur_if = e;
                continue;
            }
            if (which == 1) {
                if (!end_tag(p))
                    return NULL;
                static const char *const ends2[] = {"endif", NULL};
                cur_if->c = body(p, ends2);
                if (p->failed)
                    return NULL;
                adv(p);
                adv(p);
            }
            if (!end_tag(p))
                return NULL;
            break;
        }
    } else if (is_name(kw, "for")) {
        adv(p);
        if (!(n = mk(p, N_FOR, line)) || !(n->a = assign_target(p, "in")))
            return NULL;
        if (!is_name(cur(p), "in"))
            return perr(p, "expected token 'in', got '%.*s'", (int)cur(p)->n, cur(p)->s);
        adv(p);
        if (!(n->b = tuple_expr(p, false, "recursive", false)))
            return NULL;
        if (is_name(cur(p), "if")) {
            adv(p);
            if (!(n->e = expr(p)))
                return NULL;
        }
        if (is_name(cur(p), "recursive")) {
            n->op |= F_RECURSIVE;
            adv(p);
        }
        if (!end_tag(p))
            return NULL;
        static const char *const ends[] = {"endfor", "else", NULL};
        n->c = body(p, ends);
        if (p->failed)
            return NULL;
        int which = at_end(p, ends);
        adv(p);
        adv(p);
        if (which == 1) {
            static const char *const ends2[] = {"endfor", NULL};
            if (!end_tag(p))
                return NULL;
            n->d = body(p, ends2);
            if (p->failed)
                return NULL;
            adv(p);
            adv(p);
        }
        if (!end_tag(p))
            return NULL;
    } else if (is_name(kw, "set")) {
        adv(p);
        node *target;
        if (cur(p)->type == T_NAME && is_op(peek(p, 1), ".") && peek(p, 2)->type == T_NAME) {
            /* a namespace attribute: {% set ns.x = ... %} */
            if (!(target = mk(p, N_GETATTR, line)) || !(target->a = mk(p, N_NAME, line)))
                return NULL;
            target->a->v = tv_str(cur(p)->s, cur(p)->n);
            target->v = tv_str(peek(p, 2)->s, peek(p, 2)->n);
            adv(p);
            adv(p);
            adv(p);
            if (!is_op(cur(p), "="))
                return unexpected(p);
        } else if (!(target = assign_target(p, NULL))) {
            return NULL;
        }
        if (is_op(cur(p), "=")) {
            adv(p);
            if (!(n = mk(p, N_SET, line)) || !(n->b = tuple_expr(p, true, NULL, false)) || !end_tag(p))
                return NULL;
            n->a = target;
        } else {
            if (target->type != N_NAME)
                return unexpected(p);
            if (!(n = mk(p, N_SETBLOCK, line)))
                return NULL;
            n->a = target;
            /* optional filters: a chain with a NULL subject */
            node *chain = NULL;
            while (is_op(cur(p), "|")) {
                adv(p);
                if (!(chain = filter_one(p, chain)))
                    return NULL;
            }
            n->c = chain;
            if (!end_tag(p))
                return NULL;
            static const char *const ends[] = {"endset", NULL};
            n->b = body(p, ends);
            if (p->failed)
                return NULL;
            adv(p);
            adv(p);
            if (!end_tag(p))
                return NULL;
        }
    } else if (is_name(kw, "block")) {
        adv(p);
        if (cur(p)->type != T_NAME)
            return unexpected(p);
        if (!(n = mk(p, N_BLOCK, line)))
            return NULL;
        n->v = tv_str(cur(p)->s, cur(p)->n);
        adv(p);
        for (;;) {
            if (is_name(cur(p), "scoped"))
                n->op |= F_SCOPED, adv(p);
            else if (is_name(cur(p), "required"))
                adv(p);
            else
                break;
        }
        if (!end_tag(p))
            return NULL;
        static const char *const ends[] = {"endblock", NULL};
        n->b = body(p, ends);
        if (p->failed)
            return NULL;
        adv(p);
        if (!close_tag(p, "block", n))
            return NULL;
        add_block(p, n);
    } else if (is_name(kw, "extends")) {
        adv(p);
        if (!(n = mk(p, N_EXTENDS, line)) || !(n->a = expr(p)) || !end_tag(p))
            return NULL;
    } else if (is_name(kw, "include")) {
        adv(p);
        if (!(n = mk(p, N_INCLUDE, line)) || !(n->a = expr(p)))
            return NULL;
        if (is_name(cur(p), "ignore") && is_name(peek(p, 1), "missing")) {
            n->op |= F_IGNORE_MISSING;
            adv(p);
            adv(p);
        }
        context_mod(p, n, true);
        if (!end_tag(p))
            return NULL;
    } else if (is_name(kw, "import")) {
        adv(p);
        if (!(n = mk(p, N_IMPORT, line)) || !(n->a = expr(p)))
            return NULL;
        if (!is_name(cur(p), "as"))
            return perr(p, "expected token 'as', got '%.*s'", (int)cur(p)->n, cur(p)->s);
        adv(p);
        if (cur(p)->type != T_NAME)
            return unexpected(p);
        n->v = tv_str(cur(p)->s, cur(p)->n);
        adv(p);
        context_mod(p, n, false);
        if (!end_tag(p))
            return NULL;
    } else if (is_name(kw, "from")) {
        adv(p);
        if (!(n = mk(p, N_FROMIMPORT, line)) || !(n->a = expr(p)))
            return NULL;
        if (!is_name(cur(p), "import"))
            return perr(p, "expected token 'import', got '%.*s'", (int)cur(p)->n, cur(p)->s);
        adv(p);
        node **tail = &n->b;
        for (;;) {
            if (n->b && context_mod(p, n, false))
                break;
            if (cur(p)->type != T_NAME)
                break;
            if (cur(p)->n >= 1 && cur(p)->s[0] == '_')
                return perr(p, "names starting with an underline can not be imported");
            node *nm = mk(p, N_NAME, cur(p)->line);
            if (!nm)
                return NULL;
            nm->v = nm->w = tv_str(cur(p)->s, cur(p)->n);
            adv(p);
            if (is_name(cur(p), "as")) {
                adv(p);
                if (cur(p)->type != T_NAME)
                    return unexpected(p);
                nm->w = tv_str(cur(p)->s, cur(p)->n);
                adv(p);
            }
            *tail = nm;
            tail = &nm->next;
            if (!is_op(cur(p), ","))
                break;
            adv(p);
        }
        if (!n->b)
            return perr(p, "expected token 'name', got %s", "nothing");
        context_mod(p, n, false);
        if (!end_tag(p))
            return NULL;
    } else if (is_name(kw, "macro")) {
        adv(p);
        if (cur(p)->type != T_NAME)
            return unexpected(p);
        if (!(n = mk(p, N_MACRO, line)))
            return NULL;
        n->v = tv_str(cur(p)->s, cur(p)->n);
        adv(p);
        n->a = params(p);
        if (p->failed || !end_tag(p))
            return NULL;
        static const char *const ends[] = {"endmacro", NULL};
        n->b = body(p, ends);
        if (p->failed)
            return NULL;
        adv(p);
        if (!close_tag(p, "macro", n))
            return NULL;
    } else if (is_name(kw, "call")) {
        adv(p);
        if (!(n = mk(p, N_CALLBLOCK, line)))
            return NULL;
        if (is_op(cur(p), "(")) {
            n->b = params(p);
            if (p->failed)
                return NULL;
        }
        if (!(n->a = expr(p)))
            return NULL;
        if (n->a->type != N_CALL)
            return perr(p, "expected call");
        if (!end_tag(p))
            return NULL;
        static const char *const ends[] = {"endcall", NULL};
        if (!closed_body(p, ends, &n->c))
            return NULL;
    } else if (is_name(kw, "filter")) {
        adv(p);
        if (!(n = mk(p, N_FILTERBLOCK, line)))
            return NULL;
        node *chain = NULL;
        do {
            if (chain) adv(p);
            if (!(chain = filter_one(p, chain)))
                return NULL;
        } while (is_op(cur(p), "|"));
        n->a = chain;
        if (!end_tag(p))
            return NULL;
        static const char *const ends[] = {"endfilter", NULL};
        if (!closed_body(p, ends, &n->b))
            return NULL;
    } else if (is_name(kw, "autoescape")) {
        adv(p);
        if (!(n = mk(p, N_AUTOESCAPE, line)) || !(n->a = expr(p)) || !end_tag(p))
            return NULL;
        static const char *const ends[] = {"endautoescape", NULL};
        if (!closed_body(p, ends, &n->b))
            return NULL;
    } else if (is_name(kw, "with")) {
        adv(p);
        if (!(n = mk(p, N_WITH, line)))
            return NULL;
        node **tail = &n->a;
        while (cur(p)->type != T_BLOCK_END) {
            if (n->a && !expect_op(p, ","))
                return NULL;
            node *s = mk(p, N_SET, cur(p)->line);
            if (!s || !(s->a = assign_target(p, NULL)) || !expect_op(p, "=") || !(s->b = expr(p)))
                return NULL;
            *tail = s;
            tail = &s->next;
        }
        if (!end_tag(p))
            return NULL;
        static const char *const ends[] = {"endwith", NULL};
        if (!closed_body(p, ends, &n->b))
            return NULL;
    } else {
        if (p->ends) {
            char want[160];
            describe_ends(p, want, sizeof want);
            return perr(p, "Encountered unknown tag '%.*s'. Jinja was looking for the following tags: "
                        "%s. The innermost block that needs to be closed is '%s'.",
                        (int)kw->n, kw->s, want, p->tag);
        }
        return perr(p, "Encountered unknown tag '%.*s'.", (int)kw->n, kw->s);
    }
    p->nest--;
    return n;
}

static node *body_in(parser *p, const char *const *ends);

static node *body(parser *p, const char *const *ends)
{
    const char *const *saved = p->ends;
    const char *saved_tag = p->tag;
    p->ends = ends;
    /* the tag being closed: "endfor" -> "for" */
    if (ends) {
        for (int i = 0; ends[i]; i++)
            if (strncmp(ends[i], "end", 3) == 0)
                p->tag = ends[i] + 3;
    }
    node *r = body_in(p, ends);
    p->ends = saved;
    p->tag = saved_tag;
    return r;
}

static node *body_in(parser *p, const char *const *ends)
{
    node *head = NULL, **tail = &head;
    for (;;) {
        token *t = cur(p);
        node *n = NULL;
        if (t->type == T_EOF) {
            if (ends) {
                char want[160];
                describe_ends(p, want, sizeof want);
                return perr(p, "Unexpected end of template. Jinja was looking for the following tags: %s. "
                            "The innermost block that needs to be closed is '%s'.", want, p->tag);
            }
            return head;
        }
        if (t->type == T_DATA) {
            if (!(n = mk(p, N_TEXT, t->line)))
                return NULL;
            n->v = tv_str(t->s, t->n);
            adv(p);
        } else if (t->type == T_VAR_BEGIN) {
            adv(p);
            if (!(n = mk(p, N_OUTPUT, t->line)) || !(n->a = tuple_expr(p, true, NULL, false)) ||
                !expect_type(p, T_VAR_END))
                return NULL;
        } else if (t->type == T_BLOCK_BEGIN) {
            if (at_end(p, ends) >= 0)
                return head;
            adv(p);
            if (!(n = statement(p)))
                return NULL;
        } else {
            return unexpected(p);
        }
        *tail = n;
        tail = &n->next;
    }
}

int tmpl_parse(vial_tmpl *t, const char *src, size_t len, vial_tmpl_error *err)
{
    parser p = {.t = t, .a = &t->arena, .err = err};
    size_t nlen;
    char *text = tmpl_normalize(&t->arena, src, len, &nlen);
    if (!text)
        return -ENOMEM;
    lexer lx;
    lex_init(&lx, &t->arena, text, nlen);
    int cap = 256, n = 0;
    token *tk = malloc((size_t)cap * sizeof *tk);
    if (!tk)
        return -ENOMEM;
    token prev = {0};
    for (;;) {
        if (n == cap) {
            token *nt = realloc(tk, (size_t)cap * 2 * sizeof *tk);
            if (!nt) {
                free(tk);
                return -ENOMEM;
            }
            tk = nt;
            cap *= 2;
        }
        token tok = prev;
        if (lex_next(&lx, &tok) != 0) {
            tmpl_set_error(err, t->name, lx.errline, "%s", lx.err);
            free(tk);
            return -EINVAL;
        }
        if (tok.type == T_EOF && n > 0)
            tok.line = tk[n - 1].line; /* Jinja places the end at the last token */
        tk[n++] = tok;
        prev = tok;
        if (tok.type == T_EOF)
            break;
    }
    p.tk = tk;
    p.n = n;
    t->body = body(&p, NULL);
    free(tk);
    return p.failed ? -EINVAL : 0;
}
