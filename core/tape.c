/* tape.c: recording, planning and replaying the autograd tape. */
#include "core/tape.h"

#include <stdio.h>
#include <string.h>

void tape_init(Tape *t, Backend *be, int batch, uint64_t seed) {
    memset(t, 0, sizeof *t);
    t->be = be;
    arena_init(&t->arena, be);
    t->batch = batch;
    t->n = batch;
    t->training = 1;
    t->grad_enabled = 1;
    t->seed = seed;
    int one = 1;
    t->step_tensor = tape_tensor(t, DT_I64, 1, &one, 0);
}

void tape_free(Tape *t) {
    arena_release(&t->arena);
    t->committed = 0;
}

static Tensor *new_tensor(Tape *t, DType dtype, int rank, const int *shape, int batched) {
    if (t->n_tensors >= TAPE_MAX_TENSORS || rank < 0 || rank > 4) return NULL;
    Tensor *x = &t->tensors[t->n_tensors++];
    memset(x, 0, sizeof *x);
    x->dtype = dtype;
    x->rank = rank;
    x->count = 1;
    for (int i = 0; i < rank; i++) {
        x->shape[i] = shape[i];
        x->count *= (size_t)shape[i];
    }
    x->batched = batched && rank > 0;
    return x;
}

Tensor *tape_tensor(Tape *t, DType dtype, int rank, const int *shape, int batched) {
    Tensor *x = new_tensor(t, dtype, rank, shape, batched);
    if (!x) return NULL;
    x->region = REGION_WORK;
    x->offset = arena_reserve(&t->arena, REGION_WORK, x->count * dtype_size(dtype));
    return x;
}

Tensor *tape_param(Tape *t, int rank, const int *shape) {
    Tensor *x = new_tensor(t, DT_F32, rank, shape, 0);
    if (!x) return NULL;
    x->region = REGION_PARAM;
    x->offset = arena_reserve(&t->arena, REGION_PARAM, x->count * sizeof(float));
    x->grad_region = REGION_GRAD;
    x->grad_offset = arena_reserve(&t->arena, REGION_GRAD, x->count * sizeof(float));
    x->requires_grad = 1;
    return x;
}

Tensor *tape_view(Tape *t, Tensor *x, int rank, const int *shape) {
    Tensor *v = new_tensor(t, x->dtype, rank, shape, x->batched);
    if (!v) return NULL;
    if (v->count != x->count || (x->batched && shape[0] != x->shape[0])) {
        t->n_tensors--;
        return NULL;
    }
    v->alias_of = x;
    v->requires_grad = x->requires_grad;
    return v;
}

TapeOp *tape_record(Tape *t, const OpDef *def, Tensor *out, int n_in, Tensor **in) {
    if (t->n_ops >= TAPE_MAX_OPS || n_in > TAPE_MAX_INPUTS || !out) return NULL;
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return NULL;
    TapeOp *op = &t->ops[t->n_ops++];
    memset(op, 0, sizeof *op);
    op->def = def;
    op->n_in = n_in;
    op->out = out;
    int needs = 0;
    for (int i = 0; i < n_in; i++) {
        op->in[i] = in[i];
        needs |= in[i]->requires_grad;
    }
    op->differentiable = t->grad_enabled && needs && def->backward != NULL;
    out->requires_grad = op->differentiable;
    return op;
}

void tape_set_grad_enabled(Tape *t, int enabled) { t->grad_enabled = enabled; }

void tape_need_workspace(Tape *t, size_t floats) {
    if (floats > t->ws_floats) t->ws_floats = floats;
}

/* The op whose output is x (NULL for an input), and through *consumers the number of
 * differentiable ops reading x, counted on the tensor's root so that views count too. */
static TapeOp *producer_of(Tape *t, const Tensor *x, int *consumers) {
    TapeOp *producer = NULL;
    *consumers = 0;
    for (int j = 0; j < t->n_ops; j++) {
        TapeOp *o = &t->ops[j];
        if (o->out == x) producer = o;
        if (!o->differentiable) continue;
        for (int i = 0; i < o->n_in; i++)
            if (tensor_root(o->in[i]) == x) (*consumers)++;
    }
    return producer;
}

