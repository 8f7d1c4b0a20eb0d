// The kernels of a training step besides the block-sparse product: activations, the loss,
// the policy's probabilities, masks and gradient, and the optimizers' updates.
//
// Each mirrors a NumPy computation of condnn's CPU layers (named in its comment), element for
// element, so the tests can compare them.  Flat kernels take a 1-D grid and stride over the
// `size` elements; row kernels give one thread to each row (an example): their rows are
// short (classes, or a layer's blocks).  None uses atomics, so results are deterministic.

#define FLAT_LOOP(e, size)                                                                  \
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < (size);         \
         e += (long long)gridDim.x * blockDim.x)

// y = max(x, 0) as np.maximum gives it, NaN kept (the ReLU); y may be x.
template <typename T>
__device__ __forceinline__ void relu(const T* x, T* y, long long size)
{
    FLAT_LOOP(e, size) y[e] = x[e] < T(0) ? T(0) : x[e];
}

// dx = dy where y > 0, else 0 (ReLU's derivative; dx may be dy).
template <typename T>
__device__ __forceinline__ void relu_grad(const T* dy, const T* __restrict__ y, T* dx,
                                          long long size)
{
    FLAT_LOOP(e, size) dx[e] = y[e] > T(0) ? dy[e] : T(0);
}

// y += alpha x (optim.kernels.add_scaled: gradient accumulation, the L2 term).
template <typename T>
__device__ __forceinline__ void add_scaled(T* __restrict__ y, T alpha, const T* __restrict__ x,
                                           long long size)
{
    FLAT_LOOP(e, size) y[e] += alpha * x[e];
}

// out = x - row, the row (m) subtracted from every row of x (n, m): a model's input centring.
// out may be x.
template <typename T>
__device__ __forceinline__ void sub_row(const T* x, const T* __restrict__ row, long long m,
                                        T* out, long long size)
{
    FLAT_LOOP(e, size) out[e] = x[e] - row[e % m];
}

// Inverted dropout (layers.Dropout): y = x / (1 - rate) where uniform >= rate, else 0.  The
// same uniforms give the backward pass (x = dy).  y may be x.
template <typename T>
__device__ __forceinline__ void dropout(const T* x, const T* __restrict__ uniform, T rate,
                                        T scale, T* y, long long size)
{
    FLAT_LOOP(e, size) y[e] = uniform[e] >= rate ? x[e] * scale : T(0);
}

// Block dropout (layers.BlockDropout): y = x * scale where the block (of bs units) that
// holds the entry is kept for its row, else 0; x is (n, units), mask (n, units / bs).  On
// dy, it is the backward pass.  y may be x.
template <typename T>
__device__ __forceinline__ void block_dropout(const T* x,
                                              const unsigned char* __restrict__ mask,
                                              long long units, int bs, T scale, T* y,
                                              long long size)
{
    const long long blocks = units / bs;
    FLAT_LOOP(e, size) {
        const long long i = e / units;
        const long long j = (e - i * units) / bs;
        y[e] = mask[i * blocks + j] ? x[e] * scale : T(0);
    }
}

// Adam with bias correction (optim.Adam), grad set to 0 after use:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= step m / (sqrt(v) root + eps)
// with step = lr / (1 - b1^t) and root = 1 / sqrt(1 - b2^t).
template <typename T>
__device__ __forceinline__ void adam_update(T* __restrict__ p, T* __restrict__ g,
                                            T* __restrict__ m, T* __restrict__ v,
                                            long long size, T beta1, T beta2, T eps, T step,
                                            T root)
{
    FLAT_LOOP(e, size) {
        const T gi = g[e];
        const T mi = beta1 * m[e] + (T(1) - beta1) * gi;
        const T vi = beta2 * v[e] + (T(1) - beta2) * (gi * gi);
        m[e] = mi;
        v[e] = vi;
        p[e] -= step * (mi / (sqrt(vi) * root + eps));
        g[e] = T(0);
    }
}

