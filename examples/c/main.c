/* Runs the digits model compiled by `lamina compile` on one 8x8 image.
 *
 * Usage: ./digits [image.txt]   (64 numbers in [0, 1], row-major; default: stdin)
 * Prints the 10 logits and the predicted digit. No Python involved. */
#include <stdio.h>
#include <stdlib.h>

#include "digits.h"

int main(int argc, char **argv) {
    float image[DIGITS_IN0_SIZE];
    float logits[DIGITS_OUT0_SIZE];
    FILE *f = argc > 1 ? fopen(argv[1], "r") : stdin;
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    for (int i = 0; i < DIGITS_IN0_SIZE; i++) {
        if (fscanf(f, "%f", &image[i]) != 1) {
            fprintf(stderr, "expected %d numbers, read %d\n", DIGITS_IN0_SIZE, i);
            return 1;
        }
    }
    if (f != stdin) fclose(f);
    int rc = digits(image, logits);
    if (rc != 0) {
        fprintf(stderr, "digits() failed with code %d\n", rc);
        return 1;
    }
    int best = 0;
    printf("logits:");
    for (int k = 0; k < DIGITS_OUT0_SIZE; k++) {
        printf(" %.6f", logits[k]);
        if (logits[k] > logits[best]) best = k;
    }
    printf("\nprediction: %d\n", best);
    return 0;
}