/* A ReLU fused into conv2d/dense is undone in the backward by its only gradient writer when
 * that op can do it (see tape.h). */
static void plan_relu_fusion(Tape *t) {
    for (int k = 0; k < t->n_ops; k++) {
        TapeOp *c = &t->ops[k];
        c->mask_input_relu = 0;
        t->ops[k].relu_grad_masked = 0;
    }
    for (int k = 0; k < t->n_ops; k++) {
        TapeOp *c = &t->ops[k];
        if (!c->differentiable || !c->def->can_mask_input_relu ||
            !c->def->can_mask_input_relu(t->be) || c->accumulate[0] || c->in[0]->alias_of)
            continue;
        int consumers;
        TapeOp *producer = producer_of(t, c->in[0], &consumers);
        if (producer && producer->relu && producer->differentiable && consumers == 1) {
            c->mask_input_relu = 1;
            producer->relu_grad_masked = 1;
        }
    }
}

/* A conv with its ReLU whose only consumer is a max pool takes its filter gradient from the
 * pool's winners where the backend prefers it (backend.h, conv2d_filter_grad_from_pool), and
 * its data gradient too where the backend takes that (conv2d_data_grad_from_pool). Where the
 * conv's input takes no gradient (a first layer) or takes it from the winners, and the pool
 * applies the ReLU's mask (so the conv's backward reads nothing of its output gradient), the
 * pool's backward, which only makes that gradient, is skipped. */
static void plan_filter_from_pool(Tape *t) {
    Backend *be = t->be;
    for (int k = 0; k < t->n_ops; k++) {
        t->ops[k].pool_after = NULL;
        t->ops[k].skip_backward = 0;
        if (strcmp(t->ops[k].def->name, "conv2d") == 0) t->ops[k].data_from_pool = 0;
    }
    if (!be->conv2d_relu_maxpool_backward_filter || !be->conv2d_filter_grad_from_pool) return;
    for (int k = 0; k < t->n_ops; k++) {
        TapeOp *pool = &t->ops[k];
        if (strcmp(pool->def->name, "maxpool2d") != 0 || !pool->differentiable ||
            pool->in[0]->alias_of)
            continue;
        int consumers;
        TapeOp *conv = producer_of(t, pool->in[0], &consumers);
        if (conv && strcmp(conv->def->name, "conv2d") == 0 && conv->relu &&
            conv->differentiable && consumers == 1 &&
            be->conv2d_filter_grad_from_pool(be, &conv->p.conv)) {
            conv->pool_after = pool;
            conv->data_from_pool =
                conv->in[0]->requires_grad && be->conv2d_data_grad_from_pool &&
                be->conv2d_data_grad_from_pool(be, &conv->p.conv, &pool->p.pool);
            pool->skip_backward = (!conv->in[0]->requires_grad || conv->data_from_pool) &&
                                  conv->relu_grad_masked;
        }
    }
}

/* Whether a dense layer's input is (a view of) a max pool's output over a ReLU's output: a
 * pooled 0 is a winner the ReLU stopped, and such an input is mostly zeros once a model has
 * trained a little (on MNIST ~95%: bench_relu_sparsity). */
static int input_is_pooled_relu(Tape *t, const TapeOp *d) {
    int consumers;
    const TapeOp *pool = producer_of(t, tensor_root(d->in[0]), &consumers);
    if (!pool) return 0;
    if (strcmp(pool->def->name, "conv2d_relu_maxpool") == 0) return 1; /* the ReLU is inside */
    if (strcmp(pool->def->name, "maxpool2d") != 0) return 0;
    const TapeOp *relu = producer_of(t, tensor_root(pool->in[0]), &consumers);
    return relu && (relu->relu || strcmp(relu->def->name, "relu") == 0);
}

