// A CPU stand-in for the parts of CUDA that condnn's kernels use, so that the unchanged .cu
// sources run on the host: each thread of a thread block is a std::thread, __syncthreads and
// the warp intrinsics are barriers over those threads, and __shared__ variables are function
// statics (thread blocks run one after another, so one copy is enough).
//
// Barriers time out after a while and abort the process: a kernel whose threads do not all
// reach the same __syncthreads (undefined behaviour on a GPU) fails loudly instead of hanging.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint3 {
    unsigned x = 0, y = 0, z = 0;
};

struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(n)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

using std::exp;
using std::fma;
using std::fmin;
using std::log;
using std::max;
using std::min;
using std::sqrt;
using std::tanh;

namespace emu {

class Barrier {
  public:
    explicit Barrier(int count) : count_(count) {}
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        const unsigned long gen = generation_;
        if (++arrived_ == count_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
            return;
        }
        if (!cv_.wait_for(lock, std::chrono::seconds(60), [&] { return gen != generation_; })) {
            std::fprintf(stderr, "emulator: barrier timed out: not every thread of the block "
                                 "reached the same __syncthreads or warp collective\n");
            std::abort();
        }
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    int count_;
    int arrived_ = 0;
    unsigned long generation_ = 0;
};

struct Warp {
    explicit Warp(int size) : size(size), barrier(size) {}
    int size;
    Barrier barrier;
    unsigned long long slots[32] = {};
};

struct Block {
    explicit Block(int threads) : barrier(threads) {
        for (int w = 0; w * 32 < threads; ++w)
            warps.emplace_back(new Warp(std::min(32, threads - w * 32)));
    }
    Barrier barrier;
    std::vector<std::unique_ptr<Warp>> warps;
    int or_flag = 0;
};

inline Block* block = nullptr;
inline thread_local int lane = 0;
inline thread_local int warp = 0;

}  // namespace emu

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

inline void __syncthreads() { emu::block->barrier.wait(); }

inline int __syncthreads_or(int predicate) {
    emu::Block& b = *emu::block;
    b.barrier.wait();  // earlier readers of or_flag are done
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) b.or_flag = 0;
    b.barrier.wait();
    if (predicate) __atomic_store_n(&b.or_flag, 1, __ATOMIC_RELAXED);
    b.barrier.wait();
    return __atomic_load_n(&b.or_flag, __ATOMIC_RELAXED);
}

inline unsigned __ballot_sync(unsigned, int predicate) {
    emu::Warp& w = *emu::block->warps[emu::warp];
    w.slots[emu::lane] = predicate ? 1 : 0;
    w.barrier.wait();
    unsigned r = 0;
    for (int l = 0; l < w.size; ++l)
        if (w.slots[l]) r |= 1u << l;
    w.barrier.wait();
    return r;
}

template <typename T>
inline T __shfl_up_sync(unsigned, T value, unsigned delta) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    emu::Warp& w = *emu::block->warps[emu::warp];
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    w.slots[emu::lane] = bits;
    w.barrier.wait();
    T r = value;
    if ((unsigned)emu::lane >= delta) std::memcpy(&r, &w.slots[emu::lane - delta], sizeof(T));
    w.barrier.wait();
    return r;
}

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int atomicOr(int* address, int value) {
    return __atomic_fetch_or(address, value, __ATOMIC_RELAXED);
}

namespace emu {

// Runs the thread blocks of the grid one after another on one set of blockDim threads; a
// barrier between blocks keeps the function-static shared memory of one block from the next.
template <typename... Args, std::size_t... I>
void launch_impl(void (*kernel)(Args...), dim3 grid, dim3 blk, void** params, bool independent,
                 std::index_sequence<I...>) {
    gridDim = grid;
    blockDim = blk;
    const int threads = (int)(blk.x * blk.y * blk.z);
    const long long blocks = (long long)grid.x * grid.y * grid.z;
    Block b(threads);
    Barrier between(threads);
    block = &b;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            threadIdx = {t % blk.x, (t / blk.x) % blk.y, t / (blk.x * blk.y)};
            lane = t % 32;
            warp = t / 32;
            for (long long bi = 0; bi < blocks; ++bi) {
                blockIdx = {(unsigned)(bi % grid.x), (unsigned)((bi / grid.x) % grid.y),
                            (unsigned)(bi / ((long long)grid.x * grid.y))};
                kernel(*static_cast<std::remove_reference_t<Args>*>(params[I])...);
                if (!independent) between.wait();
            }
        });
    }
    for (auto& th : pool) th.join();
    block = nullptr;
}

// independent: the kernel's threads never cooperate (no __shared__ memory, no barrier or
// warp intrinsic), so each thread may run its part of every block without waiting for the
// others between blocks; much faster for grids of many blocks.
template <typename... Args>
void launch(void (*kernel)(Args...), dim3 grid, dim3 blk, void** params,
            bool independent = false) {
    launch_impl(kernel, grid, blk, params, independent, std::index_sequence_for<Args...>{});
}

template <typename... Args>
int param_sizes(void (*)(Args...), int* sizes, int capacity) {
    const int s[] = {(int)sizeof(std::remove_reference_t<Args>)..., 0};
    const int count = (int)sizeof...(Args);
    for (int i = 0; i < count && i < capacity; ++i) sizes[i] = s[i];
    return count;
}

}  // namespace emu
