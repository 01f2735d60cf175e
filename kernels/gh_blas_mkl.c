/* gh_blas_mkl.c -- gpuhybrid's own, private instance of Intel MKL's sequential layer.
 *
 * Why a library of its own: MKL's single dynamic library, libmkl_rt, dlopens its layer libraries
 * (interface, threading, core) with RTLD_GLOBAL, so once it has run their symbols are the process's:
 * PyTorch's CPU wheels, which link their own MKL statically and export its symbols, then bind about 4900
 * of them (sgemm_, mkl_blas_xsgemm, the threading layer's...) to gpuhybrid's MKL when imported afterwards
 * (measured with LD_DEBUG=bindings). The layers cannot be loaded one by one with RTLD_LOCAL either: they
 * do not name each other as dependencies, and each needs the others' symbols. This library is linked
 * against the three (libmkl_intel_lp64, libmkl_sequential, libmkl_core: gpuhybrid/backend/gemm.py builds
 * it with their folder as its run path) and loaded with RTLD_LOCAL | RTLD_DEEPBIND, so they come in as its
 * dependencies, in its scope only, bound to each other before anything global. It exports gh_ names only
 * (-fvisibility=hidden, -Bsymbolic); the engine calls the GEMMs whose addresses it hands out.
 */
#define GH_EXPORT __attribute__((visibility("default")))

typedef void (*gh_blas_function)(void);

/* MKL's, declared by hand: the engine calls the GEMMs through gh_gemm.c's typed pointers, so only their
 * addresses are taken here, and the pip package ships no headers. */
void cblas_sgemm(void);
void cblas_dgemm(void);
int MKL_CBWR_Set(int mode);
int MKL_Get_Max_Threads(void);

GH_EXPORT gh_blas_function gh_blas_mkl_sgemm(void) { return (gh_blas_function)cblas_sgemm; }
GH_EXPORT gh_blas_function gh_blas_mkl_dgemm(void) { return (gh_blas_function)cblas_dgemm; }

/* MKL's conditional numerical reproducibility mode (gemm.py says why it sets one); MKL's status code. */
GH_EXPORT int gh_blas_mkl_set_cbwr(int mode) { return MKL_CBWR_Set(mode); }

/* Threads one MKL call may use: 1 in the sequential layer (the tests check which layer was linked). */
GH_EXPORT int gh_blas_mkl_max_threads(void) { return MKL_Get_Max_Threads(); }