/* A dense layer whose input is a max pool over a ReLU's output takes its data gradient only
 * where that input is > 0, where the backend has the entry for its sizes (backend.h,
 * dense_backward_data_alive): the pool's backward (and a conv's gradients from the pool's
 * winners) drop the gradient at a pooled 0. And its forward and filter gradient over the
 * input's nonzeros, where the backend has those entries (dense_sparse_input_fits). */
static void plan_dense_pooled_input(Tape *t) {
    Backend *be = t->be;
    for (int k = 0; k < t->n_ops; k++) {
        TapeOp *d = &t->ops[k];
        d->dx_alive = 0;
        d->sparse_input = 0;
        if (strcmp(d->def->name, "dense") != 0 || !input_is_pooled_relu(t, d)) continue;
        const int n = d->in[0]->shape[0], in = d->p.dense.in, out = d->p.dense.out;
        d->sparse_input =
            be->dense_sparse_input_fits && be->dense_sparse_input_fits(be, n, in, out);
        d->dx_alive = d->differentiable && d->in[0]->requires_grad && be->dense_data_alive_fits &&
                      be->dense_data_alive_fits(be, n, in, out);
    }
}

/* Each parameter's last gradient writer in the reverse sweep (its first differentiable consumer
 * in the tape) reports it ready (TapeOp.ready_*). Parameters are packed in creation order, so
 * a layer's kernel and bias merge into one range. */
static void plan_ready_params(Tape *t) {
    for (int k = 0; k < t->n_ops; k++) t->ops[k].n_ready = 0;
    for (int i = 0; i < t->n_tensors; i++) {
        const Tensor *p = &t->tensors[i];
        if (p->alias_of || p->region != REGION_PARAM || !p->requires_grad) continue;
        TapeOp *last = NULL;
        for (int k = t->n_ops - 1; k >= 0; k--) {
            TapeOp *o = &t->ops[k];
            if (!o->differentiable) continue;
            for (int j = 0; j < o->n_in; j++)
                if (tensor_root(o->in[j]) == p && o->dx[j]) last = o;
        }
        if (!last) continue;
        const size_t first = p->offset / sizeof(float);
        const int r = last->n_ready;
        if (r > 0 && last->ready_first[r - 1] + last->ready_count[r - 1] == first) {
            last->ready_count[r - 1] += p->count;
        } else if (r < TAPE_MAX_INPUTS) { /* an op has at most TAPE_MAX_INPUTS parameters */
            last->ready_first[r] = first;
            last->ready_count[r] = p->count;
            last->n_ready = r + 1;
        }
    }
}

/* Gradient plan: in the reverse sweep the first op to reach a tensor writes its gradient, the
 * later ones write scratch and add. Gradient memory of non-parameters is reserved here. */
