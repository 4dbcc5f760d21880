/* mma_tf32.cuh: the tensor cores' float32 product at float32 accuracy ("3xTF32"), for GEMM
 * version 5 (kernels/gemm_cuda.cuh).
 *
 * The tensor cores multiply TF32 operands (float32 with the mantissa cut to 10 bits) and add in
 * float32. One TF32 product keeps about 11 bits of each operand: a relative error near 3e-4,
 * too coarse for this engine, whose float32 results are checked against the CPU to 1e-5. So each
 * operand x is split into two TF32 numbers, x ~ hi + lo, and a*b is computed as
 * lo_a*hi_b + hi_a*lo_b + hi_a*hi_b, the small terms first; the dropped lo_a*lo_b is about
 * 2^-21 of the product, so the result is float32-class (CUTLASS calls this "3xTF32").
 * The split (tf32_split), exact where it can be: hi = x with its low 13 bits cut (NaN stays
 * NaN), lo = x - hi (exact in float32, |lo| < 2^-10 |x|) rounded to TF32 to nearest (add half a
 * unit, cut: |x - hi - lo| <= 2^-21 |x|). Three instructions per operand in the SASS (an AND, a
 * subtraction, an add): ptxas drops the last cut, because the HMMA reads only an operand's
 * TF32 bits. nvcc's cvt.rna.tf32.f32 would round hi too, for one more bit, but costs about four
 * instructions per conversion on sm_90, twice per operand, inside the main loop.
 *
 * The instruction is the warp-wide mma.sync.m16n8k8 (sm_80 and later): D[16x8] += A[16x8] B[8x8]
 * with fragments spread over the warp's 32 lanes. With g = lane / 4 and t = lane % 4 (PTX ISA,
 * "Matrix Fragments for mma.m16n8k8", .tf32):
 *   a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4];
 *   b0 = B[t][g], b1 = B[t+4][g];
 *   c0 = D[g][2t], c1 = D[g][2t+1], c2 = D[g+8][2t], c3 = D[g+8][2t+1].
 * On the CUDA emulator (tests/emu) the mma is the emulator's: a collective of the warp's 32
 * threads, computed once all have arrived, which refuses operands that are not TF32.
 *
 * The tensor cores cut each mma's sum toward zero rather than rounding it to nearest (Fasi et
 * al., "Numerical behavior of NVIDIA tensor cores", PeerJ Comput. Sci. 2021; GPU run 5 saw it),
 * so an accumulator chained through hundreds of mmas drifts toward zero: gemm_cuda.cuh sums
 * each k-step's three mmas into zeros and adds that into its accumulator in float32.
 *
 * Not float32 in one way: an infinite operand may give NaN (its lo is inf - inf). */
#ifndef KERNELS_MMA_TF32_CUH
#define KERNELS_MMA_TF32_CUH

#include <stdint.h>
#include <string.h>

/* The bits of x as another 4-byte type (a register move once compiled). */
template <class To, class From>
__host__ __device__ __forceinline__ To bit_cast32(From x) {
    static_assert(sizeof(To) == 4 && sizeof(From) == 4, "4-byte types");
    To y;
    memcpy(&y, &x, sizeof y);
    return y;
}

/* x ~ hi + lo, both TF32 (float bits with the low 13 bits zero); see above. */
__device__ __forceinline__ void tf32_split(float x, uint32_t *hi, uint32_t *lo) {
    *hi = bit_cast32<uint32_t>(x) & 0xFFFFE000u;
    *lo = (bit_cast32<uint32_t>(x - bit_cast32<float>(*hi)) + 0x1000u) & 0xFFFFE000u;
}

/* c[0..3] += A B for one m16n8k8 tile (fragments as above; every lane of the warp calls it). */
__device__ __forceinline__ void mma_m16n8k8_tf32(float c[4], const uint32_t a[4],
                                                 const uint32_t b[2]) {
#ifdef CNN_CUDA_EMU
    ::emu::mma_m16n8k8_tf32(c, a, b);
#else
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* c += a b at float32 accuracy: the three TF32 products, the small terms first. */
__device__ __forceinline__ void mma_m16n8k8_3xtf32(float c[4], const uint32_t a_hi[4],
                                                   const uint32_t a_lo[4], const uint32_t b_hi[2],
                                                   const uint32_t b_lo[2]) {
    mma_m16n8k8_tf32(c, a_lo, b_hi);
    mma_m16n8k8_tf32(c, a_hi, b_lo);
    mma_m16n8k8_tf32(c, a_hi, b_hi);
}

#endif /* KERNELS_MMA_TF32_CUH */
