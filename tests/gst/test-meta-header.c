/* test-meta-header.c: the public meta header compiles on its own. */
#include <si-detection-meta.h>

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  return si_detection_meta_get_info () == NULL;
}