int tape_commit(Tape *t, char *err, size_t errlen) {
    for (int i = 0; i < t->n_tensors; i++) {
        Tensor *x = &t->tensors[i];
        x->grad_written = 0;
        if (x->requires_grad && !x->alias_of && x->region == REGION_WORK) {
            x->grad_region = REGION_WORK;
            x->grad_offset = arena_reserve(&t->arena, REGION_WORK, x->count * sizeof(float));
        }
    }
    size_t scratch_floats = 0;
    int scratch_used[TAPE_MAX_INPUTS] = {0};
    for (int k = t->n_ops - 1; k >= 0; k--) {
        TapeOp *op = &t->ops[k];
        if (!op->differentiable) continue;
        for (int i = 0; i < op->n_in; i++) {
            Tensor *root = tensor_root(op->in[i]);
            op->accumulate[i] = 0;
            if (!op->in[i]->requires_grad) continue;
            if (root->grad_written) {
                op->accumulate[i] = 1;
                scratch_used[i] = 1;
                if (root->count > scratch_floats) scratch_floats = root->count;
            }
            root->grad_written = 1;
        }
    }
    plan_relu_fusion(t);
    plan_filter_from_pool(t);
    plan_dense_pooled_input(t);
    size_t ws_off = arena_reserve(&t->arena, REGION_WORK, t->ws_floats * sizeof(float));
    size_t scratch_off[TAPE_MAX_INPUTS];
    for (int i = 0; i < TAPE_MAX_INPUTS; i++)
        scratch_off[i] = scratch_used[i]
            ? arena_reserve(&t->arena, REGION_WORK, scratch_floats * sizeof(float)) : 0;
    if (arena_commit(&t->arena) != 0) {
        snprintf(err, errlen, "out of %s memory (%zu + %zu + %zu bytes)", t->be->name,
                 t->arena.size[REGION_PARAM], t->arena.size[REGION_GRAD],
                 t->arena.size[REGION_WORK]);
        return -1;
    }
    t->ws = t->ws_floats ? arena_ptr(&t->arena, REGION_WORK, ws_off) : NULL;
    t->scratch_floats = scratch_floats;
    for (int i = 0; i < TAPE_MAX_INPUTS; i++)
        t->scratch[i] = scratch_used[i] ? arena_ptr(&t->arena, REGION_WORK, scratch_off[i]) : NULL;
    /* Resolve pointers: roots first, then views take their root's memory. */
    for (int i = 0; i < t->n_tensors; i++) {
        Tensor *x = &t->tensors[i];
        if (x->alias_of) continue;
        x->data = arena_ptr(&t->arena, x->region, x->offset);
        x->grad = x->requires_grad ? arena_ptr(&t->arena, x->grad_region, x->grad_offset) : NULL;
    }
    for (int i = 0; i < t->n_tensors; i++) {
        Tensor *x = &t->tensors[i];
        if (!x->alias_of) continue;
        Tensor *root = tensor_root(x);
        x->data = root->data;
        x->grad = x->requires_grad ? root->grad : NULL;
    }
    for (int k = 0; k < t->n_ops; k++) {
        TapeOp *op = &t->ops[k];
        for (int i = 0; i < op->n_in; i++) {
            op->dx[i] = NULL;
            if (!op->differentiable || !op->in[i]->requires_grad) continue;
            op->dx[i] = op->accumulate[i] ? t->scratch[i] : op->in[i]->grad;
        }
    }
    plan_ready_params(t);
    t->step = t->step_tensor->data;
    t->committed = 1;
    return 0;
}

void tape_forward(Tape *t, int first, int last) {
    for (int k = first; k < last; k++) t->ops[k].def->forward(t, &t->ops[k]);
}

void tape_backward(Tape *t, TapeParamsReady ready, void *arg) {
    t->n_updated = 0;
    for (int k = t->n_ops - 1; k >= 0; k--) {
        TapeOp *op = &t->ops[k];
        if (!op->differentiable || op->skip_backward) continue;
        op->def->backward(t, op);
        for (int i = 0; i < op->n_in; i++)
            if (op->accumulate[i])
                t->be->add_inplace(t->be, tensor_count_at(op->in[i], t->n), op->dx[i],
                                   tensor_root(op->in[i])->grad);
        if (ready)
            for (int r = 0; r < op->n_ready; r++)
                ready(arg, t, op->ready_first[r], op->ready_count[r]);
    }
}

void tape_mark_updated(Tape *t, size_t first, size_t count) {
    int k = t->n_updated++; /* kept ascending: the sweep goes from the last op back */
    for (; k > 0 && t->updated_first[k - 1] > first; k--) {
        t->updated_first[k] = t->updated_first[k - 1];
        t->updated_count[k] = t->updated_count[k - 1];
    }
    t->updated_first[k] = first;
    t->updated_count[k] = count;
}

size_t tape_param_offset(const Tape *t, const Tensor *param) {
    (void)t;
    return param->offset / sizeof(float);
}

size_t tape_param_floats(const Tape *t) { return t->arena.size[REGION_PARAM] / sizeof(float); }
float *tape_params(const Tape *t) { return t->arena.base[REGION_PARAM]; }
float *tape_grads(const Tape *t) { return t->arena.base[REGION_GRAD]; }
