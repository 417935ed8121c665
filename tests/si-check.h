/* si-check.h: CHECK for the test programs that count their failures
 * (one translation unit each): prints the failed condition's message with
 * its place and counts it in `failures`; main returns failures ? 1 : 0.
 */
#ifndef SI_CHECK_H
#define SI_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      printf ("FAIL (%s:%d): ", __FILE__, __LINE__);                           \
      printf (__VA_ARGS__);                                                    \
      printf ("\n");                                                           \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#endif /* SI_CHECK_H */