// SGD with momentum (optim.SGD), grad set to 0 after use:  vel = momentum vel + g;
// p -= lr vel, or with Nesterov p -= lr (g + momentum vel).  vel null: plain SGD.
template <typename T>
__device__ __forceinline__ void sgd_update(T* __restrict__ p, T* __restrict__ g,
                                           T* __restrict__ vel, long long size, T lr,
                                           T momentum, int nesterov)
{
    FLAT_LOOP(e, size) {
        const T gi = g[e];
        T d = gi;
        if (vel) {
            const T vi = momentum * vel[e] + gi;
            vel[e] = vi;
            d = nesterov ? gi + momentum * vi : vi;
        }
        p[e] -= lr * d;
        g[e] = T(0);
    }
}

// The policy's probabilities from its logits z, in place (layers.PolicyGate):
//   p = 1/2 + (1/2 - eps) tanh(z / 2)
template <typename T>
__device__ __forceinline__ void policy_prob(T* __restrict__ z, long long size,
                                            T half_minus_eps)
{
    FLAT_LOOP(e, size) z[e] = T(0.5) + half_minus_eps * tanh(z[e] * T(0.5));
}

// mask = uniform < prob: the sampled decisions (PolicyGate in training).
template <typename T>
__device__ __forceinline__ void bernoulli_mask(const T* __restrict__ prob,
                                               const T* __restrict__ uniform,
                                               unsigned char* __restrict__ mask, long long size)
{
    FLAT_LOOP(e, size) mask[e] = uniform[e] < prob[e] ? 1 : 0;
}

// mask = prob > 1/2, and a row with no block on keeps its most probable one (the first of
// equals) unless keep_a_block is 0, as layers.policy_gate.threshold_mask.
template <typename T>
__device__ __forceinline__ void threshold_mask(const T* __restrict__ prob,
                                               unsigned char* __restrict__ mask, int n, int nb,
                                               int keep_a_block)
{
    FLAT_LOOP(i, n) {
        const T* p = prob + i * nb;
        unsigned char* u = mask + i * nb;
        int any = 0, best = 0;
        for (int j = 0; j < nb; ++j) {
            const int on = p[j] > T(0.5);
            u[j] = (unsigned char)on;
            any |= on;
            if (p[j] > p[best]) best = j;
        }
        if (!any && nb > 0 && keep_a_block) u[best] = 1;
    }
}

// Row means of an (n, nb) matrix (L_e's per-example activation).
template <typename T>
__device__ __forceinline__ void row_mean(const T* __restrict__ x, int n, int nb,
                                         T* __restrict__ out)
{
    FLAT_LOOP(i, n) {
        T t = T(0);
        for (int j = 0; j < nb; ++j) t += x[i * nb + j];
        out[i] = t / T(nb);
    }
}

// Softmax cross-entropy (layers.softmax_cross_entropy), per row of logits z (n, c):
//   losses[i] = log sum exp(z_i - max z_i) - (z_i[y_i] - max z_i),  probs[i] = softmax(z_i).
// A label outside [0, c) sets *bad to 1 (read back by the caller) and gives a NaN loss.
template <typename T>
__device__ __forceinline__ void softmax_xent(const T* __restrict__ z,
                                             const long long* __restrict__ labels, int n, int c,
                                             T* __restrict__ losses, T* __restrict__ probs,
                                             int* __restrict__ bad)
{
    FLAT_LOOP(i, n) {
        const T* zi = z + i * c;
        T* pi = probs + i * c;
        T top = zi[0];
        for (int j = 1; j < c; ++j) top = zi[j] > top ? zi[j] : top;
        T sum = T(0);
        for (int j = 0; j < c; ++j) {
            pi[j] = exp(zi[j] - top);
            sum += pi[j];
        }
        for (int j = 0; j < c; ++j) pi[j] /= sum;
        const long long y = labels[i];
        if (y < 0 || y >= c) {
            *bad = 1;
            losses[i] = T(NAN);
        } else {
            losses[i] = log(sum) - (zi[y] - top);
        }
    }
}

