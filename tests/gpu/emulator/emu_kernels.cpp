// The GPU kernels of condnn/gpu/*.cu, compiled for the host with emu_cuda.h, behind a
// launch-by-name entry point with cuLaunchKernel's calling convention (an array of pointers
// to the parameter values).
#include <cstring>
#include <type_traits>
#include <utility>

#include "emu_cuda.h"

#include "block_sparse.cu"
#include "masks.cu"
#include "training.cu"

namespace {

struct Entry {
    const char* name;
    void (*launch)(dim3, dim3, void**);
    int (*sizes)(int*, int);
};

#define KERNEL(name)                                                                        \
    Entry{#name, [](dim3 g, dim3 b, void** p) { emu::launch(&name, g, b, p); },             \
          [](int* s, int cap) { return emu::param_sizes(&name, s, cap); }}

// A kernel whose threads never cooperate (see emu::launch).
#define INDEPENDENT(name)                                                                   \
    Entry{#name, [](dim3 g, dim3 b, void** p) { emu::launch(&name, g, b, p, true); },       \
          [](int* s, int cap) { return emu::param_sizes(&name, s, cap); }}

const Entry kEntries[] = {
    KERNEL(ss_forward_f32),         KERNEL(ss_forward_bt_f32),
    KERNEL(ss_forward_f32_narrow),  KERNEL(ss_forward_bt_f32_narrow),
    KERNEL(ss_forward_f64),         KERNEL(ss_forward_bt_f64),
    KERNEL(ss_weight_grad_f32),     KERNEL(ss_weight_grad_f32_narrow),
    KERNEL(ss_weight_grad_f64),     KERNEL(mask_index),
    KERNEL(check_mask_values),           INDEPENDENT(masked_copy_f32),
    INDEPENDENT(masked_copy_f64),        INDEPENDENT(mask_epilogue_f32),
    INDEPENDENT(mask_epilogue_f64),      INDEPENDENT(zero_inactive_f32),
    INDEPENDENT(zero_inactive_f64),      KERNEL(colsum_partial_f32),
    KERNEL(colsum_partial_f64),          INDEPENDENT(colsum_final_f32),
    INDEPENDENT(colsum_final_f64),

// Every training kernel but the advantages is flat: one thread per element, none
// cooperating.
#define TRAINING_KERNELS(S)                                                                 \
    INDEPENDENT(relu_##S), INDEPENDENT(relu_grad_##S),                                      \
    INDEPENDENT(add_scaled_##S), INDEPENDENT(sub_row_##S), INDEPENDENT(dropout_##S),        \
    INDEPENDENT(block_dropout_##S),                                                         \
    INDEPENDENT(adam_update_##S), INDEPENDENT(sgd_update_##S),                              \
    INDEPENDENT(policy_prob_##S), INDEPENDENT(bernoulli_mask_##S),                          \
    INDEPENDENT(threshold_mask_##S), INDEPENDENT(row_mean_##S),                             \
    INDEPENDENT(softmax_xent_##S), INDEPENDENT(xent_grad_##S),                              \
    INDEPENDENT(policy_grad_##S), KERNEL(advantages_##S), KERNEL(learned_advantages_##S),   \
    KERNEL(sum_squares_##S), INDEPENDENT(scale_by_##S)
    TRAINING_KERNELS(f32),
    TRAINING_KERNELS(f64),
    KERNEL(add_partials), KERNEL(clip_factor), INDEPENDENT(mask_columns),
};

const Entry* find(const char* name) {
    for (const Entry& e : kEntries)
        if (std::strcmp(e.name, name) == 0) return &e;
    return nullptr;
}

}  // namespace

extern "C" {

// The byte size of each parameter of `name` (up to `capacity`); returns the parameter count,
// or -1 if no kernel has that name.
int emu_param_sizes(const char* name, int* sizes, int capacity) {
    const Entry* e = find(name);
    return e ? e->sizes(sizes, capacity) : -1;
}

// Runs kernel `name` over the grid; returns -1 if no kernel has that name.
int emu_launch(const char* name, const unsigned* grid, const unsigned* block, void** params) {
    const Entry* e = find(name);
    if (!e) return -1;
    e->launch(dim3{grid[0], grid[1], grid[2]}, dim3{block[0], block[1], block[2]}, params);
    return 0;
}

}
