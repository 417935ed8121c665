#!/usr/bin/python3
"""End to end: the README's gst-launch-1.0 line per method publishes, and
examples/consume.py reads the messages back; every message is checked
against docs/detection-message.schema.json (python3-jsonschema).

MQTT runs a mosquitto broker on 127.0.0.1 with a free port; Kafka runs
librdkafka's mock cluster inside this process (test.mock.num.brokers). A
method whose Python client (python3-paho-mqtt, python3-confluent-kafka) or
broker is missing is skipped; exit 77 when all of them are."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONSUME = os.path.join(ROOT, "examples", "consume.py")
SCHEMA = os.path.join(ROOT, "docs", "detection-message.schema.json")
N = 10
MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def validator():
    try:
        import jsonschema
    except ImportError:
        return lambda msg: None
    with open(SCHEMA) as f:
        v = jsonschema.Draft202012Validator(json.load(f))
    return v.validate


def gst_launch(props):
    """The launch line of the README for one method."""
    cmd = (["gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={N}", "!",
            "video/x-raw,width=320,height=240", "!", "stagemetapublish"]
           + props + ["!", "fakesink"])
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, timeout=60)


def check_messages(lines, source_id):
    validate = validator()
    msgs = [json.loads(line) for line in lines if line.strip()]
    assert len(msgs) == N, f"{len(msgs)} messages, expected {N}"
    for i, m in enumerate(msgs):
        validate(m)
        assert m["source_id"] == source_id, m
        assert m["frame_number"] == i, m
        assert (m["width"], m["height"]) == (320, 240), m


def run_with_consumer(consumer_args, launch_props, source_id):
    cons = subprocess.Popen(
        [sys.executable, CONSUME] + consumer_args + ["--count", str(N),
                                                     "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = cons.stderr.readline()
        assert line.strip() == "ready", f"consumer said {line!r}"
        gst_launch(launch_props)
        out, err = cons.communicate(timeout=60)
    finally:
        if cons.poll() is None:
            cons.kill()
            cons.wait()
    assert cons.returncode == 0, err
    check_messages(out.splitlines(), source_id)


def test_file(tmp):
    path = os.path.join(tmp, "out.jsonl")
    gst_launch(["method=file", f"file-path={path}", "source-id=cam-file"])
    with open(path) as f:
        check_messages(f.read().splitlines(), "cam-file")
    return True


def test_mqtt(tmp):
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        print("mqtt skipped: python3-paho-mqtt not installed")
        return False
    if not os.access(MOSQUITTO, os.X_OK):
        print(f"mqtt skipped: {MOSQUITTO} not installed")
        return False
    port = free_port()
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        user = os.environ.get("USER") or "root"
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                f"user {user}\nlog_type error\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", conf])
    try:
        wait_port(port)
        address = f"127.0.0.1:{port}"
        run_with_consumer(
            ["mqtt", address, "cams/detections"],
            ["method=mqtt", f"address={address}", "topic=cams/detections",
             "source-id=cam-mqtt", "qos=1"], "cam-mqtt")
    finally:
        broker.terminate()
        broker.wait()
    return True


def test_kafka(tmp):
    try:
        from confluent_kafka import Producer
    except ImportError:
        print("kafka skipped: python3-confluent-kafka not installed")
        return False
    # The mock cluster lives as long as this producer.
    mock = Producer({"test.mock.num.brokers": 3})
    brokers = mock.list_topics(timeout=10).brokers.values()
    address = ",".join(f"{b.host}:{b.port}" for b in brokers)
    run_with_consumer(
        ["kafka", address, "detections", "--group", "e2e"],
        ["method=kafka", f"address={address}", "topic=detections",
         "source-id=cam-kafka", "kafka-config=acks=all;linger.ms=5"],
        "cam-kafka")
    return True


def main():
    if shutil.which("gst-launch-1.0") is None:
        print("skipped: gst-launch-1.0 not installed")
        return 77
    ran = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in (test_file, test_mqtt, test_kafka):
            if t(tmp):
                print(f"{t.__name__}: ok", flush=True)
                ran.append(t.__name__)
    return 0 if ran else 77


if __name__ == "__main__":
    sys.exit(main())
