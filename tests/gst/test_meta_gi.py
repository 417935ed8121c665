#!/usr/bin/python3
# test_meta_gi.py: reads the detections from Python through the Si-1.0
# introspection data (build tree typelib) with a pad probe, like an
# application would.
import os
import sys

try:
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("Si", "1.0")
    from gi.repository import Gst, Si
except (ImportError, ValueError) as e:
    print("skipped: no python3-gi or typelib:", e)
    sys.exit(77)


def main():
    Gst.init(None)
    model = os.path.join(os.environ["SI_GOLDEN_DIR"], "tiny", "model.safetensors")
    if not os.path.exists(model):
        print("golden model missing:", model)
        return 1
    pipe = Gst.parse_launch(
        "videotestsrc num-buffers=2 ! video/x-raw,width=160,height=120 ! "
        "videoconvert ! stageinteractor name=det threshold=0 max-detections=3 "
        "num-threads=1 ! fakesink")
    det = pipe.get_by_name("det")
    det.set_property("model", model)
    seen = []

    def on_buffer(pad, info):
        meta = Si.buffer_get_detection_meta(info.get_buffer())
        assert meta is not None
        for i in range(meta.get_count()):
            ok, cls, label, score, x1, y1, x2, y2 = meta.get_detection(i)
            d = meta.get(i)
            assert ok and d.label == label and d.class_id == cls
            assert 0.0 <= score <= 1.0 and x2 > x1 and y2 > y1
            seen.append((meta.frame, label, score))
        return Gst.PadProbeReturn.OK

    det.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_buffer)
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(
        Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    print(seen)
    if msg.type != Gst.MessageType.EOS:
        print("error:", msg.parse_error())
        return 1
    return 0 if len(seen) == 6 else 1


if __name__ == "__main__":
    sys.exit(main())
