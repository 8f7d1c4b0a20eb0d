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

const Entry kEntries[] = {
    KERNEL(ss_forward_f32),         KERNEL(ss_forward_bt_f32),
    KERNEL(ss_forward_f32_narrow),  KERNEL(ss_forward_bt_f32_narrow),
    KERNEL(ss_forward_f64),         KERNEL(ss_forward_bt_f64),
    KERNEL(ss_weight_grad_f32),     KERNEL(ss_weight_grad_f32_narrow),
    KERNEL(ss_weight_grad_f64),     KERNEL(mask_index),
    KERNEL(check_mask_values),      KERNEL(masked_copy_f32),
    KERNEL(masked_copy_f64),        KERNEL(mask_epilogue_f32),
    KERNEL(mask_epilogue_f64),      KERNEL(zero_inactive_f32),
    KERNEL(zero_inactive_f64),      KERNEL(colsum_partial_f32),
    KERNEL(colsum_partial_f64),     KERNEL(colsum_final_f32),
    KERNEL(colsum_final_f64),

#define TRAINING_KERNELS(S)                                                                 \
    KERNEL(relu_inplace_##S), KERNEL(relu_grad_##S), KERNEL(add_scaled_##S),                \
    KERNEL(sub_row_##S),                                                                    \
    KERNEL(dropout_##S), KERNEL(adam_update_##S), KERNEL(sgd_update_##S),                   \
    KERNEL(policy_prob_##S), KERNEL(bernoulli_mask_##S), KERNEL(threshold_mask_##S),        \
    KERNEL(row_mean_##S), KERNEL(softmax_xent_##S), KERNEL(xent_grad_##S),                  \
    KERNEL(policy_grad_##S)
    TRAINING_KERNELS(f32),
    TRAINING_KERNELS(f64),
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
