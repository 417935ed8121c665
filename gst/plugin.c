/* plugin.c: registers the stageinteractor plugin and its two elements,
 * stageinteractor (detector) and stageoverlay (Cairo drawing).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gststageinteractor.h"
#include "gststagemetapublish.h"
#include "gststageoverlay.h"

static gboolean
plugin_init (GstPlugin *plugin)
{
  gboolean ret = FALSE;

  ret |= GST_ELEMENT_REGISTER (stageinteractor, plugin);
  ret |= GST_ELEMENT_REGISTER (stageoverlay, plugin);
  ret |= GST_ELEMENT_REGISTER (stagemetapublish, plugin);
  return ret;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, stageinteractor,
    "StageInteractor object detection: detector and overlay elements",
    plugin_init, SI_PLUGIN_VERSION, "LGPL", "stageinteractor",
    "https://github.com/MCG-NJU/StageInteractor")