// The loss's gradient: dlogits[i] = (probs[i] - onehot(y_i)) (d_mean + d_losses[i]), with
// d_losses null for none (softmax_cross_entropy's backprop, d_mean = d_loss / n).
// dlogits may be probs.
template <typename T>
__device__ __forceinline__ void xent_grad(const T* probs, const long long* __restrict__ labels,
                                          int n, int c, T d_mean,
                                          const T* __restrict__ d_losses, T* dlogits)
{
    FLAT_LOOP(e, (long long)n * c) {
        const long long i = e / c;
        const int j = (int)(e - i * c);
        const T w = d_losses ? d_mean + d_losses[i] : d_mean;
        dlogits[e] = (probs[e] - (labels[i] == j ? T(1) : T(0))) * w;
    }
}

// The gradient of the policy's terms with respect to its logits z (PolicyGate's backprop),
// from p = prob (n, nb), the decisions u = mask, and t = (p - 1/2) / (1/2 - eps):
//   total = A_i (u / p - (1 - u) / (1 - p))                   advantages A, null for none
//         + lambda_s (sign(colmean_j - tau) / n + sign(rowmean_i - tau) / (n nb))
//         - lambda_v 2 (p - colmean_j) / n
//         + dprob                                               a caller's, null for none
//   dz = total (1 - t^2) (1/2 - eps) / 2
// colmean_j = colsum_j / n and rowmean (n) are the column and row means of p; colsum and
// rowmean may be null when no coefficient needs them.
template <typename T>
__device__ __forceinline__ T sign_of(T x)
{
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

template <typename T>
__device__ __forceinline__ void policy_grad(const T* __restrict__ prob,
                                            const unsigned char* __restrict__ mask,
                                            const T* __restrict__ advantages,
                                            const T* __restrict__ colsum,
                                            const T* __restrict__ rowmean,
                                            const T* __restrict__ dprob, int n, int nb,
                                            T tau, T lambda_s, T lambda_v, T half_minus_eps,
                                            T* __restrict__ dz)
{
    FLAT_LOOP(e, (long long)n * nb) {
        const long long i = e / nb;
        const int j = (int)(e - i * nb);
        const T p = prob[e];
        const T colmean = colsum ? colsum[j] / T(n) : T(0);
        T total = dprob ? dprob[e] : T(0);
        if (advantages)
            total += advantages[i] * (mask[e] ? T(1) / p : T(-1) / (T(1) - p));
        if (lambda_s != T(0))
            total += lambda_s * (sign_of(colmean - tau) / T(n)
                                 + sign_of(rowmean[i] - tau) / (T(n) * T(nb)));
        if (lambda_v != T(0))
            total += lambda_v * (T(-2) * (p - colmean) / T(n));
        const T t = (p - T(0.5)) / half_minus_eps;
        dz[e] = total * (T(1) - t * t) * (half_minus_eps / T(2));
    }
}

// The REINFORCE advantages of one batch, in one thread block of 256 threads (the
// baselines of condnn.baselines, in float64 as there): with C the costs (n),
//   kind 0 (none):            b = 0
//   kind 1 (batch-min):       b = min_i C_i
//   kind 2 (moving-average):  b = state[0] if state[1] != 0 else mean_i C_i, and then
//                             state = (momentum state[0] + (1 - momentum) mean, 1), or
//                             (mean, 1) for the first batch
//   a_i = C_i - b;  with normalize, a_i /= sqrt(mean_i a_i^2) + 1e-12;  out_i = a_i / n.
// Sums are tree reductions in a fixed order: the result does not vary between runs.
template <bool Minimum>
__device__ __forceinline__ double block_reduce(double v, double* s)
{
    const int tid = threadIdx.x;
    s[tid] = v;
    __syncthreads();
    for (int half = 128; half > 0; half >>= 1) {
        if (tid < half) {
            const double other = s[tid + half];
            s[tid] = Minimum ? (other < s[tid] ? other : s[tid]) : s[tid] + other;
        }
        __syncthreads();
    }
    const double total = s[0];
    __syncthreads();                           // s is rewritten by the next reduction
    return total;
}

__device__ __forceinline__ double block_sum(double v, double* s)
{
    return block_reduce<false>(v, s);
}

template <typename T>
__device__ __forceinline__ void advantages(const T* __restrict__ costs, int n, int kind,
                                           double* __restrict__ state, double momentum,
                                           int normalize, T* __restrict__ out)
{
    __shared__ double s[256];
    const int tid = threadIdx.x;
    double local = 0.0, low = INFINITY;
    for (int i = tid; i < n; i += 256) {
        local += (double)costs[i];
        low = fmin(low, (double)costs[i]);
    }
    const double mean = block_sum(local, s) / n;
    double b = 0.0;
    if (kind == 1) b = block_reduce<true>(low, s);
    if (kind == 2) b = state[1] != 0.0 ? state[0] : mean;
    double squares = 0.0;
    for (int i = tid; i < n; i += 256) {
        const double a = (double)costs[i] - b;
        squares += a * a;
    }
    const double scale = normalize ? 1.0 / (sqrt(block_sum(squares, s) / n) + 1e-12) : 1.0;
    for (int i = tid; i < n; i += 256) out[i] = (T)(((double)costs[i] - b) * scale / n);
    __syncthreads();                           // every thread has read the state
    if (kind == 2 && tid == 0) {
        state[0] = state[1] != 0.0 ? momentum * state[0] + (1.0 - momentum) * mean : mean;
        state[1] = 1.0;
    }
}

// Gradient-norm clipping (condnn.optim.clipping) in three kernels, over any number of
// arrays, nothing read back: sum_squares leaves each thread block's sum of squares of x in
// partial[block] (a fixed grid and a fixed order per block, so the same sums every run);
// add_partials adds the count partials to state[0] in one block; clip_factor sets
// state[1] = max_norm / sqrt(state[0]) where that is below 1, else 1, and state[0] to the
// norm; scale_by multiplies x by state[1] where it is below 1.
template <typename T>
__device__ __forceinline__ void sum_squares(const T* __restrict__ x, long long size,
                                            double* __restrict__ partial)
{
    __shared__ double s[256];
    double local = 0.0;
    FLAT_LOOP(e, size) {
        const double v = (double)x[e];
        local += v * v;
    }
    const double total = block_sum(local, s);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

extern "C" __global__ void __launch_bounds__(256) add_partials(
    const double* __restrict__ partial, int count, double* __restrict__ state)
{
    __shared__ double s[256];
    double local = 0.0;
    for (int i = threadIdx.x; i < count; i += 256) local += partial[i];
    const double total = block_sum(local, s);
    if (threadIdx.x == 0) state[0] += total;
}

extern "C" __global__ void clip_factor(double* __restrict__ state, double max_norm)
{
    const double norm = sqrt(state[0]);
    state[0] = norm;
    state[1] = norm > max_norm ? max_norm / norm : 1.0;
}

// Columns copied between the masks of a layer of the conditional MLP with shared blocks
// (models.conditional_mlp.with_shared_blocks and routed_blocks): over dst's (n, dst_width)
// bytes, the first `ones` columns are set to 1, and columns dst_first .. dst_first+count-1
// take src's columns src_first .. src_first+count-1.
extern "C" __global__ void __launch_bounds__(256) mask_columns(
    const unsigned char* __restrict__ src, int src_width, int src_first,
    unsigned char* __restrict__ dst, int dst_width, int dst_first, int count, int ones,
    long long size)
{
    FLAT_LOOP(e, size) {
        const long long i = e / dst_width;
        const int j = (int)(e - i * dst_width);
        if (j < ones)
            dst[e] = 1;
        else if (j >= dst_first && j < dst_first + count)
            dst[e] = src[i * src_width + src_first + (j - dst_first)];
    }
}

template <typename T>
__device__ __forceinline__ void scale_by(T* __restrict__ x, long long size,
                                         const double* __restrict__ state)
{
    const double factor = state[1];
    if (!(factor < 1.0)) return;
    const T f = (T)factor;
    FLAT_LOOP(e, size) x[e] *= f;
}

// The learned baselines (condnn.baselines.LearnedBaseline), in one thread block of 256
// threads, in float64 as there: with state = (c, w_0 .. w_{d-1}) (d = 0: learned-scalar),
//   b_i = c + x_i . w;   r_i = b_i - C_i (kept in residual);   a_i = C_i - b_i = -r_i,
//   normalised and divided by n as in advantages;  then one normalised LMS step,
//   s = 1 + mean_i |x_i|^2 (1 when d = 0),  w_j -= lr sum_i r_i x_ij / (n s),
//   c -= lr mean_i r_i / s.
// Every sum runs in a fixed order; the barriers of block_sum separate the reads of the
// state and the writes of residual from the updates.
template <typename T>
__device__ __forceinline__ void learned_advantages(const T* __restrict__ costs,
                                                   const T* __restrict__ x, int n, int d,
                                                   double lr, int normalize,
                                                   double* __restrict__ state,
                                                   double* __restrict__ residual,
                                                   T* __restrict__ out)
{
    __shared__ double s[256];
    const int tid = threadIdx.x;
    const double* w = state + 1;
    double norms = 0.0, residuals = 0.0, squares = 0.0;
    for (int i = tid; i < n; i += 256) {
        const T* xi = x + (long long)i * d;
        double b = state[0], norm = 0.0;
        for (int j = 0; j < d; j++) {
            const double v = (double)xi[j];
            b += v * w[j];
            norm += v * v;
        }
        const double r = b - (double)costs[i];
        residual[i] = r;
        norms += norm;
        residuals += r;
        squares += r * r;
    }
    const double step_scale = d ? 1.0 + block_sum(norms, s) / n : 1.0;
    const double mean_residual = block_sum(residuals, s) / n;
    const double scale = normalize ? 1.0 / (sqrt(block_sum(squares, s) / n) + 1e-12) : 1.0;
    for (int i = tid; i < n; i += 256) out[i] = (T)(-residual[i] * scale / n);
    for (int j = tid; j < d; j += 256) {
        double g = 0.0;
        for (int i = 0; i < n; i++) g += residual[i] * (double)x[(long long)i * d + j];
        state[1 + j] -= lr * g / (n * step_scale);
    }
    if (tid == 0) state[0] -= lr * mean_residual / step_scale;
}

// ---------------------------------------------------------------------------------------
#define TRAINING(SUFFIX, T)                                                                 \
    extern "C" __global__ void __launch_bounds__(256) relu_##SUFFIX(                        \
        const T* x, T* y, long long size) {                                                 \
        relu<T>(x, y, size);                                                                \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) relu_grad_##SUFFIX(                   \
        const T* dy, const T* __restrict__ y, T* dx, long long size) {                      \
        relu_grad<T>(dy, y, dx, size);                                                      \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) add_scaled_##SUFFIX(                  \
        T* __restrict__ y, T alpha, const T* __restrict__ x, long long size) {              \
        add_scaled<T>(y, alpha, x, size);                                                   \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) sub_row_##SUFFIX(                     \
        const T* x, const T* __restrict__ row, long long m, T* out, long long size) {       \
        sub_row<T>(x, row, m, out, size);                                                   \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) dropout_##SUFFIX(                     \
        const T* x, const T* __restrict__ uniform, T rate, T scale, T* y, long long size) { \
        dropout<T>(x, uniform, rate, scale, y, size);                                       \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) block_dropout_##SUFFIX(               \
        const T* x, const unsigned char* __restrict__ mask, long long units, int bs,        \
        T scale, T* y, long long size) {                                                    \
        block_dropout<T>(x, mask, units, bs, scale, y, size);                               \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) adam_update_##SUFFIX(                 \
        T* __restrict__ p, T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,         \
        long long size, T beta1, T beta2, T eps, T step, T root) {                          \
        adam_update<T>(p, g, m, v, size, beta1, beta2, eps, step, root);                    \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) sgd_update_##SUFFIX(                  \
        T* __restrict__ p, T* __restrict__ g, T* __restrict__ vel, long long size, T lr,    \
        T momentum, int nesterov) {                                                         \
        sgd_update<T>(p, g, vel, size, lr, momentum, nesterov);                             \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) policy_prob_##SUFFIX(                 \
        T* __restrict__ z, long long size, T half_minus_eps) {                              \
        policy_prob<T>(z, size, half_minus_eps);                                            \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) bernoulli_mask_##SUFFIX(              \
        const T* __restrict__ prob, const T* __restrict__ uniform,                          \
        unsigned char* __restrict__ mask, long long size) {                                 \
        bernoulli_mask<T>(prob, uniform, mask, size);                                       \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) threshold_mask_##SUFFIX(              \
        const T* __restrict__ prob, unsigned char* __restrict__ mask, int n, int nb,        \
        int keep_a_block) {                                                                 \
        threshold_mask<T>(prob, mask, n, nb, keep_a_block);                                 \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) row_mean_##SUFFIX(                    \
        const T* __restrict__ x, int n, int nb, T* __restrict__ out) {                      \
        row_mean<T>(x, n, nb, out);                                                         \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) softmax_xent_##SUFFIX(                \
        const T* __restrict__ z, const long long* __restrict__ labels, int n, int c,        \
        T* __restrict__ losses, T* __restrict__ probs, int* __restrict__ bad) {             \
        softmax_xent<T>(z, labels, n, c, losses, probs, bad);                               \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) xent_grad_##SUFFIX(                   \
        const T* probs, const long long* __restrict__ labels, int n, int c, T d_mean,       \
        const T* __restrict__ d_losses, T* dlogits) {                                       \
        xent_grad<T>(probs, labels, n, c, d_mean, d_losses, dlogits);                       \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) policy_grad_##SUFFIX(                 \
        const T* __restrict__ prob, const unsigned char* __restrict__ mask,                 \
        const T* __restrict__ advantages, const T* __restrict__ colsum,                     \
        const T* __restrict__ rowmean, const T* __restrict__ dprob, int n, int nb, T tau,   \
        T lambda_s, T lambda_v, T half_minus_eps, T* __restrict__ dz) {                     \
        policy_grad<T>(prob, mask, advantages, colsum, rowmean, dprob, n, nb, tau,          \
                       lambda_s, lambda_v, half_minus_eps, dz);                             \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) advantages_##SUFFIX(                  \
        const T* __restrict__ costs, int n, int kind, double* __restrict__ state,           \
        double momentum, int normalize, T* __restrict__ out) {                              \
        advantages<T>(costs, n, kind, state, momentum, normalize, out);                     \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) sum_squares_##SUFFIX(                 \
        const T* __restrict__ x, long long size, double* __restrict__ partial) {            \
        sum_squares<T>(x, size, partial);                                                   \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) scale_by_##SUFFIX(                    \
        T* __restrict__ x, long long size, const double* __restrict__ state) {              \
        scale_by<T>(x, size, state);                                                        \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(256) learned_advantages_##SUFFIX(          \
        const T* __restrict__ costs, const T* __restrict__ x, int n, int d, double lr,      \
        int normalize, double* __restrict__ state, double* __restrict__ residual,           \
        T* __restrict__ out) {                                                              \
        learned_advantages<T>(costs, x, n, d, lr, normalize, state, residual, out);         \
    }

TRAINING(f32, float)
TRAINING(f64, double)
