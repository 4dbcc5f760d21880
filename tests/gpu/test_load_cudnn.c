/* test_load_cudnn.c: cuBLAS and cuDNN load at run time (kernels/load_cudnn.h), every function of
 * the table resolves, and the libraries found are the ones the build was compiled against (the
 * same major versions). Needs the libraries, not a GPU: it runs wherever the CUDA build does. */
#include <stdio.h>

#include "kernels/load_cudnn.h"

int main(void) {
    int failures = 0;
    char err[1024];
    if (cudnn_libs_load(err, sizeof err) != 0) {
        printf("FAIL cudnn_libs_load: %s\n", err);
        return 1;
    }
    /* every pointer of the table set */
    const void *const *table = (const void *const *)&cudnn_libs;
    size_t n = sizeof cudnn_libs / sizeof(void *), unset = 0;
    for (size_t i = 0; i < n; i++) unset += table[i] == NULL;
    printf("%s %zu functions resolved (%zu unset)\n", unset ? "FAIL" : "PASS", n - unset, unset);
    failures += unset != 0;
    /* calls through the table reach the libraries */
    size_t version = cudnnGetVersion();
    int same_major = version / 10000 == CUDNN_MAJOR;
    printf("%s cuDNN %zu loaded, built against %d.%d\n", same_major ? "PASS" : "FAIL", version,
           CUDNN_MAJOR, CUDNN_MINOR);
    failures += !same_major;
    const char *text = cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM);
    int named = text && text[0];
    printf("%s cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM) = %s\n", named ? "PASS" : "FAIL",
           text ? text : "(null)");
    failures += !named;
    /* a second load is the first one's result */
    int again = cudnn_libs_load(err, sizeof err) == 0;
    printf("%s a second load\n", again ? "PASS" : "FAIL");
    failures += !again;
    printf("SUMMARY test_load_cudnn: %d failed -> %s\n", failures, failures ? "FAIL" : "PASS");
    return failures ? 1 : 0;
}
